"""``tuneforge export RUN_DIR --merge OUT``: fold a LoRA / AdaLoRA / IA3 adapter into the base weights and write a
plain transformers folder, checked for parity against the unmerged model before anything is written to OUT.

What lands in OUT, for any task:
  ``config.json`` + ``model.safetensors``  the merged body: ``AutoModel`` (or ``AutoModelForCausalLM`` for
                                            generative tasks) loads it without TuneForge
  tokenizer files                           the run's tokenizer (with any tokens the task added)
  ``head.safetensors``                      the task head's weights (absent when the body is the whole model)
  ``tuneforge.json``                        task name and state (labels, pooling), method, parity figures
  ``README.md``                             the model card: data, metrics, config, and how to load it

Why no ``AutoModelForSequenceClassification``: TuneForge pools token states itself (by default the mean beside the
pretrained pooler's output) and applies one linear layer. No HF class does exactly that —
``BertForSequenceClassification`` uses the dense+tanh pooler on ``[CLS]`` alone, Llama's ``score`` has no bias — so
mapping to one would change the outputs. We export the exact body + head instead, and the model card carries the
few lines of torch that apply the head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tuneforge.evaluation.evaluate import model_inputs
from tuneforge.io_utils import atomic_dir, atomic_write_json, atomic_write_text


class ExportError(RuntimeError):
    """The run cannot be merged, or the merged model does not reproduce the unmerged outputs."""


@dataclass
class ExportResult:
    out: Path
    max_abs_diff: float  # exported (reloaded from OUT) vs unmerged, over every output tensor
    merged_in_memory_diff: float
    examples: int
    probe: str  # what the parity batch was made of


def export_merged(run_dir: str | Path, out: str | Path, atol: float = 1e-4) -> ExportResult:
    """Merge the run's adapter, write OUT atomically, and fail unless the outputs match within ``atol`` (fp32).

    >>> # export_merged("runs/sst2_lora", "exports/sst2").max_abs_diff < 1e-4
    """
    from tuneforge.inference.predictor import Predictor
    from tuneforge.peft_methods import PEFT_METHODS, find_peft_model
    from tuneforge.run import load_run_config

    run_dir, out = Path(run_dir), Path(out)
    method = load_run_config(run_dir).peft.method
    mergeable = [n for n in PEFT_METHODS.names() if PEFT_METHODS.get(n).mergeable]
    if method is None or not PEFT_METHODS.get(method).mergeable:
        raise ExportError(f"{run_dir}: peft.method={method!r} cannot be merged into the base weights; "
                          f"mergeable: {', '.join(mergeable)}")
    predictor = Predictor.from_run_dir(run_dir, precision="fp32")
    cfg, task, model = predictor.cfg, predictor.task, predictor.model.float().eval()
    peft_model = find_peft_model(model)
    if peft_model is None or getattr(model, "backbone", None) is not peft_model:
        raise ExportError(f"{run_dir}: expected the adapter-wrapped body at model.backbone")

    batch, probe = parity_batch(task, cfg, peft_model.get_input_embeddings().num_embeddings)
    reference = _outputs(model, batch)
    model.backbone = peft_model.merge_and_unload()
    in_memory = _max_diff(reference, _outputs(model, batch))

    with atomic_dir(out) as tmp:  # written and checked whole, then swapped in: never a half export
        _write_folder(tmp, run_dir, model, task, cfg)
        model.backbone = _load_body(tmp, task.needs_lm_head)
        exported = _max_diff(reference, _outputs(model, batch))
        if exported > atol:
            raise ExportError(f"parity check failed: max |exported - unmerged| = {exported:.3g} > {atol:g} "
                              f"over {len(next(iter(batch.values())))} examples ({probe})")
        result = ExportResult(out, exported, in_memory, len(next(iter(batch.values()))), probe)
        _write_card(tmp, run_dir, cfg, task, result)
    return result


def parity_batch(task: Any, cfg: Any, vocab_size: int, n: int = 16) -> tuple[dict[str, torch.Tensor], str]:
    """Up to ``n`` of the run's own test (else validation) examples; random tokens when the data is gone."""
    from tuneforge.data.load import load_splits

    try:
        splits = load_splits(cfg.data, task, cfg.seed).splits
        examples = splits.get("test") or splits.get("validation") or splits["train"]
        return task.collate([task.encode(ex) for ex in examples[:n]]), f"{min(n, len(examples))} data examples"
    except (OSError, ValueError, KeyError) as e:
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(5, vocab_size, (n, 24), generator=gen)
        mask = torch.ones_like(ids)
        mask[n // 2:, 16:] = 0  # half the rows padded: the mask must be honoured too
        return {"input_ids": ids, "attention_mask": mask}, f"random tokens (data unavailable: {e})"


def _outputs(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        out = model(**model_inputs(batch, next(model.parameters()).device))
    return {k: v.detach().float().cpu() for k, v in out.items() if isinstance(v, torch.Tensor)}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    if a.keys() != b.keys():
        raise ExportError(f"the merged model returns {sorted(b)}, the unmerged one {sorted(a)}")
    return max(float((a[k] - b[k]).abs().max()) if a[k].numel() else 0.0 for k in a)


def _write_folder(folder: Path, run_dir: Path, model: torch.nn.Module, task: Any, cfg: Any) -> None:
    from safetensors.torch import save_file

    from tuneforge.models import load_tokenizer, resolve_model

    model.backbone.save_pretrained(folder)
    tok_dir = run_dir / "tokenizer"
    load_tokenizer(str(tok_dir) if tok_dir.is_dir() else resolve_model(cfg.model).path).save_pretrained(folder)
    head = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()
            if not k.startswith("backbone.")}
    if head:
        save_file(head, str(folder / "head.safetensors"), metadata={"format": "pt"})
    atomic_write_json(folder / "tuneforge.json", {
        "task": task.name, "state": task.state(), "head_class": type(model).__name__,
        "head_tensors": sorted(head), "base_model": cfg.model, "method": cfg.peft.method,
        "max_length": cfg.data.max_length, "temperature": _temperature(run_dir),
        "body_class": "AutoModelForCausalLM" if task.needs_lm_head else "AutoModel"})


def _temperature(run_dir: Path) -> float | None:
    """The softmax temperature the run fitted on validation (its calibrated probabilities), if it has one."""
    path = run_dir / "calibration.json"
    return json.loads(path.read_text()).get("temperature") if path.is_file() else None


def _load_body(folder: Path, causal_lm: bool) -> torch.nn.Module:
    from transformers import AutoModel, AutoModelForCausalLM

    return (AutoModelForCausalLM if causal_lm else AutoModel).from_pretrained(folder).float().eval()


def _write_card(folder: Path, run_dir: Path, cfg: Any, task: Any, result: ExportResult) -> None:
    from tuneforge.model_card import render_card

    info = json.loads((folder / "tuneforge.json").read_text())
    info["parity"] = {"max_abs_diff": result.max_abs_diff, "merged_in_memory_diff": result.merged_in_memory_diff,
                      "examples": result.examples, "probe": result.probe, "dtype": "float32"}
    atomic_write_json(folder / "tuneforge.json", info)
    atomic_write_text(folder / "README.md", render_card(run_dir, cfg, info))
