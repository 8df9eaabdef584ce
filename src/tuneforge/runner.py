"""One run end to end: config → data + audit → baselines → fit → test → report, in a run directory."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tuneforge.build import build_model
from tuneforge.config import RunConfig, resolve_data_paths, save_config
from tuneforge.data.audit import audit_splits, format_audit
from tuneforge.data.load import LoadedData, load_splits
from tuneforge.evaluation.evaluate import predict_features
from tuneforge.evaluation.report import build_report, comparison_table, write_report
from tuneforge.io_utils import atomic_write_json
from tuneforge.meta import build_meta
from tuneforge.models import ResolvedModel, load_backbone, load_tokenizer, resolve_model
from tuneforge.tasks.base import Task, TaskContext, build_task
from tuneforge.training.batching import num_batches
from tuneforge.training.loop import fit
from tuneforge.training.precision import describe_auto, run_precision
from tuneforge.training.steps import steps_per_epoch


@dataclass
class RunResult:
    run_dir: Path
    report: dict[str, Any]


def set_threads(n: int | None) -> None:
    """``train.num_threads``, else $TUNEFORGE_NUM_THREADS, else one intra-op thread per core.

    Oversubscription costs more than it gives on small CPUs: several processes sharing cores (tests, a server
    next to a training run) should each ask for fewer threads.
    """
    env = os.environ.get("TUNEFORGE_NUM_THREADS")
    torch.set_num_threads(n or (int(env) if env else max(1, os.cpu_count() or 1)))


def make_task(cfg: RunConfig, resolved: ResolvedModel) -> Task:
    return build_task(cfg.task, TaskContext(data=cfg.data, head=cfg.head, loss=cfg.loss, model_kind=resolved.kind,
                                            span=cfg.span, generation=cfg.generation,
                                            model_path=resolved.path))


def run_audit(cfg: RunConfig, task: Task, data: LoadedData, tokenizer: Any) -> dict[str, Any]:
    text_of, labels_of = task.audit_view()

    def count_tokens(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]]

    report = audit_splits(data.splits, text_of, labels_of, count_tokens, max_length=cfg.data.max_length,
                          near_dup_threshold=cfg.data.near_duplicate_threshold, bad_rows=data.bad_rows)
    report["carved_from_train"] = data.carved
    return report


def audit(cfg: RunConfig) -> dict[str, Any]:
    """``tuneforge data audit``: read and split the data, and report distributions without training."""
    resolved = resolve_model(cfg.model)
    task = make_task(cfg, resolved)
    data = load_splits(cfg.data, task, cfg.seed)
    tokenizer = load_tokenizer(resolved.path)
    task.setup(data.splits["train"], tokenizer)  # the audit counts tokens as the task encodes them (chat templates)
    return run_audit(cfg, task, data, tokenizer)


def mean_pooled_embedder(location: str, tokenizer: Any, batch_size: int = 64):
    """Sentence embeddings from the untuned backbone (mean over real tokens): the zero-shot baseline's encoder."""
    from tuneforge.tasks.classification.head import pool

    model = load_backbone(location).eval()

    def embed(texts: list[str]) -> torch.Tensor:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = [None] * len(texts)
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=256,
                                return_tensors="pt")
                h = model(**{k: v for k, v in enc.items() if k != "token_type_ids" or "bert" in
                             model.config.model_type}).last_hidden_state  # (B, T, H)
                for i, v in zip(idx, pool(h, enc["attention_mask"], "mean")):
                    out[i] = v
        return torch.stack(out)  # (N, H)

    return embed


def train(cfg: RunConfig) -> RunResult:
    """Run the whole workflow for ``cfg`` and return the report. Only rank 0 writes the run directory."""
    from accelerate.utils import set_seed

    set_threads(cfg.train.num_threads)
    run_dir = Path(cfg.output_dir)
    precision = run_precision(cfg.train.precision, run_dir / "checkpoints" if cfg.train.resume else None)
    accelerator = new_accelerator(precision)
    main = accelerator.is_main_process
    if main and cfg.train.precision == "auto":
        print(f"precision: {precision} (auto: {describe_auto()})")
    if main:
        _prepare_run_dir(run_dir, cfg.train.resume)

    resolved = resolve_model(cfg.model)
    tokenizer = load_tokenizer(resolved.path)
    task = make_task(cfg, resolved)
    data = load_splits(cfg.data, task, cfg.seed)
    task.setup(data.splits["train"], tokenizer)  # before the audit: it counts tokens as the task encodes them
    audit_report = run_audit(cfg, task, data, tokenizer)
    if main:
        print(format_audit(audit_report))
        _write_run_files(run_dir, cfg, task, tokenizer, data, audit_report, resolved, precision,
                         accelerator.num_processes)

    features = {name: [task.encode(ex) for ex in exs] for name, exs in data.splits.items()}  # tokenised once
    test_name = "test" if "test" in data.splits else "validation"
    val_name = "validation" if "validation" in data.splits else test_name
    baselines = score_baselines(cfg.eval.baselines, task, resolved, tokenizer, data.splits["train"],
                                data.splits.get(test_name, []))

    set_seed(cfg.seed)  # the new head's initialisation must not depend on what ran before
    n_batches = num_batches([f["length"] for f in features["train"]], cfg.train.batch_size, cfg.train.batch_tokens)
    n_steps = cfg.train.max_steps or int(steps_per_epoch(n_batches, cfg.train.grad_accum) * cfg.train.epochs)
    built = build_model(task, resolved, cfg.train.dropout, cfg.freeze.policy, cfg.freeze.k, cfg.peft, n_steps,
                        attention_dropout=cfg.train.attention_dropout, freeze_embeddings=cfg.freeze.embeddings)
    if main:  # after build_model: it settles choices that depend on the body (head.pooling=auto)
        atomic_write_json(run_dir / "task.json", {"name": task.name, "state": task.state()})
    if main and cfg.peft.method:  # the PEFT builder filled in defaults (LoRA targets): record what was used
        save_config(cfg, run_dir / "config.yaml")
    if main:
        p = built.parameters
        print(f"trainable parameters: {p['trainable']:,} of {p['total']:,} "
              f"({100 * p['trainable'] / max(1, p['total']):.2f}%)")
    result = fit(built.model, task, features["train"], features[val_name], data.splits[val_name], cfg.train,
                 cfg.seed, run_dir, accelerator=accelerator, step_hooks=built.step_hooks,
                 eval_batch_size=cfg.eval.batch_size, loss_terms=built.loss_terms)

    # after: the tuned model (best checkpoint restored by fit) on every split we have, test included
    dtype = torch.bfloat16 if precision == "bf16" else None
    metrics = {name: task.metrics(predict_features(accelerator.unwrap_model(built.model), task, features[name],
                                                   cfg.eval.batch_size, dtype), data.splits[name])
               for name in ("validation", "test") if name in data.splits}
    report = build_report(task.name, cfg.model, task.main_metric, metrics, baselines, {
        "test_split": test_name,
        "training": _training_summary(result, built.parameters, precision, accelerator.num_processes),
        "audit_warnings": audit_report["warnings"],
    })
    if main:
        write_report(run_dir, report)
        print(f"\nBefore/after fine-tuning on the {test_name} split ({len(data.splits[test_name])} examples):")
        print(comparison_table(report, test_name))
        print(f"\nrun directory: {run_dir}")
    accelerator.wait_for_everyone()
    return RunResult(run_dir, report)


def new_accelerator(precision: str) -> Any:
    """An ``Accelerator`` for this run's precision.

    accelerate keeps one process-wide state and refuses a second ``Accelerator`` with another precision, so a
    Python session that trains twice (fp32, then bf16) would fail. The precision part is reset; the distributed
    part (process group, ranks) is kept.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    mixed = "bf16" if precision == "bf16" else "no"
    if AcceleratorState._shared_state and AcceleratorState._shared_state.get("_mixed_precision") != mixed:
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed)


def _prepare_run_dir(run_dir: Path, resume: bool) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:  # a fresh run must not inherit the metrics or report of an older one
        for stale in ("metrics.jsonl", "report.json", "report.md"):
            (run_dir / stale).unlink(missing_ok=True)


def _write_run_files(run_dir: Path, cfg: RunConfig, task: Task, tokenizer: Any, data: LoadedData,
                     audit_report: dict[str, Any], resolved: ResolvedModel, precision: str, world: int) -> None:
    """Everything needed to reproduce and serve the run, written before training starts."""
    resolve_data_paths(cfg, Path.cwd())  # the saved config must work from any directory
    save_config(cfg, run_dir / "config.yaml")
    atomic_write_json(run_dir / "audit.json", audit_report)
    tokenizer.save_pretrained(run_dir / "tokenizer")
    atomic_write_json(run_dir / "meta.json", build_meta(
        data.files, cfg.seed, {"name": cfg.model, "path": resolved.path, "kind": resolved.kind}, precision, world))


def score_baselines(names: list[str], task: Task, resolved: ResolvedModel, tokenizer: Any,
                    train_examples: list[dict[str, Any]], test: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """"Before" numbers: each baseline's metrics on the frozen test split, with the untuned backbone.

    A generative task scores zero-shot with the untuned LM itself (TaskContext.model_path), not with embeddings.
    """
    wants_embed = "zero_shot" in names and not getattr(task, "needs_lm_head", False)
    embed = mean_pooled_embedder(resolved.path, tokenizer) if wants_embed else None
    predictions = task.baselines(names, train_examples, test, embed)
    return {name: task.metrics(preds, test) for name, preds in predictions.items()}


def _training_summary(result: Any, parameters: dict[str, int], precision: str, world: int) -> dict[str, Any]:
    return {"steps": result.global_step, "best_step": result.best_step, "best_validation": result.best_metric,
            "stopped_early": result.stopped_early, "train_seconds": round(result.train_seconds, 1),
            "samples_per_second": round(result.samples_per_second, 1),
            "tokens_per_second": round(result.tokens_per_second, 1), "precision": precision,
            "trainable_parameters": parameters["trainable"], "total_parameters": parameters["total"],
            "world_size": world}


def load_run_config(run_dir: str | Path) -> RunConfig:
    from tuneforge.config import load_config

    return load_config(Path(run_dir) / "config.yaml")


def task_state(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "task.json").read_text())["state"]
