"""The model card (README.md) of an exported model: hub metadata (``huggingface_hub.ModelCard``) and a body with the
data, the before/after table, parity, how to load it without TuneForge, and the config. No local paths: the card is
published as it is."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

POOLING_CODE = {
    "mean": ("m = enc[\"attention_mask\"].unsqueeze(-1).float()\n"
             "    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)   # mean over real tokens"),
    "cls": "pooled = hidden[:, 0]                                      # first token",
    "pooler": "pooled = body.pooler(hidden)                               # pretrained dense + tanh on [CLS]",
    "mean_pooler": ("m = enc[\"attention_mask\"].unsqueeze(-1).float()\n"
                    "    mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)     # mean over real tokens\n"
                    "    pooled = torch.cat([mean, body.pooler(hidden)], -1)        # and the pretrained pooler"),
    "last": ("last = enc[\"attention_mask\"].sum(1) - 1                   # right padding: last real token\n"
             "    pooled = hidden[torch.arange(hidden.size(0)), last]"),
}


def _scores(multi_label: bool, temperature: float | None) -> str:
    if multi_label:
        return "torch.sigmoid(logits)"
    if temperature:
        return f"torch.softmax(logits / {temperature!r}, -1)   # temperature fitted on validation (calibration)"
    return "torch.softmax(logits, -1)"


def _folder_line(folder: str) -> str:
    """A hub repo id is fetched first (the snippets read files from the folder); a local folder is used as is."""
    if folder == "." or not _is_repo_id(folder):
        return f'folder = "{folder}"'
    return f'from huggingface_hub import snapshot_download\nfolder = snapshot_download("{folder}")'


def _is_repo_id(name: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", name))


def classification_snippet(folder: str, pooling: str, multi_label: bool, max_length: int,
                           temperature: float | None = None) -> str:
    """Plain transformers + torch code that reproduces the exported classifier's scores (tested verbatim);
    ``temperature``: the run's calibration, applied as TuneForge's predictor applies it."""
    scores = _scores(multi_label, temperature)
    return f'''import json
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

{_folder_line(folder)}
tok = AutoTokenizer.from_pretrained(folder)
body = AutoModel.from_pretrained(folder).eval()
head = load_file(f"{{folder}}/head.safetensors")
labels = json.load(open(f"{{folder}}/tuneforge.json"))["state"]["labels"]
enc = tok(["an example sentence"], return_tensors="pt", padding=True, truncation=True, max_length={max_length})
with torch.no_grad():
    hidden = body(**enc).last_hidden_state                      # (B, T, H)
    {POOLING_CODE[pooling]}
    logits = pooled @ head["classifier.weight"].T + head["classifier.bias"]
    scores = {scores}
print([dict(zip(labels, row.tolist())) for row in scores])
'''



def sequence_classification_snippet(folder: str, multi_label: bool, max_length: int,
                                    temperature: float | None = None) -> str:
    return f'''import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

{_folder_line(folder)}
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
enc = tok(["an example sentence"], return_tensors="pt", padding=True, truncation=True, max_length={max_length})
with torch.no_grad():
    logits = model(**enc).logits
    scores = {_scores(multi_label, temperature)}
print([dict(zip(labels, row.tolist())) for row in scores])
'''


def sentence_transformers_snippet(folder: str, multi_label: bool, temperature: float | None = None) -> str:
    return f'''import json
import torch
from sentence_transformers import SentenceTransformer

{_folder_line(folder)}
model = SentenceTransformer(folder)                             # Transformer + Pooling + Dense: the classifier
labels = json.load(open(f"{{folder}}/tuneforge.json"))["state"]["labels"]
logits = model.encode(["an example sentence"], convert_to_tensor=True)
scores = {_scores(multi_label, temperature)}
print([dict(zip(labels, row.tolist())) for row in scores])
'''


def token_classification_snippet(folder: str, max_length: int) -> str:
    return f'''import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

{_folder_line(folder)}
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForTokenClassification.from_pretrained(folder).eval()
enc = tok("john works at google in paris", return_tensors="pt", truncation=True, max_length={max_length})
with torch.no_grad():
    logits = model(**enc).logits[0]                              # (T, num_tags)
tags = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
print(list(zip(tok.convert_ids_to_tokens(enc["input_ids"][0]), tags)))
'''


def question_answering_snippet(folder: str, max_length: int) -> str:
    return f'''import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

{_folder_line(folder)}
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForQuestionAnswering.from_pretrained(folder).eval()
question, context = "where was mary born ?", "mary works at google . mary was born in paris ."
enc = tok(question, context, return_tensors="pt", truncation="only_second", max_length={max_length})
with torch.no_grad():
    out = model(**enc)
start, end = int(out.start_logits.argmax()), int(out.end_logits.argmax())
print(tok.decode(enc["input_ids"][0][start:end + 1]))
'''


def causal_lm_snippet(folder: str) -> str:
    return f'''from transformers import AutoModelForCausalLM, AutoTokenizer

{_folder_line(folder)}
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder)
messages = [{{"role": "user", "content": "is good positive or negative"}}]
ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
out = model.generate(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"], max_new_tokens=32,
                     do_sample=False)
print(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
'''


def adapter_snippet(folder: str, info: dict[str, Any]) -> str:
    body = info["body_class"]
    base = info["base_model"]
    return f'''from peft import PeftModel
from transformers import {body}

{_folder_line(folder)}
base = {body}.from_pretrained("{base}")                # the base model the adapter was trained on
model = PeftModel.from_pretrained(base, f"{{folder}}/adapter").eval()
'''


def _code(text: str) -> list[str]:
    return ["```python", text.rstrip(), "```"]


def loading_section(folder: str, info: dict[str, Any]) -> list[str]:
    """How to use the export without TuneForge: the first code block reproduces TuneForge's outputs (tested)."""
    state, fmt = info.get("state", {}), info["format"]
    multi, temp, max_len = state.get("multi_label", False), info.get("temperature"), info.get("max_length", 512)
    lines: list[str] = []
    if fmt == "sequence-classification":
        lines += ["With transformers alone (`AutoModelForSequenceClassification`):", ""]
        lines += _code(sequence_classification_snippet(folder, multi, max_len, temp))
    elif fmt == "sentence-transformers":
        lines += ["With sentence-transformers (the `Dense` output is the classifier's logits):", ""]
        lines += _code(sentence_transformers_snippet(folder, multi, temp))
        if state.get("pooling") in POOLING_CODE:
            lines += ["", "Or with transformers + torch only (the head's tensors are in `head.safetensors`):", ""]
            lines += _code(classification_snippet(folder, state["pooling"], multi, max_len, temp))
    elif fmt == "token-classification":
        lines += _code(token_classification_snippet(folder, max_len))
        if state.get("label_all_subwords") is False:
            lines += ["", "TuneForge reads each word's tag from its first sub-word token."]
    elif fmt == "question-answering":
        lines += _code(question_answering_snippet(folder, max_len))
        lines += ["", "TuneForge also slides a window over long contexts and keeps the best-scoring legal span."]
    elif fmt == "causal-lm":
        lines += _code(causal_lm_snippet(folder))
        if info.get("label_answers"):
            lines += ["", "TuneForge scores each label's answer after the prompt and picks the most likely; the "
                      "answers are in `tuneforge.json` (`label_answers`)."]
    else:
        lines.append(f"The body loads with `transformers.{info['body_class']}.from_pretrained(folder)`.")
    if info.get("adapter"):
        lines += ["", "The PEFT adapter alone (`adapter/`), on the untouched base model:", ""]
        lines += _code(adapter_snippet(folder, info))
        if info["task"] == "relation":
            lines += ["", "The relation task added marker tokens to the vocabulary: the base model needs its "
                      "embeddings grown to the tokenizer's size with TuneForge's rows first "
                      "(`add_marker_embeddings` in `tuneforge/tasks/relation/head.py`); the merged model at the root "
                      "already has them."]
    if info.get("gguf"):
        lines += ["", "For llama.cpp, `model.gguf` holds the same weights, tokenizer and chat template "
                  "(read back with transformers' GGUF loader at export: the logits matched):", "",
                  "```bash", "llama-cli -m model.gguf -cnv", "```"]
    if info["head_tensors"]:
        lines += ["", f"The task head (`{info['head_class']}`, tensors {', '.join(info['head_tensors'])}) is in "
                      f"`head.safetensors`; it is applied as in `tuneforge/tasks/{info['task']}/head.py`."]
    return lines


PIPELINE = {"classification": "text-classification", "relation": "text-classification",
            "ner": "token-classification", "qa": "question-answering", "generation": "text-generation",
            "classification_generative": "text-generation"}


def build_card(run_dir: Path, cfg: Any, info: dict[str, Any], folder: str = ".", license: str | None = None) -> Any:
    """A ``huggingface_hub.ModelCard``: metadata (base model, license, datasets, metrics, eval results) + body."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from tuneforge.export import UPSTREAM_LICENSE

    report = _read(run_dir / "report.json")
    test_name = report.get("test_split", "test")
    tuned = (report.get("metrics") or {}).get(test_name, {})
    from tuneforge.evaluation.report import headline

    scalars = {k: float(tuned[k]) for k in headline(tuned)}  # quality metrics, not calibration settings
    datasets = hub_datasets(cfg.data)
    pipeline = PIPELINE.get(info["task"], "text-classification")
    data_name = datasets[0] if datasets else _data_name(cfg.data)
    results = [EvalResult(task_type=pipeline, dataset_type=data_name, dataset_name=data_name, dataset_split=test_name,
                          metric_type=k, metric_value=v) for k, v in scalars.items()]
    base = info["base_model"] if "/" in info["base_model"] else None
    library = {"sentence-transformers": "sentence-transformers", "adapter": "peft"}.get(info["format"],
                                                                                       "transformers")
    data = ModelCardData(
        base_model=base, license=license or UPSTREAM_LICENSE.get(cfg.model), datasets=datasets or None,
        metrics=list(scalars) or None, library_name=library, pipeline_tag=pipeline,
        tags=["tuneforge", info["task"], info["method"] or "full-fine-tuning", *(["gguf"] if info.get("gguf") else [])],
        model_name=_title(cfg), eval_results=results or None)
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + render_card(
        run_dir, cfg, info, folder))


def hub_datasets(data: Any) -> list[str]:
    """The data sources that are hub datasets (``hf://owner/name?split=...``), as hub ids."""
    found = []
    for split in ("train", "validation", "test"):
        value = str(getattr(data, split, None) or "")
        if value.startswith("hf://"):
            found.append(value.removeprefix("hf://").split("?")[0])
    return list(dict.fromkeys(found))


def _data_name(data: Any) -> str:
    return Path(str(data.test or data.train)).name or "local data"


def _title(cfg: Any) -> str:
    return Path(cfg.output_dir).name


def public_config(cfg: Any, base_model: str) -> dict[str, Any]:
    """The config sections worth publishing, with the model by its public name and no absolute paths."""
    config = {k: v for k, v in cfg.to_dict().items() if k in ("model", "task", "seed", "head", "train", "peft")}
    config["model"] = base_model
    return _strip_paths(config)


def _strip_paths(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_paths(v) for v in value]
    if isinstance(value, str) and (value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:\\", value)):
        return Path(value).name
    return value


def before_after(report: dict[str, Any]) -> list[str]:
    """The report's baselines and the tuned model on the test split, as a markdown table."""
    from tuneforge.evaluation.report import headline

    test_name = report.get("test_split", "test")
    tuned = (report.get("metrics") or {}).get(test_name, {})
    cols = headline(tuned)
    if not cols:
        return ["(no report.json)"]
    rows = [*(report.get("baselines") or {}).items(), ("fine-tuned", tuned)]
    out = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, m in rows:
        cells = [f"{m[c]:.4f}" if isinstance(m.get(c), (int, float)) else "-" for c in cols]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def render_card(run_dir: Path, cfg: Any, info: dict[str, Any], folder: str = ".") -> str:
    """The card's markdown body, from the run's config, meta.json, audit.json and report.json."""
    meta, report, audit = _read(run_dir / "meta.json"), _read(run_dir / "report.json"), _read(run_dir / "audit.json")
    parity = info.get("parity", {})
    method = info["method"] or "full fine-tuning"
    lines = [f"# {_title(cfg)}: {info['task']} on `{info['base_model']}` ({method})", "",
             f"Fine-tuned with TuneForge and exported as a `{info['format']}` folder that the standard libraries "
             f"open without TuneForge (weights in {info.get('dtype', 'float32')}).", "", "## Data", ""]
    for split, entries in (meta.get("data") or {}).items():
        for entry in entries if isinstance(entries, list) else [entries]:
            name = Path(str(entry.get("path"))).name if not str(entry.get("path")).startswith("hf://") \
                else entry.get("path")
            lines.append(f"- {split}: `{name}` (sha256 {str(entry.get('sha256'))[:12]}…)")
    for split, entry in (audit.get("splits") or {}).items():
        if isinstance(entry, dict) and "count" in entry:
            lines.append(f"- {split}: {entry['count']} examples")
    test_name = report.get("test_split", "test")
    lines += ["", f"## Before / after fine-tuning ({test_name} split)", "", *before_after(report), "",
              "## Parity", "",
              f"Every exported model was reloaded and its outputs compared with TuneForge's on "
              f"{parity.get('probe', '?')}; max |exported − TuneForge|:", ""]
    lines += [f"- {what}: {diff:.2e}" for what, diff in (parity.get("checks") or {}).items()]
    lines += ["", "## How to load", "", *loading_section(folder, info)]
    lines += ["", "## Config", "", "```yaml",
              yaml.safe_dump(public_config(cfg, info["base_model"]), sort_keys=False).rstrip(), "```", "",
              f"Library versions: {json.dumps(meta.get('versions', {}))}", ""]
    return "\n".join(lines)


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
