"""One run end to end: config → data + audit → baselines → fit → test → report, in a run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tuneforge.config import RunConfig, resolve_data_paths, save_config
from tuneforge.data.audit import audit_splits, format_audit
from tuneforge.data.load import LoadedData
from tuneforge.evaluation.analysis import finish_run_report
from tuneforge.evaluation.baselines import score_baselines
from tuneforge.evaluation.calibrate_run import add_calibration_metrics
from tuneforge.evaluation.evaluate import predict_features
from tuneforge.evaluation.report import build_report, comparison_table, write_report
from tuneforge.io_utils import atomic_write_json
from tuneforge.meta import build_meta
from tuneforge.prompting.runs import evaluate_untrained, fit_setfit_run, setup_fewshot, trains_nothing
from tuneforge.run import Prepared, new_accelerator, prepare, set_threads
from tuneforge.run_dir import open_run_dir, training_config
from tuneforge.tasks.base import Task
from tuneforge.training.loop import fit
from tuneforge.training.precision import describe_auto, run_precision


@dataclass
class RunResult:
    run_dir: Path
    report: dict[str, Any]


def run_audit(cfg: RunConfig, task: Task, data: LoadedData, tokenizer: Any) -> dict[str, Any]:
    text_of, labels_of = task.audit_view()

    def count_tokens(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]]

    report = audit_splits(data.splits, text_of, labels_of, count_tokens, max_length=cfg.data.max_length,
                          near_dup_threshold=cfg.data.near_duplicate_threshold, bad_rows=data.bad_rows,
                          tokenizer=tokenizer, limited=data.limited)
    report["carved_from_train"] = data.carved
    return report


def audit(cfg: RunConfig) -> dict[str, Any]:
    """``tuneforge data audit``: read and split the data, and report distributions without training."""
    prepared = prepare(cfg, encode=False)  # the audit counts tokens as the task encodes them (chat templates)
    return run_audit(cfg, prepared.task, prepared.data, prepared.tokenizer)


def train(cfg: RunConfig, records: dict[str, list[dict[str, Any]]] | None = None,
          on_evaluate: Any = None) -> RunResult:
    """Run the whole workflow for ``cfg`` and return the report. Only rank 0 writes the run directory.

    ``records``: in-memory splits instead of ``cfg.data``'s files (see ``tuneforge.run.prepare``).
    ``on_evaluate(step, scores)``: called after each validation in training (``tuneforge search`` prunes there).
    """
    set_threads(cfg.train.num_threads)
    run_dir = Path(cfg.output_dir)
    resume = cfg.train.resume
    prepared = prepare(cfg, records)  # before the run directory exists: a config or data error leaves nothing
    task, data, features = prepared.task, prepared.data, prepared.features
    precision = run_precision(cfg.train.precision, run_dir / "checkpoints" if resume else None)
    accelerator = new_accelerator(precision)
    main = accelerator.is_main_process
    if main and cfg.train.precision == "auto":
        print(f"precision: {precision} (auto: {describe_auto()})")
    audit_report = run_audit(cfg, task, data, prepared.tokenizer)
    if main:
        print(format_audit(audit_report))
        resolve_data_paths(cfg, Path.cwd())  # the saved config must work from any directory
        open_run_dir(run_dir, cfg, data.files, resume=resume, overwrite=cfg.train.overwrite)
        _write_run_files(run_dir, cfg, prepared, audit_report, precision, accelerator.num_processes)

    test_name, val_name = prepared.test_split, prepared.validation_split
    baseline_predictions: dict[str, list[Any]] = {}  # per test row, for the HTML report's paired tests
    setup_fewshot(cfg, prepared, run_dir if main else None)  # prompt for zero-shot scoring; k-shot ids (prompting)
    baselines = score_baselines(cfg.eval.baselines, task, prepared.resolved, prepared.tokenizer,
                                data.splits["train"], data.splits.get(test_name, []), keep=baseline_predictions)

    if trains_nothing(cfg):  # zero-shot, in-context or train.epochs 0: evaluated as is, same report (prompting)
        return RunResult(run_dir, evaluate_untrained(cfg, prepared, baselines, run_dir, main, baseline_predictions))
    built = prepared.build_model()
    if main:  # after build_model: it settles choices that depend on the body (head.pooling=auto)
        atomic_write_json(run_dir / "task.json", {"name": task.name, "state": task.state()})
    if main and cfg.peft.method:  # the PEFT builder filled in defaults (LoRA targets): record what was used
        save_config(cfg, run_dir / "config.yaml")
    if main:
        p = built.parameters
        print(f"trainable parameters: {p['trainable']:,} of {p['total']:,} "
              f"({100 * p['trainable'] / max(1, p['total']):.2f}%)")
    if cfg.fewshot.method == "setfit":  # contrastive few-shot tuning + a fitted head instead of the loop (prompting)
        result = fit_setfit_run(cfg, prepared, built.model, run_dir)
    else:
        result = fit(built.model, task, features["train"], features[val_name], data.splits[val_name], cfg.train,
                     cfg.seed, run_dir, accelerator=accelerator, step_hooks=built.step_hooks,
                     eval_batch_size=cfg.eval.batch_size, loss_terms=built.loss_terms, on_evaluate=on_evaluate)

    # after: the tuned model (best checkpoint restored by fit) on every split we have, test included
    dtype = torch.bfloat16 if precision == "bf16" else None
    predictions = {name: predict_features(accelerator.unwrap_model(built.model), task, features[name],
                                          cfg.eval.batch_size, dtype)
                   for name in ("validation", "test") if name in data.splits}
    metrics = {name: task.metrics(preds, data.splits[name]) for name, preds in predictions.items()}
    metrics = add_calibration_metrics(metrics, accelerator.unwrap_model(built.model), task, features, data.splits,
                                      val_name, cfg, run_dir if main else None)  # ECE, abstention, OOS
    report = build_report(task.name, cfg.model, task.main_metric, metrics, baselines, {
        "test_split": test_name,
        "training": _training_summary(result, built.parameters, precision, accelerator.num_processes),
        "audit_warnings": audit_report["warnings"],
    })
    if main:
        write_report(run_dir, report)
        finish_run_report(run_dir, cfg, task, accelerator.unwrap_model(built.model), data.splits[test_name],
                          features[test_name], baseline_predictions,  # report.html (evaluation/analysis.py)
                          predictions.get(test_name))
        print(f"\nBefore/after fine-tuning on the {test_name} split ({len(data.splits[test_name])} examples):")
        print(comparison_table(report, test_name))
        sizes = folder_sizes_mb(run_dir)
        print(f"\nrun directory: {run_dir} ({sizes['total']:.1f} MB: best/ {sizes.get('best', 0):.1f} MB, "
              f"checkpoints/ {sizes.get('checkpoints', 0):.1f} MB)")
    accelerator.wait_for_everyone()
    return RunResult(run_dir, report)


def folder_sizes_mb(run_dir: Path) -> dict[str, float]:
    """Megabytes on disk: the whole run folder (``total``) and each top-level sub-folder by name."""
    sizes: dict[str, float] = {"total": 0.0}
    for path in run_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            mb = path.stat().st_size / 1e6
            sizes["total"] += mb
            top = path.relative_to(run_dir).parts[0]
            sizes[top] = sizes.get(top, 0.0) + mb
    return sizes


def _write_run_files(run_dir: Path, cfg: RunConfig, prepared: Prepared, audit_report: dict[str, Any],
                     precision: str, world: int) -> None:
    """Everything needed to reproduce and serve the run, written before training starts."""
    save_config(cfg, run_dir / "config.yaml")
    atomic_write_json(run_dir / "audit.json", audit_report)
    prepared.tokenizer.save_pretrained(run_dir / "tokenizer")
    resolved = prepared.resolved
    meta = build_meta(prepared.data.files, cfg.seed, {"name": cfg.model, "path": resolved.path,
                                                      "kind": resolved.kind}, precision, world)
    atomic_write_json(run_dir / "meta.json", {**meta, "config": training_config(cfg)})


def _training_summary(result: Any, parameters: dict[str, int], precision: str, world: int) -> dict[str, Any]:
    return {"steps": result.global_step, "best_step": result.best_step, "best_validation": result.best_metric,
            "stopped_early": result.stopped_early, "train_seconds": round(result.train_seconds, 1),
            "samples_per_second": round(result.samples_per_second, 1),
            "tokens_per_second": round(result.tokens_per_second, 1), "precision": precision,
            "trainable_parameters": parameters["trainable"], "total_parameters": parameters["total"],
            "world_size": world}
