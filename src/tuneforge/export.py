"""``tuneforge export RUN OUT``: any run as a folder the standard libraries open, checked for parity before it lands.

What lands in OUT (``export_formats.py`` has the table of which task and head map to which format):
  ``config.json`` + ``model.safetensors``  the model in its standard class (``AutoModelForSequenceClassification``,
                                            ``...ForTokenClassification``, ``...ForQuestionAnswering``,
                                            ``AutoModelForCausalLM``), or the body (``AutoModel``) of a
                                            sentence-transformers / documented body+head folder
  ``modules.json``, ``1_Pooling/`` ...      sentence-transformers modules (classification with mean/cls/last pooling)
  ``head.safetensors``                      the task head's tensors, for the folders whose head is not in a class
  ``adapter/``                              PEFT runs: ``adapter_config.json`` + weights for ``PeftModel``
  tokenizer files                           the run's tokenizer (added tokens, chat template)
  ``tuneforge.json``                        format, task state (labels, pooling), parity figures
  ``README.md``                             the model card, with hub metadata (``model_card.py``)

Every written model is read back with the plain library and its outputs compared with the run's own (TuneForge's
predictor, fp32) on the run's test examples: an export that differs by more than ``atol`` is never written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tuneforge.evaluation.evaluate import model_inputs
from tuneforge.export_formats import (
    HF_CLASSES,
    choose_format,
    head_state,
    hf_outputs,
    hf_task_model,
    st_outputs,
    write_sentence_transformers,
)
from tuneforge.io_utils import atomic_dir, atomic_write_json, atomic_write_text

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class ExportError(RuntimeError):
    """The run cannot be exported, or the exported model does not reproduce the run's outputs."""


@dataclass
class ExportResult:
    out: Path
    format: str  # see export_formats.py
    max_abs_diff: float  # the largest gap over every check below
    examples: int
    probe: str  # what the parity batch was made of
    checks: dict[str, float] = field(default_factory=dict)  # what was reloaded → max |exported - run|
    merged_in_memory_diff: float | None = None
    dtype: str = "float32"


def export_run(run_dir: str | Path, out: str | Path, atol: float = 1e-4, dtype: str = "auto",
               require_merge: bool = False, repo_id: str | None = None, license: str | None = None,
               gguf: bool = False) -> ExportResult:
    """Write ``run_dir`` to ``out`` in the standard format of its task and method; fail unless every written model,
    reloaded with transformers / peft / sentence-transformers, gives the run's outputs within ``atol``.

    ``dtype``: ``auto`` saves generative models in the dtype they were trained in, others in float32.
    ``repo_id`` names the model in the card's loading code (else ``"."``). ``gguf``: also ``model.gguf`` for
    llama.cpp (Llama-architecture generative runs; ``export_gguf.py``).

    >>> # export_run("runs/sst2_lora", "exports/sst2").max_abs_diff < 1e-4
    """
    from tuneforge.inference.predictor import Predictor
    from tuneforge.peft_methods import PEFT_METHODS, find_peft_model
    from tuneforge.run import load_run_config

    run_dir, out = Path(run_dir), Path(out)
    method = load_run_config(run_dir).peft.method
    spec = PEFT_METHODS.get(method) if method else None
    if spec is not None and spec.make_config is None:
        raise ExportError(f"{run_dir}: peft.method={method!r} is TuneForge's own module, which no standard library "
                          f"opens; train with lora, adalora or ia3 to export")
    if require_merge and (spec is None or not spec.mergeable):
        mergeable = [n for n in PEFT_METHODS.names() if PEFT_METHODS.get(n).mergeable]
        raise ExportError(f"{run_dir}: peft.method={method!r} cannot be merged into the base weights; "
                          f"mergeable: {', '.join(mergeable)}")
    predictor = Predictor.from_run_dir(run_dir, precision="fp32")
    cfg, task, model = predictor.cfg, predictor.task, predictor.model.float().eval()
    target_dtype = _export_dtype(dtype, run_dir, task)
    if gguf and not task.needs_lm_head:
        raise ExportError(f"{run_dir}: --gguf writes generative models (llama.cpp); this run's task is {task.name}")
    batch, probe = parity_batch(task, cfg, len(task.tokenizer))
    batch = _without_generation(model, batch)
    examples = len(next(iter(batch.values())))
    reference = _outputs(model, batch)
    peft_model = find_peft_model(model)
    head = head_state(model)
    result = ExportResult(out, "", 0.0, examples, probe, dtype=str(target_dtype).removeprefix("torch."))
    with atomic_dir(out) as tmp:  # written and checked whole, then swapped in: never a half export
        task.tokenizer.save_pretrained(tmp)  # first: loaders that the checks run read it
        if peft_model is not None:
            write_adapter(tmp / "adapter", peft_model, public_model_id(cfg.model))
            result.checks["adapter (peft)"] = _max_diff(reference, adapter_outputs(run_dir, tmp / "adapter", head,
                                                                                   batch))
            _require(result.checks["adapter (peft)"], atol, "adapter", examples, probe)
        if peft_model is not None and not spec.mergeable:
            result.format = "adapter"  # prompt-learning methods have no merged form
        else:
            if peft_model is not None:
                _replace_module(model, peft_model, peft_model.merge_and_unload())
                result.merged_in_memory_diff = _max_diff(reference, _outputs(model, batch))
                result.checks["merged in memory (fp32)"] = result.merged_in_memory_diff
                _require(result.merged_in_memory_diff, atol, "merged in memory", examples, probe)
            result.format, how, diff = write_model(tmp, model, task, cfg, batch, reference, target_dtype)
            result.checks[how] = diff
            _require(diff, atol, result.format, examples, probe)
        if gguf:
            result.checks["gguf (transformers' GGUF loader)"] = _write_gguf(tmp, model, task, batch, out.name)
            _require(result.checks["gguf (transformers' GGUF loader)"], atol, "gguf", examples, probe)
        if head and result.format in ("body+head", "sentence-transformers", "adapter"):
            from safetensors.torch import save_file

            save_file(head, str(tmp / "head.safetensors"), metadata={"format": "pt"})
        result.max_abs_diff = max(result.checks.values())
        info = _write_info(tmp, run_dir, cfg, task, model, head, result)
        _write_card(tmp, run_dir, cfg, info, repo_id, license)
        _readable(tmp)
    return result


def export_merged(run_dir: str | Path, out: str | Path, atol: float = 1e-4) -> ExportResult:
    """``export_run`` for LoRA / AdaLoRA / IA3 runs only (refuses the others): ``tuneforge export --merge``."""
    return export_run(run_dir, out, atol=atol, require_merge=True)


def public_model_id(name: str) -> str | None:
    """The hub id a config's ``model`` stands for: the upstream id of a packaged alias, a hub id as written, and None
    for a local folder (never a local path: cards and adapter configs get published)."""
    from tuneforge.models import ALIASES

    if name in UPSTREAM:
        return UPSTREAM[name]
    if name in ALIASES or Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return None
    return name


UPSTREAM = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
UPSTREAM_LICENSE = {"minilm": "apache-2.0", "smollm2": "apache-2.0"}


# ---------------------------------------------------------------- the parity batch and outputs
def parity_batch(task: Any, cfg: Any, vocab_size: int, n: int = 16) -> tuple[dict[str, torch.Tensor], str]:
    """Up to ``n`` of the run's own test (else validation) examples; random tokens when the data is gone."""
    from tuneforge.data.load import load_splits

    own_loader = getattr(task, "load_data", None)  # a task that reads and splits its own files, as run.prepare
    try:
        splits = (own_loader(cfg.data, cfg.seed) if own_loader else load_splits(cfg.data, task, cfg.seed)).splits
        examples = splits.get("test") or splits.get("validation") or splits["train"]
        features = [task.encode(ex) for ex in examples[:n]]
        flat = [f for group in features for f in (group if isinstance(group, list) else [group])][:n]
        return task.collate(flat), f"{len(flat)} data examples"
    except (OSError, ValueError, KeyError) as e:
        if task.needs_lm_head or task.name in ("relation", "qa"):
            raise ExportError(f"the parity check needs the run's data, which cannot be read: {e}") from None
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(5, vocab_size, (n, 24), generator=gen)
        mask = torch.ones_like(ids)
        mask[n // 2:, 16:] = 0  # half the rows padded: the mask must be honoured too
        return {"input_ids": ids, "attention_mask": mask}, f"random tokens (data unavailable: {e})"


LM_LOGIT_ROWS = 4  # rows whose full next-token distributions a causal-LM check compares, beside the task outputs


def _outputs(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The task model's outputs; for causal LMs also the body's next-token probabilities over the first rows.

    Probabilities, not raw logits: a 30-layer LM's logits reach |30| and merging an adapter in fp32 moves them by
    ~1e-4 of pure rounding (SmolLM2-135M LoRA: 1.4e-4), which says nothing about the distribution it samples from."""
    inputs = model_inputs(batch, next(model.parameters()).device)
    with torch.inference_mode():
        out = model(**inputs)
        found = {k: v.detach().float().cpu() for k, v in out.items() if isinstance(v, torch.Tensor)}
        if getattr(model, "pad_id", None) is not None:  # CausalLM / LabelScorer: a language model body
            rows = slice(0, LM_LOGIT_ROWS)
            logits = model.backbone(input_ids=inputs["input_ids"][rows],
                                    attention_mask=inputs["attention_mask"][rows]).logits
            found["lm_probs"] = torch.softmax(logits.float(), dim=-1).cpu()
    return found


def _without_generation(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The parity batch of a generation run scores its reference answers and compares logits; decoding every prompt
    (``sequences``) would only repeat that check at many times the cost."""
    if hasattr(model, "decoding"):
        return {k: v for k, v in batch.items() if k not in ("prompt_ids", "prompt_mask")}
    return batch


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    if a.keys() != b.keys():
        raise ExportError(f"the exported model returns {sorted(b)}, the run's model {sorted(a)}")
    for k in a:
        if a[k].shape != b[k].shape:
            raise ExportError(f"the exported model's {k} has shape {tuple(b[k].shape)}, the run's "
                              f"{tuple(a[k].shape)}")
    return max(float((a[k] - b[k]).abs().max()) if a[k].numel() else 0.0 for k in a)


def _require(diff: float, atol: float, what: str, examples: int, probe: str) -> None:
    if not diff <= atol:  # NaN fails too
        raise ExportError(f"parity check failed ({what}): max |exported - run| = {diff:.3g} > {atol:g} over "
                          f"{examples} examples ({probe})")


def _replace_module(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` where ``old`` sits inside ``root`` (the PEFT model may be behind the virtual-token stripper)."""
    for module in root.modules():
        for child_name, child in module.named_children():
            if child is old:
                setattr(module, child_name, new)
                return
    raise ExportError(f"no {type(old).__name__} inside {type(root).__name__}")


def _export_dtype(dtype: str, run_dir: Path, task: Any) -> torch.dtype:
    if dtype != "auto":
        if dtype not in DTYPES:
            raise ExportError(f"dtype {dtype!r}: choose auto, {', '.join(DTYPES)}")
        if DTYPES[dtype] != torch.float32 and not task.needs_lm_head:
            raise ExportError(f"dtype {dtype}: only generative models are exported in a reduced precision")
        return DTYPES[dtype]
    if not task.needs_lm_head:
        return torch.float32
    meta = _read_json(run_dir / "meta.json")
    return torch.bfloat16 if meta.get("precision") == "bf16" else torch.float32


# ---------------------------------------------------------------- writing and reloading
def write_model(folder: Path, model: nn.Module, task: Any, cfg: Any, batch: dict[str, torch.Tensor],
                reference: dict[str, torch.Tensor], dtype: torch.dtype) -> tuple[str, str, float]:
    """Write the (merged) task model in its standard format; (format, what reloaded it, max output gap)."""
    fmt = choose_format(task, model)
    head = head_state(model)
    if fmt in HF_CLASSES:
        labels = getattr(task, "labels", None) or getattr(task, "tags", None)
        hf = hf_task_model(model.backbone, head, fmt, labels if task.name != "qa" else None,
                           getattr(task, "multi_label", False))
        if hf is not None:
            hf.save_pretrained(folder)
            reloaded = _load_class(folder, HF_CLASSES[fmt])
            return fmt, f"transformers.{type(reloaded).__name__}", _max_diff(reference, hf_outputs(reloaded, batch))
        fmt = "body+head"  # the class's head is shaped otherwise: the documented folder
    if fmt == "sentence-transformers":
        model.backbone.save_pretrained(folder)
        write_sentence_transformers(folder, model, cfg.data.max_length)
        got, how = st_outputs(folder, batch)
        return fmt, how, _max_diff(reference, got)
    if fmt == "causal-lm":
        return fmt, "transformers.AutoModelForCausalLM", _write_causal_lm(folder, model, task, batch, reference,
                                                                          dtype)
    model.backbone.save_pretrained(folder)
    model.backbone = _load_class(folder, "AutoModel")
    return "body+head", "transformers.AutoModel + head.safetensors", _max_diff(reference, _outputs(model, batch))


def _write_causal_lm(folder: Path, model: nn.Module, task: Any, batch: dict[str, torch.Tensor],
                     reference: dict[str, torch.Tensor], dtype: torch.dtype) -> float:
    body = model.backbone
    stop = getattr(model, "stop_ids", None)
    if stop and getattr(body, "generation_config", None) is not None:
        body.generation_config.eos_token_id = list(stop) if len(stop) > 1 else stop[0]
        body.generation_config.pad_token_id = task.tokenizer.pad_token_id
    if dtype != torch.float32:  # the check compares like with like: the run's model in that dtype
        cast_parameters(model, dtype)
        reference = _outputs(model, batch)
    body.save_pretrained(folder)
    model.backbone = _load_class(folder, "AutoModelForCausalLM", dtype)
    return _max_diff(reference, _outputs(model, batch))


def _write_gguf(folder: Path, model: nn.Module, task: Any, batch: dict[str, torch.Tensor], name: str) -> float:
    """``model.gguf`` beside the exported folder, read back and compared with it (fp32 logits)."""
    from tuneforge.export_gguf import GgufError, gguf_gap, write_gguf

    if not (folder / "config.json").is_file():
        raise ExportError("--gguf needs a merged model: prompt-learning adapters have none")
    body = model.backbone
    tok = task.tokenizer
    prompts = [tok.decode(row[mask.bool()], skip_special_tokens=False)
               for row, mask in zip(batch["input_ids"][:LM_LOGIT_ROWS], batch["attention_mask"][:LM_LOGIT_ROWS])]
    try:
        write_gguf(folder, body.config, body.state_dict(), tok, name)
        return gguf_gap(folder, prompts, _load_class(folder, "AutoModelForCausalLM"), tok)
    except GgufError as e:
        raise ExportError(f"--gguf: {e}") from None


def cast_parameters(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Parameters to ``dtype``, buffers as they are: what ``from_pretrained(dtype=...)`` builds (rotary frequencies
    stay float32; ``model.to(bfloat16)`` would round them too and shift every position's angle)."""
    for p in model.parameters():
        p.data = p.data.to(dtype)
    return model


def _load_class(folder: Path, name: str, dtype: torch.dtype = torch.float32) -> nn.Module:
    import transformers

    return getattr(transformers, name).from_pretrained(folder, dtype=dtype).eval()


def write_adapter(folder: Path, peft_model: Any, base_id: str | None) -> None:
    """peft's own ``save_pretrained`` (``adapter_config.json`` + ``adapter_model.safetensors``), with the base model
    named by its hub id (or left unnamed for a local base, never a local path)."""
    peft_model.save_pretrained(folder)
    (folder / "README.md").unlink(missing_ok=True)  # peft's stub card names the base by its local path
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base_id
    atomic_write_json(config_path, config)


def adapter_outputs(run_dir: Path, adapter: Path, head: dict[str, torch.Tensor],
                    batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The run's task model rebuilt on the untouched base weights, its body opened with
    ``PeftModel.from_pretrained(base, adapter)`` and its head from ``head``: what a user of the adapter runs."""
    from accelerate.utils import set_seed
    from peft import PeftModel

    from tuneforge.build import build_model
    from tuneforge.peft_methods import PEFT_METHODS
    from tuneforge.run import open_run

    loaded = open_run(run_dir, with_model=False)
    cfg = loaded.cfg
    set_seed(cfg.seed)  # as open_run: new token rows are rebuilt from the seed
    model = build_model(loaded.task, loaded.resolved, None, "full", 0, None).model.float().eval()
    wrapped: nn.Module = PeftModel.from_pretrained(model.backbone, str(adapter)).eval()
    if PEFT_METHODS.get(cfg.peft.method).virtual_tokens:
        from tuneforge.peft_modules import VirtualTokenStripper

        wrapped = VirtualTokenStripper(wrapped, cfg.peft.num_virtual_tokens)
    model.backbone = wrapped
    missing = model.load_state_dict(head, strict=False)
    if missing.unexpected_keys:
        raise ExportError(f"head tensors {missing.unexpected_keys[:5]} do not fit the rebuilt model")
    return _outputs(model, batch)


# ---------------------------------------------------------------- tuneforge.json and the card
def _write_info(folder: Path, run_dir: Path, cfg: Any, task: Any, model: nn.Module, head: dict[str, torch.Tensor],
                result: ExportResult) -> dict[str, Any]:
    info = {"format": result.format, "task": task.name, "state": task.state(), "head_class": type(model).__name__,
            "head_tensors": sorted(head) if result.format in ("body+head", "sentence-transformers", "adapter")
            else [], "base_model": public_model_id(cfg.model) or Path(cfg.model).name,
            "method": cfg.peft.method, "max_length": cfg.data.max_length, "temperature": _temperature(run_dir),
            "body_class": "AutoModelForCausalLM" if task.needs_lm_head else "AutoModel", "dtype": result.dtype,
            "adapter": (folder / "adapter").is_dir(), "gguf": (folder / "model.gguf").is_file(),
            "parity": {"max_abs_diff": result.max_abs_diff, "checks": result.checks,
                       "merged_in_memory_diff": result.merged_in_memory_diff, "examples": result.examples,
                       "probe": result.probe}}
    if hasattr(model, "candidates"):  # classification_generative: the label answers it scores
        info["label_answers"] = dict(zip(task.labels, [task.tokenizer.decode(c) for c in model.candidates]))
    atomic_write_json(folder / "tuneforge.json", info)
    return info


def _readable(folder: Path) -> None:
    """Files and folders with the usual umask permissions: the atomic writers' temp files are owner-only."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _temperature(run_dir: Path) -> float | None:
    """The softmax temperature the run fitted on validation (its calibrated probabilities), if it has one."""
    return _read_json(run_dir / "calibration.json").get("temperature")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_card(folder: Path, run_dir: Path, cfg: Any, info: dict[str, Any], repo_id: str | None,
                license: str | None) -> None:
    from tuneforge.model_card import build_card

    card = build_card(run_dir, cfg, info, folder=repo_id or ".", license=license)
    atomic_write_text(folder / "README.md", str(card))
