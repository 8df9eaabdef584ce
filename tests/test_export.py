"""``tuneforge export --merge``: merged LoRA/IA3 models reproduce the unmerged outputs and load without TuneForge
(the per-format checks with the plain libraries are in test_export_formats.py)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from tests.peft_harness import outputs_of, probe_batch, tiny_config, train_pair
from tests.tiny_tasks import TINY_TASKS
from tuneforge.cli import main
from tuneforge.inference.predictor import Predictor
from tuneforge.tasks import TASKS

PAIRS = [(task, method) for task in TASKS.names() for method in ("lora", "ia3")] + [("classification", "adalora")]


def _train(task, method, tmp_path, monkeypatch, request, pooling: str = "auto"):
    if task not in TINY_TASKS:
        pytest.skip(f"no tiny data for task {task!r}: add a factory to tests/tiny_tasks.py")
    spec = TINY_TASKS[task](tmp_path)
    model_dir = request.getfixturevalue("tiny_bert_dir" if spec.model_kind == "encoder" else "tiny_llama_dir")
    cfg = tiny_config(task, method, tmp_path, model_dir, spec, train={"epochs": 3},
                      head={"dropout": 0.0, "pooling": pooling})
    return train_pair(cfg, monkeypatch)


@pytest.mark.parametrize(("task", "method"), PAIRS, ids=[f"{t}-{m}" for t, m in PAIRS])
def test_export_merges_with_parity(task, method, tmp_path, monkeypatch, request, no_network):
    trained = _train(task, method, tmp_path, monkeypatch, request)
    out = tmp_path / "export"
    assert main(["export", str(trained.run_dir), "--merge", str(out)]) == 0
    info = json.loads((out / "tuneforge.json").read_text())
    assert info["parity"]["max_abs_diff"] <= 1e-4 and info["parity"]["merged_in_memory_diff"] <= 1e-4
    assert "data examples" in info["parity"]["probe"]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert (out / name).is_file(), name
    has_head = any(not n.startswith("backbone.") for n, _ in trained.model.named_parameters())
    head_in_class = info["format"] in ("sequence-classification", "token-classification", "question-answering")
    assert (out / "head.safetensors").is_file() == (has_head and not head_in_class)
    assert (out / "adapter" / "adapter_config.json").is_file()

    # the folder is a plain transformers model: no lora/ia3 tensors left, loads with AutoModel alone
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoModelForCausalLM

    assert not [k for k in load_file(str(out / "model.safetensors")) if "lora_" in k or "ia3_" in k]
    predictor = Predictor.from_run_dir(trained.run_dir)
    body = AutoModelForCausalLM if info["body_class"] == "AutoModelForCausalLM" else AutoModel
    predictor.model.backbone = body.from_pretrained(out).eval()
    batch = probe_batch(predictor.task, trained.cfg)
    expected, got = outputs_of(trained.model, batch), outputs_of(predictor.model, batch)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-4, rtol=0)


@pytest.mark.parametrize("pooling", ["mean", "pooler", "mean_pooler"])
def test_model_card_snippet_reproduces_the_classifier(pooling, tmp_path, monkeypatch, request, no_network):
    """The README's plain-transformers code gives the same scores as TuneForge's Predictor."""
    trained = _train("classification", "lora", tmp_path, monkeypatch, request, pooling=pooling)
    assert trained.model.pooling == pooling
    out = tmp_path / "export"
    assert main(["export", str(trained.run_dir), "--merge", str(out)]) == 0
    card = (out / "README.md").read_text()
    for heading in ("## Data", "## Before / after fine-tuning", "## Parity", "## How to load", "## Config"):
        assert heading in card
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    code = blocks[0 if pooling == "pooler" else 1].replace('folder = "."', f'folder = "{out}"')
    namespace: dict = {}
    monkeypatch.setattr("builtins.print", lambda *a, **k: None)
    exec(compile(code, "README.md", "exec"), namespace)
    expected = Predictor.from_run_dir(trained.run_dir, precision="fp32").predict(["an example sentence"])[0]["scores"]
    got = namespace["scores"][0].tolist()
    assert got == pytest.approx([expected[lab] for lab in namespace["labels"]], abs=1e-5)


def test_export_refuses_unmergeable_methods_and_failed_parity(tmp_path, monkeypatch, request, capsys):
    trained = _train("classification", "lora", tmp_path, monkeypatch, request)
    from tuneforge import export

    real_outputs = export.st_outputs

    def corrupted(folder, batch):
        got, how = real_outputs(folder, batch)
        return {"logits": got["logits"] + 0.01 * torch.randn_like(got["logits"])}, how

    monkeypatch.setattr(export, "st_outputs", corrupted)
    out = tmp_path / "export"
    assert main(["export", str(trained.run_dir), "--merge", str(out)]) == 1
    assert "parity check failed" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".export.*"))  # nothing half-written

    cfg_path = trained.run_dir / "config.yaml"
    cfg_path.write_text(cfg_path.read_text().replace("method: lora", "method: prompt_tuning"))
    assert main(["export", str(trained.run_dir), "--merge", str(out)]) == 1
    assert "cannot be merged" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_causal_lm_merge_parity(tmp_path, method):
    """The generative path (AutoModelForCausalLM body): merged, saved and reloaded logits match the adapter's."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from tuneforge.config import PeftConfig
    from tuneforge.peft_methods import apply_peft

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64))
    model, _ = apply_peft(base, PeftConfig(method=method, r=4, alpha=8, dropout=0.0), "CAUSAL_LM")
    with torch.no_grad():  # a trained-looking adapter: peft initialises LoRA B and IA3 vectors to a no-op
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    model.eval()
    ids = torch.randint(0, 64, (3, 10))
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask).logits
        model.merge_and_unload().save_pretrained(tmp_path / "m")
        got = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()(input_ids=ids, attention_mask=mask).logits
    assert float((got - want).abs().max()) <= 1e-4
