"""The model card (README.md) of an exported model: data, metrics, config, parity, and how to load it."""

from __future__ import annotations

import json
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


def classification_snippet(folder: str, pooling: str, multi_label: bool, max_length: int,
                           temperature: float | None = None) -> str:
    """Plain transformers + torch code that reproduces the exported classifier's scores (tested verbatim);
    ``temperature``: the run's calibration, applied as TuneForge's predictor applies it."""
    if multi_label:
        scores = "torch.sigmoid(logits)"
    elif temperature:
        scores = f"torch.softmax(logits / {temperature!r}, -1)   # temperature fitted on validation (calibration)"
    else:
        scores = "torch.softmax(logits, -1)"
    return f'''import json
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

folder = "{folder}"
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


def _loading_section(folder: str, info: dict[str, Any]) -> list[str]:
    state = info.get("state", {})
    if info["task"] == "classification" and info["head_tensors"] == ["classifier.bias", "classifier.weight"]:
        return ["Without TuneForge (transformers + torch only):", "", "```python",
                classification_snippet(folder, state.get("pooling", "mean"), state.get("multi_label", False),
                                       info.get("max_length", 512), info.get("temperature")).rstrip(),
                "```"]
    body = info["body_class"]
    lines = [f"The merged body loads with `transformers.{body}.from_pretrained(\"{folder}\")`."]
    if info["head_tensors"]:
        lines.append(f"The task head (`{info['head_class']}`, tensors {', '.join(info['head_tensors'])}) is in "
                     f"`head.safetensors`; it is applied as in `tuneforge/tasks/{info['task']}/head.py`.")
    return lines


def render_card(run_dir: Path, cfg: Any, info: dict[str, Any], folder: str | None = None) -> str:
    """Markdown for the export folder, from the run's config, meta.json, audit.json and report.json."""
    folder = folder or "."
    meta = _read(run_dir / "meta.json")
    report = _read(run_dir / "report.json")
    audit = _read(run_dir / "audit.json")
    parity = info.get("parity", {})
    lines = [f"# {Path(cfg.output_dir).name}: {info['task']} on `{cfg.model}` ({info['method']}, merged)", "",
             f"Fine-tuned with TuneForge; the {info['method']} adapter is merged into the base weights, so this is "
             f"a plain `{info['body_class']}` checkpoint plus the task head.", "", "## Data", ""]
    for split, entries in (meta.get("data") or {}).items():
        for entry in entries if isinstance(entries, list) else [entries]:
            lines.append(f"- {split}: `{entry.get('path')}` (sha256 {str(entry.get('sha256'))[:12]}…)")
    for split, entry in (audit.get("splits") or {}).items():
        if isinstance(entry, dict) and "count" in entry:
            lines.append(f"- {split}: {entry['count']} examples")
    lines += ["", "## Metrics", ""]
    test_name = report.get("test_split", "test")
    metrics = (report.get("metrics") or {}).get(test_name, {})
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    lines += [f"- {test_name} {k}: {v:.4f}" for k, v in scalars.items()] or ["- (no report.json)"]
    lines += ["", "## Parity", "",
              f"max |exported − unmerged| over all outputs = {parity.get('max_abs_diff', float('nan')):.2e} "
              f"(fp32, {parity.get('probe', '?')}); merged in memory: "
              f"{parity.get('merged_in_memory_diff', float('nan')):.2e}.", "", "## How to load", ""]
    lines += _loading_section(folder, info)
    config = {k: v for k, v in cfg.to_dict().items() if k in ("model", "task", "seed", "head", "train", "peft")}
    lines += ["", "## Config", "", "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```", "",
              f"Library versions: {json.dumps(meta.get('versions', {}))}", ""]
    return "\n".join(lines)


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
