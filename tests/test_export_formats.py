"""``tuneforge export RUN OUT`` for every task and method: each export opens with the plain library (transformers,
peft, sentence-transformers) and gives TuneForge's outputs; the card carries hub metadata; ``push`` uploads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tests.peft_harness import outputs_of, probe_batch, tiny_config, train_pair
from tests.tiny_tasks import TINY_TASKS
from tuneforge.cli import main
from tuneforge.inference.predictor import Predictor

TEXTS = ["good movie", "the film was terrible and bad", "i love it"]


def _train(task, tmp_path, monkeypatch, request, method=None, head=None, train=None):
    spec = TINY_TASKS[task](tmp_path)
    model_dir = request.getfixturevalue("tiny_bert_dir" if spec.model_kind == "encoder" else "tiny_llama_dir")
    cfg = tiny_config(task, method, tmp_path, model_dir, spec, train={"epochs": 3, **(train or {})},
                      head={"dropout": 0.0, **(head or {})})
    return train_pair(cfg, monkeypatch), model_dir


def _export(run_dir: Path, out: Path) -> dict:
    assert main(["export", str(run_dir), str(out)]) == 0
    info = json.loads((out / "tuneforge.json").read_text())
    assert info["parity"]["max_abs_diff"] <= 1e-4
    assert "data examples" in info["parity"]["probe"]
    return info


def _encoded(tok, texts, max_length=16):
    return tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)


def _predictor_logits(run_dir: Path, texts: list[str]) -> torch.Tensor:
    """TuneForge's own logits for ``texts``, through the predictor's task encoding and model."""
    predictor = Predictor.from_run_dir(run_dir, precision="fp32")
    task = predictor.task
    batch = task.collate([task.encode(task.parse_input(t)) for t in texts])
    return outputs_of(predictor.model, batch)["logits"]


def _no_local_paths(out: Path, *paths: Path) -> None:
    for f in out.rglob("*"):
        if f.suffix in (".json", ".md"):
            text = f.read_text()
            for p in paths:
                assert str(p) not in text, f"{f.name} names the local path {p}"


# ---------------------------------------------------------------- classification
def test_pooler_head_is_a_bert_for_sequence_classification(tmp_path, monkeypatch, request, no_network):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification

    trained, model_dir = _train("classification", tmp_path, monkeypatch, request, head={"pooling": "pooler"})
    out = tmp_path / "export"
    info = _export(trained.run_dir, out)
    assert info["format"] == "sequence-classification" and not (out / "head.safetensors").exists()
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert isinstance(model, BertForSequenceClassification)
    assert [model.config.id2label[i] for i in range(2)] == ["negative", "positive"]
    with torch.no_grad():
        got = model(**_encoded(AutoTokenizer.from_pretrained(out), TEXTS)).logits
    torch.testing.assert_close(got, _predictor_logits(trained.run_dir, TEXTS), atol=1e-4, rtol=0)
    _no_local_paths(out, tmp_path, model_dir)


@pytest.mark.parametrize("pooling", ["mean", "cls", "mean_pooler"])
def test_pooled_heads_are_sentence_transformers_models(pooling, tmp_path, monkeypatch, request, no_network):
    """Transformer + Pooling + Dense modules (no custom code): ``encode`` returns TuneForge's logits."""
    st = pytest.importorskip("sentence_transformers")
    from tuneforge.export_formats import st_forward_plain

    trained, model_dir = _train("classification", tmp_path, monkeypatch, request, head={"pooling": pooling})
    out = tmp_path / "export"
    info = _export(trained.run_dir, out)
    assert info["format"] == "sentence-transformers"
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules][:2] == ["Transformer", "Pooling"]
    assert {m["type"].rsplit(".", 1)[1] for m in modules[2:]} == {"Dense"}
    model = st.SentenceTransformer(str(out), device="cpu")
    got = model.encode(TEXTS, convert_to_tensor=True).float()
    want = _predictor_logits(trained.run_dir, TEXTS)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    # the documented plain-torch reading of the same module files
    from transformers import AutoTokenizer

    enc = _encoded(AutoTokenizer.from_pretrained(out), TEXTS)
    torch.testing.assert_close(st_forward_plain(out, dict(enc)), want, atol=1e-4, rtol=0)
    _no_local_paths(out, tmp_path, model_dir)


def test_decoder_classifier_is_a_last_token_sentence_transformers_model(tmp_path, monkeypatch, tiny_llama_dir,
                                                                        no_network):
    """A causal-LM body with a classification head (``last`` pooling) → Pooling(lasttoken) + Dense."""
    st = pytest.importorskip("sentence_transformers")
    spec = TINY_TASKS["classification"](tmp_path)
    cfg = tiny_config("classification", None, tmp_path, tiny_llama_dir, spec, train={"epochs": 3},
                      head={"dropout": 0.0})
    trained = train_pair(cfg, monkeypatch)
    assert trained.model.pooling == "last"
    out = tmp_path / "export"
    assert _export(trained.run_dir, out)["format"] == "sentence-transformers"
    pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_lasttoken"] and not pooling["pooling_mode_mean_tokens"]
    got = st.SentenceTransformer(str(out), device="cpu").encode(TEXTS, convert_to_tensor=True).float()
    torch.testing.assert_close(got, _predictor_logits(trained.run_dir, TEXTS), atol=1e-4, rtol=0)


@pytest.mark.parametrize("pooling", ["pooler", "mean_pooler"])
def test_card_code_reproduces_the_predictor(pooling, tmp_path, monkeypatch, request, no_network):
    """Every python block of the card runs as written and gives the predictor's scores."""
    pytest.importorskip("sentence_transformers")
    trained, _ = _train("classification", tmp_path, monkeypatch, request, head={"pooling": pooling})
    out = tmp_path / "export"
    _export(trained.run_dir, out)
    card = (out / "README.md").read_text()
    expected = Predictor.from_run_dir(trained.run_dir, precision="fp32").predict(["an example sentence"])[0]["scores"]
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    assert len(blocks) == (1 if pooling == "pooler" else 2)
    monkeypatch.setattr("builtins.print", lambda *a, **k: None)
    for code in blocks:
        namespace: dict = {}
        exec(compile(code.replace('folder = "."', f'folder = "{out}"'), "README.md", "exec"), namespace)
        got = namespace["scores"][0].tolist()
        assert got == pytest.approx([expected[lab] for lab in namespace["labels"]], abs=1e-5)


def test_card_metadata(tmp_path, monkeypatch, request, no_network):
    from huggingface_hub import ModelCard

    trained, model_dir = _train("classification", tmp_path, monkeypatch, request)
    out = tmp_path / "export"
    _export(trained.run_dir, out)
    card = ModelCard.load(out / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "sentence-transformers" and data["pipeline_tag"] == "text-classification"
    assert "tuneforge" in data["tags"] and "accuracy" in data["metrics"]
    assert data.get("base_model") is None  # a local folder is never named by its path
    report = json.loads((trained.run_dir / "report.json").read_text())
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["accuracy"] == pytest.approx(report["metrics"]["test"]["accuracy"])
    assert "## Before / after fine-tuning (test split)" in card.text and "| fine-tuned |" in card.text
    assert "| majority |" in card.text
    _no_local_paths(out, tmp_path, model_dir)


def test_packaged_aliases_name_their_upstream_models():
    from tuneforge.export import public_model_id

    assert public_model_id("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert public_model_id("smollm2") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert public_model_id("bert-base-uncased") == "bert-base-uncased"
    assert public_model_id("/some/local/folder") is None


def test_card_lists_hub_datasets_and_strips_local_paths():
    from types import SimpleNamespace

    from tuneforge.model_card import _strip_paths, hub_datasets

    data = SimpleNamespace(train="hf://stanfordnlp/sst2?split=train", validation="hf://stanfordnlp/sst2?split=validation",
                           test="/home/me/test.csv")
    assert hub_datasets(data) == ["stanfordnlp/sst2"]
    assert _strip_paths({"a": ["/home/me/x.txt", "rel/y.txt"], "b": "~/z"}) == {"a": ["x.txt", "rel/y.txt"], "b": "z"}


# ---------------------------------------------------------------- span tasks
def test_ner_is_a_token_classification_model(tmp_path, monkeypatch, request, no_network):
    from transformers import AutoModelForTokenClassification

    trained, _ = _train("ner", tmp_path, monkeypatch, request)
    out = tmp_path / "export"
    info = _export(trained.run_dir, out)
    assert info["format"] == "token-classification"
    model = AutoModelForTokenClassification.from_pretrained(out).eval()
    predictor = Predictor.from_run_dir(trained.run_dir, precision="fp32")
    assert list(model.config.id2label.values()) == predictor.task.tags
    batch = probe_batch(predictor.task, trained.cfg)
    with torch.no_grad():
        got = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch.get("token_type_ids")).logits
    torch.testing.assert_close(got, outputs_of(predictor.model, batch)["logits"], atol=1e-4, rtol=0)


def test_qa_is_a_question_answering_model(tmp_path, monkeypatch, request, no_network):
    from transformers import AutoModelForQuestionAnswering

    trained, _ = _train("qa", tmp_path, monkeypatch, request)
    out = tmp_path / "export"
    assert _export(trained.run_dir, out)["format"] == "question-answering"
    model = AutoModelForQuestionAnswering.from_pretrained(out).eval()
    predictor = Predictor.from_run_dir(trained.run_dir, precision="fp32")
    batch = probe_batch(predictor.task, trained.cfg)
    with torch.no_grad():
        got = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch})
    want = outputs_of(predictor.model, batch)
    torch.testing.assert_close(got.start_logits, want["start_logits"], atol=1e-4, rtol=0)
    torch.testing.assert_close(got.end_logits, want["end_logits"], atol=1e-4, rtol=0)


def test_relation_is_a_documented_body_and_head(tmp_path, monkeypatch, request, no_network):
    from safetensors.torch import load_file
    from transformers import AutoModel

    trained, _ = _train("relation", tmp_path, monkeypatch, request)
    out = tmp_path / "export"
    info = _export(trained.run_dir, out)
    assert info["format"] == "body+head" and info["head_tensors"] == ["classifier.bias", "classifier.weight"]
    predictor = Predictor.from_run_dir(trained.run_dir, precision="fp32")
    batch = probe_batch(predictor.task, trained.cfg)
    want = outputs_of(predictor.model, batch)["logits"]
    body, head = AutoModel.from_pretrained(out).eval(), load_file(str(out / "head.safetensors"))
    with torch.no_grad():
        hidden = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    rows = torch.arange(hidden.size(0))
    pair = torch.cat([hidden[rows, batch["e1_pos"]], hidden[rows, batch["e2_pos"]]], -1)
    torch.testing.assert_close(pair @ head["classifier.weight"].T + head["classifier.bias"], want, atol=1e-4, rtol=0)
    assert "`head.safetensors`" in (out / "README.md").read_text()


# ---------------------------------------------------------------- PEFT
def test_lora_exports_a_peft_adapter_and_the_merged_model(tmp_path, monkeypatch, request, no_network):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModel

    trained, model_dir = _train("classification", tmp_path, monkeypatch, request, method="lora",
                                head={"pooling": "mean"})
    out = tmp_path / "export"
    info = _export(trained.run_dir, out)
    assert info["format"] == "sentence-transformers" and info["adapter"]
    assert set(info["parity"]["checks"]) == {"adapter (peft)", "merged in memory (fp32)", "sentence-transformers"}
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["base_model_name_or_path"] is None
    model = PeftModel.from_pretrained(AutoModel.from_pretrained(model_dir), out / "adapter").eval()
    head = load_file(str(out / "head.safetensors"))
    from transformers import AutoTokenizer

    enc = _encoded(AutoTokenizer.from_pretrained(out), TEXTS)
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    logits = ((hidden * m).sum(1) / m.sum(1)) @ head["classifier.weight"].T + head["classifier.bias"]
    torch.testing.assert_close(logits, _predictor_logits(trained.run_dir, TEXTS), atol=1e-4, rtol=0)
    _no_local_paths(out, tmp_path, model_dir)


def test_prompt_tuning_exports_the_adapter_alone(tmp_path, monkeypatch, request, no_network):
    trained, _ = _train("classification", tmp_path, monkeypatch, request, method="prompt_tuning")
    out = tmp_path / "export"
    info = _export(trained.run_dir, out)
    assert info["format"] == "adapter" and (out / "adapter" / "adapter_config.json").is_file()
    assert not (out / "config.json").exists() and (out / "head.safetensors").is_file()
    assert main(["export", str(trained.run_dir), "--merge", str(tmp_path / "merged")]) == 1


def test_in_house_adapters_are_refused_with_the_reason(tmp_path, monkeypatch, request, capsys):
    trained, _ = _train("classification", tmp_path, monkeypatch, request, method="adapter")
    assert main(["export", str(trained.run_dir), str(tmp_path / "out")]) == 1
    assert "no standard library opens" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_failed_parity_writes_nothing(tmp_path, monkeypatch, request, capsys):
    from tuneforge import export

    trained, _ = _train("classification", tmp_path, monkeypatch, request)
    real = export.st_outputs

    def off_by_a_bit(folder, batch):
        got, how = real(folder, batch)
        return {"logits": got["logits"] + 1e-3}, how

    monkeypatch.setattr(export, "st_outputs", off_by_a_bit)
    out = tmp_path / "export"
    assert main(["export", str(trained.run_dir), str(out)]) == 1
    assert "parity check failed (sentence-transformers)" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".export.*"))


# ---------------------------------------------------------------- generative
def test_generation_exports_a_causal_lm_in_the_training_dtype(tmp_path, monkeypatch, request, no_network):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.export import cast_parameters

    trained, _ = _train("generation", tmp_path, monkeypatch, request, train={"precision": "bf16"})
    out = tmp_path / "export"
    info = _export(trained.run_dir, out)
    assert info["format"] == "causal-lm" and info["dtype"] == "bfloat16"
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16).eval()
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok.apply_chat_template([{"role": "user", "content": "is good positive or negative"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    predictor = Predictor.from_run_dir(trained.run_dir, precision="fp32")
    lm = cast_parameters(predictor.model.backbone, torch.bfloat16).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**ids).logits, lm(**ids).logits, atol=1e-4, rtol=0)
    code = re.findall(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S)[0]
    namespace: dict = {}
    exec(compile(code.replace('folder = "."', f'folder = "{out}"'), "README.md", "exec"), namespace)
    assert namespace["out"].shape[1] > namespace["ids"]["input_ids"].shape[1]  # the card's code generates


def test_generative_lora_adapter_opens_with_peft(tmp_path, monkeypatch, request, no_network):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trained, model_dir = _train("generation", tmp_path, monkeypatch, request, method="lora")
    out = tmp_path / "export"
    info = _export(trained.run_dir, out)
    assert info["format"] == "causal-lm" and info["dtype"] == "float32" and info["adapter"]
    ids = torch.tensor([[5, 9, 14, 20, 7]])
    with torch.no_grad():
        adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), out / "adapter").eval()
        merged = AutoModelForCausalLM.from_pretrained(out).eval()
        torch.testing.assert_close(merged(input_ids=ids).logits, adapted(input_ids=ids).logits, atol=1e-4, rtol=0)
    _no_local_paths(out, tmp_path, model_dir)
    assert "apply_chat_template" in (out / "README.md").read_text()


# ---------------------------------------------------------------- push
def _real_signature(name: str, *args, **kwargs) -> None:
    """The call would bind to the real ``HfApi`` method (argument names as the installed huggingface_hub has them)."""
    import inspect

    from huggingface_hub.hf_api import HfApi  # the real class: the tests replace huggingface_hub.HfApi

    assert HfApi is not FakeHub
    inspect.signature(getattr(HfApi, name)).bind(None, *args, **kwargs)


class FakeHub:
    """Stands in for ``huggingface_hub.HfApi``: records the calls and keeps a copy of the uploaded files."""

    calls: list = []

    def __init__(self, token=None, endpoint=None):
        FakeHub.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        _real_signature("create_repo", repo_id, **kwargs)
        FakeHub.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, repo_id, folder_path, **kwargs):
        _real_signature("upload_folder", repo_id=repo_id, folder_path=folder_path, **kwargs)
        files = {str(p.relative_to(folder_path)): p.read_bytes() for p in Path(folder_path).rglob("*") if p.is_file()}
        FakeHub.calls.append(("upload_folder", repo_id, files))
        return type("Commit", (), {"commit_url": f"https://hub.example/{repo_id}/commit/1"})()


def test_push_exports_and_uploads(tmp_path, monkeypatch, request, capsys, no_network):
    import huggingface_hub

    trained, _ = _train("classification", tmp_path, monkeypatch, request)
    FakeHub.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert main(["push", str(trained.run_dir), "me/tiny-sentiment", "--private", "--token", "hf_x"]) == 0
    assert "https://hub.example/me/tiny-sentiment/commit/1" in capsys.readouterr().out
    (_, token), (_, repo, kwargs), (_, repo2, files) = FakeHub.calls
    assert token == "hf_x" and repo == repo2 == "me/tiny-sentiment" and kwargs["private"] is True
    assert {"README.md", "modules.json", "model.safetensors", "tuneforge.json"} <= set(files)
    card = files["README.md"].decode()
    assert 'snapshot_download("me/tiny-sentiment")' in card and str(tmp_path) not in card


@pytest.fixture
def local_hub():
    """A local HTTP endpoint answering the hub API calls an upload makes (create repo, preupload, commit) and
    keeping what was committed: the real ``HfApi`` client runs against it."""
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: dict = {"requests": [], "files": {}}

    class Hub(BaseHTTPRequestHandler):
        def _reply(self, obj):
            body = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received["requests"].append((self.path, self.headers.get("Authorization")))
            if self.path == "/api/repos/create":
                received["create"] = json.loads(data)
                return self._reply({"url": f"{url}/me/tiny", "name": "me/tiny", "id": "me/tiny"})
            if self.path == "/api/validate-yaml":  # the client has the hub check the card's metadata first
                received["card_yaml"] = json.loads(data)["content"]
                return self._reply({"errors": [], "warnings": []})
            if "/preupload/" in self.path:  # every file as a regular (inline) upload: no LFS round trip
                return self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                              for f in json.loads(data)["files"]]})
            if "/commit/" in self.path:
                for line in data.decode().splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        received["files"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                return self._reply({"commitUrl": f"{url}/me/tiny/commit/1", "commitOid": "0" * 40})
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    url = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield url, received
    server.shutdown()


def test_push_uploads_through_the_real_client_to_a_local_hub(tmp_path, monkeypatch, request, capsys, local_hub):
    import huggingface_hub.constants

    url, received = local_hub
    trained, _ = _train("classification", tmp_path, monkeypatch, request)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert main(["push", str(trained.run_dir), "me/tiny", "--private", "--token", "hf_x", "--endpoint", url]) == 0
    assert f"{url}/me/tiny/commit/1" in capsys.readouterr().out
    assert received["create"]["visibility"] == "private" and received["create"]["name"] == "tiny"
    assert {auth for _, auth in received["requests"]} == {"Bearer hf_x"}
    files = received["files"]
    assert {"README.md", "modules.json", "model.safetensors", "1_Pooling/config.json", "tuneforge.json"} <= set(files)
    out = tmp_path / "export"
    _export(trained.run_dir, out)
    assert files["model.safetensors"] == (out / "model.safetensors").read_bytes()  # the same export, uploaded whole
    assert 'snapshot_download("me/tiny")' in files["README.md"].decode()
    assert received["card_yaml"] == files["README.md"].decode()


def test_push_fails_in_one_line_offline_or_without_a_token(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["push", str(tmp_path), "me/x", "--token", "hf_x"]) == 1
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE" in err and err.count("\n") == 1
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    assert main(["push", str(tmp_path), "me/x"]) == 1
    assert "no Hugging Face token" in capsys.readouterr().err
    assert main(["push", str(tmp_path), "me/x/y", "--token", "hf_x"]) == 1
    assert "repo id 'me/x/y'" in capsys.readouterr().err


# ---------------------------------------------------------------- README
def test_readme_use_your_model_elsewhere_runs(tmp_path, monkeypatch, request, capsys, no_network):
    """The README's five lines, run on an export of a tiny classification run, print the predictor's label."""
    pytest.importorskip("sentence_transformers")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Use your model elsewhere", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"^```\n(.*?)^```", section, re.M | re.S)
    assert len(code.strip().splitlines()) == 5
    trained, _ = _train("classification", tmp_path, monkeypatch, request)
    out = tmp_path / "exported"
    _export(trained.run_dir, out)
    capsys.readouterr()
    exec(compile(code.replace("exported/banking77", str(out)), "README.md", "exec"), {})
    want = Predictor.from_run_dir(trained.run_dir, precision="fp32").predict(["how do I change my PIN?"])[0]["label"]
    assert capsys.readouterr().out.strip() == want


def test_push_reports_an_unreachable_hub_in_one_line(tmp_path, monkeypatch, request, capsys):
    import huggingface_hub

    from tuneforge.commands.push import _transport_errors

    trained, _ = _train("classification", tmp_path, monkeypatch, request)
    transport = _transport_errors()[-1]  # the hub client's HTTP error base

    class Unreachable(FakeHub):
        def create_repo(self, repo_id, **kwargs):
            raise transport("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(huggingface_hub, "HfApi", Unreachable)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert main(["push", str(trained.run_dir), "me/x", "--token", "hf_x"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tuneforge push: error:")]
    assert errors == ["tuneforge push: error: cannot reach the hub to upload me/x: [Errno -3] Temporary failure in "
                      "name resolution"]


# ---------------------------------------------------------------- the packaged MiniLM
@pytest.mark.slow
def test_packaged_minilm_exports_under_its_hub_id(tmp_path, no_network):
    """The README demo, two steps: the export names all-MiniLM-L6-v2 and its licence, and SentenceTransformer
    reproduces the predictor's logits."""
    st = pytest.importorskip("sentence_transformers")
    from huggingface_hub import ModelCard

    from tuneforge.config import load_config
    from tuneforge.runner import train

    demo = Path(__file__).resolve().parents[1] / "configs" / "classification" / "banking77_demo.yaml"
    cfg = load_config(demo, [f"output_dir={tmp_path / 'run'}", "train.max_steps=2", "train.progress=false",
                             "data.limit=64", "data.test_limit=16", "data.max_length=32", "eval.baselines=[]",
                             "eval.slices=[]", "eval.counterfactuals=null", "train.precision=fp32"])
    run_dir = train(cfg).run_dir
    out = tmp_path / "export"
    info = _export(run_dir, out)
    assert info["format"] == "sentence-transformers" and info["state"]["pooling"] == "mean_pooler"
    data = ModelCard.load(out / "README.md").data
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2" and data.license == "apache-2.0"
    texts = ["I still have not received my new card", "how do I change my PIN?"]
    got = st.SentenceTransformer(str(out), device="cpu").encode(texts, convert_to_tensor=True).float()
    torch.testing.assert_close(got, _predictor_logits(run_dir, texts), atol=1e-4, rtol=0)
    _no_local_paths(out, tmp_path, Path(__file__).resolve().parents[1])


# ---------------------------------------------------------------- GGUF
@pytest.fixture(scope="module")
def tiny_bpe_llama_dir(tmp_path_factory) -> Path:
    """A tiny random Llama whose tokenizer is byte-level BPE (llama.cpp's gpt2 tokenizer model), with ChatML."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from tests.conftest import CHAT_TOKENS, CHATML, WORDS

    folder = tmp_path_factory.mktemp("tiny_bpe_llama")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", *CHAT_TOKENS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([" ".join(WORDS)] * 4 + ["is good positive or negative"], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token=CHAT_TOKENS[0],
                                   eos_token=CHAT_TOKENS[1], chat_template=CHATML)
    fast.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_gguf_export_reads_back_with_the_same_tokens_and_logits(tmp_path, monkeypatch, tiny_bpe_llama_dir,
                                                                 no_network):
    gguf = pytest.importorskip("gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = TINY_TASKS["generation"](tmp_path)
    cfg = tiny_config("generation", "lora", tmp_path, tiny_bpe_llama_dir, spec, train={"epochs": 3})
    trained = train_pair(cfg, monkeypatch)
    out = tmp_path / "export"
    assert main(["export", str(trained.run_dir), str(out), "--gguf"]) == 0
    info = json.loads((out / "tuneforge.json").read_text())
    assert info["gguf"] and info["parity"]["checks"]["gguf (transformers' GGUF loader)"] <= 1e-4
    fields = gguf.GGUFReader(out / "model.gguf").fields
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "llama"
    assert "tokenizer.chat_template" in fields and "tokenizer.ggml.merges" in fields
    text = "<|im_start|>user\nis good positive or negative<|im_end|>\n"
    tok = AutoTokenizer.from_pretrained(out)
    assert AutoTokenizer.from_pretrained(out, gguf_file="model.gguf")(text)["input_ids"] == tok(text)["input_ids"]
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = AutoModelForCausalLM.from_pretrained(out).eval()(input_ids=ids).logits
        got = AutoModelForCausalLM.from_pretrained(out, gguf_file="model.gguf").eval()(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert "llama-cli -m model.gguf" in (out / "README.md").read_text()


def test_gguf_is_refused_for_encoder_tasks(tmp_path, monkeypatch, request, capsys):
    trained, _ = _train("classification", tmp_path, monkeypatch, request)
    assert main(["export", str(trained.run_dir), str(tmp_path / "out"), "--gguf"]) == 1
    assert "--gguf writes generative models" in capsys.readouterr().err
