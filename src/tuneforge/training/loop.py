"""``fit()``: the whole training loop in one function, read top to bottom. Maths lives in ``steps.py``."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tuneforge.evaluation.evaluate import model_inputs, predict_features
from tuneforge.io_utils import append_jsonl
from tuneforge.tasks.base import Batch, Example, Feature, Task
from tuneforge.tracking import open_trackers
from tuneforge.training import checkpoint as ckpt
from tuneforge.training import speedups
from tuneforge.training.batching import BatchSampler
from tuneforge.training.ema import WeightAverage
from tuneforge.training.optim import build_optimizer, build_scheduler
from tuneforge.training.precision import run_precision
from tuneforge.training.steps import (
    Throughput,
    accumulation_windows,
    is_finite,
    scaled_loss,
    total_steps,
)


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss became NaN or infinite."""


@dataclass
class FitResult:
    best_metric: float | None
    best_step: int | None
    global_step: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    samples_per_second: float = 0.0
    tokens_per_second: float = 0.0


StepHook = Callable[[nn.Module, int], None]  # (unwrapped model, global_step) after each optimizer step
LossTerm = Callable[[nn.Module], torch.Tensor]  # (unwrapped model) -> a regulariser added to the mean loss
BatchHook = Callable[[Batch], None]  # each training micro-batch as collated, in order, before its forward pass
EvalHook = Callable[[int, dict[str, Any]], None]  # (global_step, validation scores) after each validation


def fit(model: nn.Module, task: Task, train: Sequence[Feature], val: Sequence[Feature], val_examples: list[Example],
        cfg: Any, seed: int, run_dir: Path, accelerator: Accelerator | None = None,
        step_hooks: Sequence[StepHook] = (), metric: str | None = None, eval_batch_size: int = 64,
        loss_terms: Sequence[LossTerm] = (), batch_hooks: Sequence[BatchHook] = (),
        on_evaluate: EvalHook | None = None) -> FitResult:
    """Train ``model`` on ``train`` features, validating on ``val``; the best weights are restored at the end.

    ``cfg`` is the ``train`` config section. Checkpoints go to ``run_dir/checkpoints``; with
    ``cfg.resume`` the newest one is loaded and training continues exactly where it stopped. ``step_hooks`` run
    after each optimizer step (AdaLoRA's rank update, benchmarks' clocks); ``batch_hooks`` see each micro-batch.
    ``on_evaluate(step, scores)`` runs after each validation and checkpoint (a search's pruner); an exception it
    raises ends training there and propagates to the caller.
    """
    # ---- setup: precision, seed, data order, optimiser, schedule ----
    if accelerator is not None:  # the caller chose the precision when it built the accelerator
        precision = "bf16" if accelerator.mixed_precision == "bf16" else "fp32"
    else:
        precision = run_precision(cfg.precision, run_dir / "checkpoints" if cfg.resume else None)
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available(),
                                             mixed_precision="bf16" if precision == "bf16" else "no")
    main = accelerator.is_main_process
    set_seed(seed)
    es = cfg.early_stopping
    metric = metric or (task.main_metric if es.metric == "auto" else es.metric)
    mode = task.metric_mode if es.metric == "auto" else es.mode
    # exact CPU speed-ups (memory keeping, fast dropout, feature cache, active vocabulary): listed in speedups.py
    fast = speedups.install(model, task, train, val, cfg, accelerator.device, _autocast_dtype(precision),
                            has_loss_terms=bool(loss_terms), verbose=main)
    model, task, train, val = fast.model, fast.task, fast.train, fast.val
    sampler = BatchSampler([f["length"] for f in train], cfg.batch_size, seed,
                           length_grouped=cfg.batching == "length_grouped",
                           max_tokens=getattr(cfg, "batch_tokens", None))
    loader = DataLoader(list(train), batch_sampler=sampler, collate_fn=task.collate)
    optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.head_lr, cfg.momentum,
                                cfg.layer_lr_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    fast.after_prepare(model, optimizer, accelerator)  # clipping inside fused AdamW (speedups.py)
    batches_per_epoch = len(loader)
    windows = accumulation_windows(batches_per_epoch, cfg.grad_accum)
    n_steps = total_steps(batches_per_epoch, cfg.grad_accum, cfg.epochs, cfg.max_steps)
    scheduler = build_scheduler(optimizer, cfg.scheduler, cfg.warmup_ratio, n_steps)
    ema = WeightAverage(accelerator.unwrap_model(model), cfg.ema_decay) if cfg.ema_decay else None
    ckpt_root = run_dir / "checkpoints"
    metrics_log = run_dir / "metrics.jsonl"
    writer = open_trackers(run_dir, cfg.trackers) if main else None  # train.trackers

    # ---- resume: weights, optimiser, schedule, data position; RNG is restored once the iterator exists ----
    step, epoch, batch_in_epoch, best, best_step, bad_evals = 0, 0, 0, None, None, 0
    history: list[dict[str, Any]] = []
    pending_rng = None
    for line in ckpt.clean_leftovers(run_dir) if main else []:  # temp folders of a save a kill interrupted
        print(line)
    resumed = ckpt.resume(ckpt_root, accelerator.unwrap_model(model), optimizer, scheduler, ema,
                          log=print if main else lambda _: None) if cfg.resume else None
    if resumed:
        folder, progress, pending_rng = resumed
        step, epoch, batch_in_epoch = progress["step"], progress["epoch"], progress["batch_in_epoch"]
        best, best_step, bad_evals = progress["best"], progress["best_step"], progress["bad_evals"]
        history = progress["history"]
        if main:
            print(f"resuming from {folder} (step {step}, epoch {epoch}, batch {batch_in_epoch})")

    def evaluate_and_checkpoint() -> bool:
        """Validate, track the best, checkpoint. Returns True when early stopping says stop."""
        nonlocal best, best_step, bad_evals
        unwrapped = accelerator.unwrap_model(model)
        with ema.swapped() if ema is not None else contextlib.nullcontext():  # validate the averaged weights
            preds = predict_features(unwrapped, task, val, eval_batch_size, _autocast_dtype(precision))
            scores = task.metrics(preds, val_examples) if val else {}
            value = scores.get(metric)
            improved = value is not None and (best is None or (value - best > es.min_delta if mode == "max"
                                                               else best - value > es.min_delta))
            if improved:
                best, best_step, bad_evals = value, step, 0
            elif value is not None:
                bad_evals += 1
            row = {"step": step, "epoch": round(epoch + batch_in_epoch / max(1, batches_per_epoch), 4),
                   "split": "validation", **{k: v for k, v in scores.items() if isinstance(v, (int, float))}}
            history.append(row)
            progress = _progress(step, epoch, batch_in_epoch, best, best_step, bad_evals, history, metric,
                                 precision)
            if main and improved:  # "best" holds the weights that were validated
                ckpt.save_best(run_dir / "best", unwrapped, progress)
        if main:
            append_jsonl(metrics_log, row)
            for k, v in row.items():
                if k not in ("step", "epoch", "split") and writer:
                    writer.add_scalar(f"validation/{k}", v, step)
            ckpt.save_checkpoint(ckpt_root / f"step-{step}", unwrapped, optimizer, scheduler, progress,
                                 keep=cfg.keep_checkpoints, extra=ema)
        accelerator.wait_for_everyone()
        if on_evaluate is not None:
            on_evaluate(step, scores)
        return es.patience is not None and bad_evals >= es.patience

    # ---- the loop ----
    model.train()
    bar = tqdm(total=n_steps, initial=step, disable=not (main and cfg.progress), dynamic_ncols=True,
               desc="train", unit="step")
    meter = Throughput()
    t_start = time.perf_counter()
    samples_seen = tokens_seen = 0
    totals = {"samples": 0, "tokens": 0}  # over this process's whole run, for the report
    stopped_early = False
    while step < n_steps and not stopped_early:
        # through the prepared loader: its iter() re-applies its own epoch counter, which only advances when an
        # iterator is exhausted (never here), so setting the sampler alone left every epoch in epoch 0's order
        loader.set_epoch(epoch)
        it = iter(accelerator.skip_first_batches(loader, batch_in_epoch) if batch_in_epoch else loader)
        if pending_rng is not None:
            if batch_in_epoch:  # mid-epoch, the saved state already includes this epoch's iterator draw (a seed
                # drawn when the lazy iterator yields its first batch): draw it here, then restore
                it = itertools.chain([next(it)], it)
            ckpt.set_rng_state(pending_rng)
            pending_rng = None
        window_index = _window_of(batch_in_epoch, cfg.grad_accum)
        for w in windows[window_index:]:
            micro = [next(it) for _ in range(w)]
            for batch_hook in batch_hooks:
                for batch in micro:
                    batch_hook(batch)
            window_items = sum(task.loss_items(b) for b in micro)  # known before any forward pass
            loss_total, items_total = 0.0, 0.0
            for j, batch in enumerate(micro):
                sync = accelerator.no_sync(model) if j < len(micro) - 1 else contextlib.nullcontext()
                with sync, accelerator.autocast():
                    outputs = model(**model_inputs(batch, accelerator.device))
                    loss_sum, items = task.loss(outputs, batch)
                    for term in loss_terms:  # added to the mean loss: weighted by this micro-batch's share of items
                        loss_sum = loss_sum + term(accelerator.unwrap_model(model)) * items
                loss = scaled_loss(loss_sum, window_items)
                accelerator.backward(loss)
                loss_total += float(loss_sum.detach())
                items_total += float(items)
                samples_seen += int(batch["input_ids"].shape[0])
                tokens_seen += int(batch["attention_mask"].sum()) if "attention_mask" in batch else 0
            mean_loss = loss_total / max(items_total, 1e-12)
            if not is_finite(mean_loss):
                fast.uninstall(accelerator.unwrap_model(model))
                raise NonFiniteLossError(f"loss is {mean_loss} at step {step + 1} (epoch {epoch}); lower train.lr, "
                                         f"check the data, or use precision=fp32. Last checkpoint: "
                                         f"{(ckpt.list_checkpoints(ckpt_root) or ['none'])[-1]}")
            fast.clip_gradients(model, accelerator, cfg.max_grad_norm)
            optimizer.step()
            fast.after_optimizer_step(optimizer)
            scheduler.step()
            step += 1
            batch_in_epoch += w
            for hook in step_hooks:  # after the optimizer step, before grads are cleared: AdaLoRA reads p.grad
                hook(accelerator.unwrap_model(model), step)
            if ema is not None:
                ema.update()
            optimizer.zero_grad(set_to_none=True)
            meter.add(time.perf_counter(), samples_seen, tokens_seen)
            totals["samples"] += samples_seen
            totals["tokens"] += tokens_seen
            samples_seen = tokens_seen = 0
            sps, tps = meter.rates()
            lr = scheduler.get_last_lr()[0]
            bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{sps:.1f}", refresh=False)
            bar.update(1)
            if main and (step % cfg.log_every == 0 or step == 1):
                append_jsonl(metrics_log, {"step": step, "split": "train", "loss": mean_loss, "lr": lr,
                                           "samples_per_s": sps, "tokens_per_s": tps})
                if writer:
                    writer.add_scalar("train/loss", mean_loss, step)
                    writer.add_scalar("train/lr", lr, step)
            at_epoch_end = batch_in_epoch >= batches_per_epoch
            if at_epoch_end:
                epoch, batch_in_epoch = epoch + 1, 0
            due_eval = (cfg.eval_every and step % cfg.eval_every == 0) or at_epoch_end or step == n_steps
            if due_eval and evaluate_and_checkpoint():
                stopped_early = True
                break
            elif cfg.save_every and step % cfg.save_every == 0 and not due_eval and main:
                progress = _progress(step, epoch, batch_in_epoch, best, best_step, bad_evals, history, metric,
                                     precision)
                ckpt.save_checkpoint(ckpt_root / f"step-{step}", accelerator.unwrap_model(model), optimizer,
                                     scheduler, progress, keep=cfg.keep_checkpoints, extra=ema)
            if step >= n_steps:
                break
    bar.close()
    elapsed = time.perf_counter() - t_start
    if writer:
        writer.close()

    # ---- restore the best weights ----
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    fast.uninstall(unwrapped)
    if best_step is not None and (run_dir / "best").is_dir():
        ckpt.load_weights(unwrapped, run_dir / "best")
    elif ema is not None:  # nothing validated: the average is the result, and what predict loads
        ema.copy_to_model()
        if main:
            ckpt.save_best(run_dir / "best", unwrapped, _progress(step, epoch, batch_in_epoch, best, best_step,
                                                                  bad_evals, history, metric, precision))
    train_rows = [h for h in history if h.get("split") == "validation"]
    return FitResult(best, best_step, step, stopped_early, train_rows, elapsed,
                     samples_per_second=totals["samples"] / elapsed if elapsed else 0.0,
                     tokens_per_second=totals["tokens"] / elapsed if elapsed else 0.0)


def _progress(step, epoch, batch_in_epoch, best, best_step, bad_evals, history, metric,
              precision) -> dict[str, Any]:
    return {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "best": best, "best_step": best_step,
            "bad_evals": bad_evals, "history": history, "metric": metric, "precision": precision}


def _window_of(batch_in_epoch: int, grad_accum: int) -> int:
    return batch_in_epoch // grad_accum


def _autocast_dtype(precision: str) -> torch.dtype | None:
    return torch.bfloat16 if precision == "bf16" else None
