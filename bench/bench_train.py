"""Full fine-tuning speed on SST-2 with MiniLM: TuneForge's defaults vs HF Trainer (example-style and tuned).

Contenders, each in its own subprocess (own peak RSS), one after the other, on the same train rows, dev rows,
model (MiniLM from ``resolve_model("minilm")``, or ``--model``), seed and hyper-parameters (batch size, lr, linear schedule with
the same warmup steps, weight decay on the same parameters, grad-norm clip, epochs, max length 128):

  tuneforge       TuneForge ``fit()`` with its defaults: length-grouped batches, dynamic padding, bf16 autocast
                  where the CPU runs bf16 matmuls measurably faster than fp32 (else fp32), tokenised once.
  tuneforge_fp32  the same in fp32: the check that bf16 autocast keeps the accuracy.
  hf_default      HF Trainer as the text-classification example (run_glue.py) runs it: padding to max_length 128,
                  random batches, fp32.
  hf_tuned        HF Trainer with dynamic padding (DataCollatorWithPadding), train_sampling_strategy=group_by_length,
                  bf16 by the same rule as TuneForge (training/precision.py): where bf16 is faster. On a CPU
                  with AVX-512 BF16 but slow bf16 matmuls (a 2-core Xeon: 0.58x fp32) bf16 would slow it
                  down ~1.8x, and a tuned recipe would not use it.

Models differ where the tools differ: TuneForge's default head (``head.pooling: auto`` = ``mean_pooler``) puts the
mean of the token states and BERT's pretrained pooler output side by side into one linear layer; HF uses
``AutoModelForSequenceClassification`` (BERT pooler on [CLS] + linear). Both start from the same
pretrained weights. Optimizers: TuneForge's AdamW as it builds it; HF's default optim for this torch version.

Clock: training seconds exclude dev evaluation. Every ``--eval-every`` optimizer steps (and at the end) each side
pauses its clock and scores the dev set with its own model; "s to target" is the training clock at the first
evaluation whose dev accuracy reaches ``--target`` (so it is quantised to ``--eval-every`` steps, equally for
all). "wall to target" includes the evaluations. TuneForge's own end-of-epoch checkpoint save stays inside its
clock (HF saves nothing). Samples/s and real tokens/s count what the collator fed the model during training
(attention-mask sums: real tokens, not padding) over training seconds.

Budgets: a full hf_default run takes hours here (about 20 samples/s), so ``--budget`` can stop a side at a
training-clock budget; if it has not reached the target by then, its seconds to target are reported as "> budget"
and TuneForge's speed-up as ">= ratio", a lower bound. ``hf_default=x2.6`` sets that side's budget to 2.6 times
TuneForge's seconds to target in the same repeat (TuneForge runs first in each repeat): just enough to show whether
the 2.5x acceptance holds, without paying for the rest of a run that cannot change the verdict.

    python bench/bench_train.py                                   # full SST-2 train, 3 epochs (hours for hf_default)
    python bench/bench_train.py --smoke                           # 256 rows, a few steps, to check every side runs
    python bench/bench_train.py --contenders tuneforge hf_tuned hf_default --repeats 2 --stop-at-target \
        --budget hf_tuned=x1.25 hf_default=x2.6                  # the speed acceptance in ~1 hour
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    SST2,
    check,
    emit,
    read_table,
    run_contender,
    set_threads,
    table,
    write_results,
)

CONTENDERS = ("tuneforge", "tuneforge_fp32", "hf_default", "hf_tuned")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    p.add_argument("--model", default="minilm", help="tuneforge model name or local folder, the same for every side "
                                                      "(minilm, mpnet, me5-small, a path)")
    p.add_argument("--train-limit", type=int, default=None, help="first N rows of train.tsv (default: all 67,349)")
    p.add_argument("--dev-limit", type=int, default=None, help="first N rows of dev.tsv (default: all 872)")
    p.add_argument("--epochs", type=float, default=3, help="configs/classification/sst2.yaml's")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batch-tokens", type=int, default=None,
                   help="TuneForge sides only: train.batch_tokens=N (token-budget batches, --batch-size caps the "
                        "items); the HF sides keep fixed batches of --batch-size")
    p.add_argument("--lr", type=float, default=3e-5, help="configs/classification/sst2.yaml's")
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="configs/classification/sst2.yaml's")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--eval-every", type=int, default=200, help="optimizer steps between dev evaluations")
    p.add_argument("--target", type=float, default=0.90, help="dev accuracy for 'seconds to target'")
    p.add_argument("--stop-at-target", action="store_true",
                   help="stop each contender once it reaches the target (no final accuracy then)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--freeze-embeddings", action="store_true", help="TuneForge with freeze.embeddings=true")
    p.add_argument("--no-fast-dropout", action="store_true", help="TuneForge with train.fast_dropout=false")
    p.add_argument("--pooling", default="auto",
                   help="TuneForge's head.pooling (auto = mean_pooler for this model; pooler = HF's head exactly)")
    p.add_argument("--from-results", metavar="JSON", nargs="+",
                   help="run nothing: recompute the table and checks from a results file this script wrote (its "
                        "setup is used), and write them back to it (or to --out). Several files (same setup but "
                        "for seeds and repeats, e.g. seeds 42-43 and 44-45) are pooled: their repeats are "
                        "renumbered, the table and checks cover all of them, and --out is required")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--timeout", type=float, default=None, help="seconds per contender")
    p.add_argument("--budget", nargs="+", default=None, metavar="[SIDE=]SECONDS",
                   help="training-clock budget per contender (e.g. 900, hf_default=1500, or hf_default=x3 for 3 "
                        "times TuneForge's seconds to target in the same repeat): a side that has not reached the "
                        "target when it runs out stops there, and its seconds to target are reported as a lower "
                        "bound (> budget), which bounds TuneForge's speed-up from below")
    p.add_argument("--vary-seed", action="store_true",
                   help="repeat r runs every side with seed --seed + r (same seed for all sides within a repeat): "
                        "the final accuracies then show seed-to-seed spread, not just timing noise")
    p.add_argument("--repeats", type=int, default=1,
                   help="run every contender this many times, interleaved; ratios are medians over the repeats")
    p.add_argument("--smoke", action="store_true", help="256 train rows, 128 dev rows, 1 epoch, eval every 4 steps")
    p.add_argument("--out", default=None, help="results JSON (default bench/results/train.json)")
    p.add_argument("--side", choices=CONTENDERS, help=argparse.SUPPRESS)
    p.add_argument("--side-budget", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.train_limit, args.dev_limit, args.epochs, args.eval_every = 256, 128, 1, 4
    return args


# ---------------------------------------------------------------- the shared clock and counters (one per process)
class Clock:
    """Training time with dev evaluation taken out; records the dev curve and when it first reaches the target."""

    def __init__(self, evaluate: Callable[[], float], every: int, target: float, stop_at_target: bool,
                 budget: float | None = None):
        self.evaluate, self.every, self.target, self.stop_at_target = evaluate, every, target, stop_at_target
        self.budget = budget
        self.censored = False
        self.t0 = 0.0
        self.excluded = 0.0
        self.evaluating = False
        self.curve: list[dict[str, float]] = []
        self.first: dict[str, float] | None = None
        self.samples = self.tokens = self.fed_tokens = 0

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def train_seconds(self) -> float:
        return time.perf_counter() - self.t0 - self.excluded

    def count(self, batch: dict[str, Any]) -> None:
        """Called by the collator: what the model is fed during training (not during dev evaluation)."""
        if not self.evaluating:
            self.samples += int(batch["input_ids"].shape[0])
            self.tokens += int(batch["attention_mask"].sum())
            self.fed_tokens += int(batch["input_ids"].numel())

    def step(self, step: int, force: bool = False) -> bool:
        """Evaluate when due; True when training should stop (target reached and ``stop_at_target``, or the
        training budget spent before the target: then one last evaluation and ``censored``)."""
        over = self.budget is not None and self.first is None and self.train_seconds() >= self.budget
        if over:
            force = self.censored = True
        if not force and (self.every <= 0 or step % self.every) or (self.curve and self.curve[-1]["step"] == step):
            return over
        train_s, begin = self.train_seconds(), time.perf_counter()
        self.evaluating = True
        try:
            acc = self.evaluate()
        finally:
            self.evaluating = False
        self.excluded += time.perf_counter() - begin
        row = {"step": step, "train_seconds": round(train_s, 2), "wall_seconds": round(begin - self.t0, 2),
               "accuracy": acc}
        self.curve.append(row)
        print(f"step {step}: dev accuracy {acc:.4f} after {train_s:.1f} s of training", flush=True)
        if self.first is None and acc >= self.target:
            self.first = row
            self.censored = False  # reached, possibly at the very evaluation the budget forced
        return (self.first is not None and self.stop_at_target) or (self.censored and self.first is None)

    def summary(self) -> dict[str, Any]:
        train_s = self.train_seconds()
        last = self.curve[-1] if self.curve else {}
        return {"train_seconds": train_s, "eval_seconds": self.excluded, "samples": self.samples,
                "real_tokens": self.tokens, "fed_tokens": self.fed_tokens,
                "samples_per_second": self.samples / train_s, "tokens_per_second": self.tokens / train_s,
                "padding_share": 1 - self.tokens / max(1, self.fed_tokens),
                "seconds_to_target": self.first["train_seconds"] if self.first else None,
                "censored": self.censored, "budget": self.budget,
                "wall_to_target": self.first["wall_seconds"] if self.first else None,
                "steps_to_target": self.first["step"] if self.first else None,
                "final_accuracy": last.get("accuracy"), "final_step": last.get("step"),
                "best_accuracy": max((r["accuracy"] for r in self.curve), default=None), "curve": self.curve}


class StopTraining(Exception):
    """Raised from a TuneForge step hook once the target is reached (``--stop-at-target``)."""


def budget_for(args: argparse.Namespace, side: str | None, tf: dict[str, Any] | None = None) -> float | None:
    """``--budget 900 hf_default=1500 hf_tuned=x2``: the side's own entry, else the bare number, else none.
    ``xF`` is F times TuneForge's seconds to target in the same repeat (its training seconds if it never got
    there); it needs TuneForge to run first."""
    plain = None
    for item in args.budget or []:
        name, sep, value = item.rpartition("=")
        if sep and name != side:
            continue
        if value.startswith("x"):
            if not tf or "error" in tf:
                continue
            seconds = tf.get("seconds_to_target") or tf.get("train_seconds")
            value = str(float(value[1:]) * seconds)
        if sep:
            return float(value)
        plain = float(value)
    return plain


def data(args: argparse.Namespace) -> tuple[list, list]:
    train = read_table(SST2 / "train.tsv", "sentence", "label", args.train_limit)
    dev = read_table(SST2 / "dev.tsv", "sentence", "label", args.dev_limit)
    return train, dev


def warmup_steps(args: argparse.Namespace, n_train: int, lengths: list[int] | None = None) -> tuple[int, int]:
    """(total optimizer steps, warmup steps); with ``lengths`` and ``--batch-tokens``, of TuneForge's token-budget
    batches."""
    from tuneforge.training.batching import num_batches

    batches = (num_batches(lengths, args.batch_size, args.batch_tokens) if lengths is not None
               else math.ceil(n_train / args.batch_size))
    total = math.ceil(batches * args.epochs)
    return total, int(round(args.warmup_ratio * total))


def model_path(args: argparse.Namespace) -> str:
    from tuneforge.models import resolve_model

    return resolve_model(args.model).path


# ---------------------------------------------------------------- TuneForge
def run_tuneforge(args: argparse.Namespace, precision: str, workdir: Path) -> dict[str, Any]:
    from tuneforge.config import config_from_dict
    from tuneforge.evaluation.evaluate import predict_features
    from tuneforge.run import prepare
    from tuneforge.training.loop import fit
    from tuneforge.training.precision import resolve_precision

    train_rows, dev_rows = data(args)
    cfg = config_from_dict({
        "model": model_path(args), "task": "classification", "seed": args.seed, "output_dir": str(workdir),
        "data": {"text_column": "sentence", "label_column": "label", "max_length": args.max_length},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "batch_tokens": args.batch_tokens,
                  "lr": args.lr,
                  "warmup_ratio": args.warmup_ratio, "weight_decay": args.weight_decay,
                  "max_grad_norm": args.max_grad_norm, "precision": precision, "progress": False,
                  "num_threads": args.threads, "keep_checkpoints": 1, "log_every": 100,
                  "early_stopping": {"patience": None}, "fast_dropout": not args.no_fast_dropout},
        "freeze": {"embeddings": args.freeze_embeddings}, "head": {"pooling": args.pooling},
        "eval": {"baselines": []}})
    prepared = prepare(cfg, {"train": [{"sentence": t, "label": lab} for t, lab in train_rows],
                             "validation": [{"sentence": t, "label": lab} for t, lab in dev_rows]})
    task, train_feats, dev_feats = prepared.task, prepared.features["train"], prepared.features["validation"]
    dev_ex = prepared.splits["validation"]
    n_steps, _ = warmup_steps(args, len(train_feats), [f["length"] for f in train_feats])
    built = prepared.build_model(n_steps)
    dtype = __import__("torch").bfloat16 if resolve_precision(precision) == "bf16" else None

    def dev_accuracy() -> float:
        preds = predict_features(built.model, task, dev_feats, cfg.eval.batch_size, dtype)
        return task.metrics(preds, dev_ex)["accuracy"]

    clock = Clock(dev_accuracy, args.eval_every, args.target, args.stop_at_target, args.side_budget)

    def hook(model: Any, step: int) -> None:
        if clock.step(step):
            raise StopTraining

    clock.start()
    try:
        result = fit(built.model, task, train_feats, [], [], cfg.train, cfg.seed, workdir, step_hooks=[hook],
                     batch_hooks=[clock.count])
        last_step = result.global_step
    except StopTraining:
        last_step = clock.curve[-1]["step"]
    clock.step(last_step, force=True)
    return {**clock.summary(), "precision": resolve_precision(precision), "steps": last_step,
            "trainable": built.parameters["trainable"], "model": f"{task.pooling} pooling + linear"}


# ---------------------------------------------------------------- HF Trainer
def run_hf(args: argparse.Namespace, tuned: bool, workdir: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
    )

    from tuneforge.training.precision import resolve_precision

    train_rows, dev_rows = data(args)
    path = model_path(args)
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    padding = False if tuned else "max_length"  # run_glue.py: pad_to_max_length=True by default

    def encode(batch: dict) -> dict:
        return tok(batch["sentence"], truncation=True, max_length=args.max_length, padding=padding)

    train_ds = Dataset.from_dict({"sentence": [t for t, _ in train_rows], "label": [int(lab) for _, lab in train_rows]})
    train_ds = train_ds.map(encode, batched=True, remove_columns=["sentence"])  # tokenised once
    bf16 = tuned and resolve_precision("auto") == "bf16"  # tuned: bf16 where it is faster, as TuneForge

    dev_texts, dev_gold = [t for t, _ in dev_rows], [int(lab) for _, lab in dev_rows]

    def dev_accuracy() -> float:
        was = model.training
        model.eval()
        correct = 0
        order = sorted(range(len(dev_texts)), key=lambda i: len(dev_texts[i]))
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for s in range(0, len(order), 64):
                idx = order[s:s + 64]
                enc = tok([dev_texts[i] for i in idx], truncation=True, max_length=args.max_length, padding=True,
                          return_tensors="pt")
                pred = model(**enc).logits.argmax(-1).tolist()
                correct += sum(int(p == dev_gold[i]) for p, i in zip(pred, idx))
        model.train(was)
        return correct / max(1, len(dev_texts))

    clock = Clock(dev_accuracy, args.eval_every, args.target, args.stop_at_target, args.side_budget)
    inner = DataCollatorWithPadding(tok) if tuned else default_data_collator

    def counting_collator(features):
        batch = inner(features)
        clock.count(batch)
        return batch

    class EvalCallback(TrainerCallback):
        def on_step_end(self, targs, state, control, **kwargs):
            if clock.step(state.global_step):
                control.should_training_stop = True
            return control

    _, warmup = warmup_steps(args, len(train_ds))
    targs = TrainingArguments(
        output_dir=str(workdir), per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
        num_train_epochs=args.epochs, warmup_steps=warmup, weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm, lr_scheduler_type="linear", seed=args.seed, use_cpu=True, bf16=bf16,
        train_sampling_strategy="group_by_length" if tuned else "random", save_strategy="no",
        eval_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=targs, train_dataset=train_ds, data_collator=counting_collator,
                      callbacks=[EvalCallback()])
    clock.start()
    trainer.train()
    clock.step(trainer.state.global_step, force=True)
    return {**clock.summary(), "precision": "bf16" if bf16 else "fp32", "steps": trainer.state.global_step,
            "optim": str(targs.optim), "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "model": "AutoModelForSequenceClassification (BERT pooler on [CLS] + linear)"}


def run_side(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix=f"bench_train_{args.side}_") as tmp:
        if args.side.startswith("tuneforge"):
            out = run_tuneforge(args, "fp32" if args.side == "tuneforge_fp32" else "auto", Path(tmp))
        else:
            out = run_hf(args, args.side == "hf_tuned", Path(tmp))
    emit({"side": args.side, **out})


# ---------------------------------------------------------------- the parent: run all, compare, write
def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def speedup(other: dict[str, Any], tf: dict[str, Any]) -> tuple[float, float] | None:
    """TuneForge's speed-up to target over ``other`` in one repeat, as an interval (low, high).

    Both reached the target: an exact ratio. Only TuneForge did: ``other``'s training seconds (to its budget, or its
    whole run) give a lower bound (high = inf). Only ``other`` did: TuneForge's whole training time gives an upper
    bound (low = 0). Neither did, or a side failed: None (no information).
    """
    mine, theirs = tf.get("seconds_to_target"), other.get("seconds_to_target")
    if "error" in other or "error" in tf:
        return None
    if mine is not None and theirs is not None:
        return theirs / mine, theirs / mine
    if mine is not None and other.get("train_seconds"):
        return other["train_seconds"] / mine, math.inf
    if theirs is not None and tf.get("train_seconds"):
        return 0.0, theirs / tf["train_seconds"]
    return None


def show_speedup(low: float, high: float) -> str:
    if low == high:
        return f"{low:.2f}x"
    if math.isinf(high):
        return f">={low:.2f}x"
    if low == 0:
        return f"<={high:.2f}x"
    return f"{low:.2f}x..{high:.2f}x"


def summarise(args: argparse.Namespace, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per contender: medians over its repeats; ratios are per-repeat ratios, then the median."""
    keys = ("samples_per_second", "tokens_per_second", "padding_share", "seconds_to_target", "steps_to_target",
            "wall_to_target", "final_accuracy", "best_accuracy", "peak_rss_mb", "train_seconds")
    rows = []
    for side in args.contenders:
        runs = [r for r in results if r["side"] == side]
        ok = [r for r in runs if "error" not in r]
        row: dict[str, Any] = {"side": side, "runs": len(ok), "failed": len(runs) - len(ok)}
        for k in keys:
            row[k] = median([r[k] for r in ok if r.get(k) is not None])
        row["censored"] = sum(bool(r.get("censored")) for r in ok)
        intervals, tputs = [], []
        for rep in range(args.repeats):
            tf = next((r for r in results if r["side"] == "tuneforge" and r.get("repeat") == rep), {})
            other = next((r for r in ok if r.get("repeat") == rep), None)
            if other is None or "error" in tf:
                continue
            sp = speedup(other, tf)
            if sp is not None:
                intervals.append(sp)
            if tf.get("samples_per_second") and other.get("samples_per_second"):
                tputs.append(tf["samples_per_second"] / other["samples_per_second"])
        # the median of interval-valued ratios lies between the median of the lows and the median of the highs
        low, high = median([lo for lo, _ in intervals]), median([hi for _, hi in intervals])
        row["tf_speedup_to_target"] = low if low == high else None  # a point value only when the repeats agree
        row["tf_speedup_interval"] = None if low is None else [low, None if math.isinf(high) else high]  # None: open
        row["tf_speedup_per_repeat"] = [show_speedup(lo, hi) for lo, hi in intervals]
        row["tf_throughput_ratio"] = median(tputs)
        reached = sum(r.get("seconds_to_target") is not None for r in ok)
        row["seconds_to_target_shown"] = (
            f">{row['train_seconds']:.0f}" if row["seconds_to_target"] is None and row["train_seconds"]
            else None if row["seconds_to_target"] is None
            else f"{row['seconds_to_target']:.0f}" + (f" ({reached} of {len(ok)} got there)" if reached < len(ok)
                                                      else ""))
        row["speedup_shown"] = None if low is None else show_speedup(low, high)
        rows.append(row)
    return rows


def report(args: argparse.Namespace, rows: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[str]:
    by = {r["side"]: r for r in rows}
    tf = by.get("tuneforge", {})
    lines = [table(rows, [("runs", "runs", "{:d}"),
                          ("samples/s", "samples_per_second", "{:.1f}"),
                          ("real tok/s", "tokens_per_second", "{:.0f}"),
                          ("pad share", "padding_share", "{:.1%}"),
                          (f"s to {args.target:.2f}", "seconds_to_target_shown", "{}"),
                          ("steps to tgt", "steps_to_target", "{:.0f}"),
                          ("final acc", "final_accuracy", "{:.4f}"),
                          ("best acc", "best_accuracy", "{:.4f}"),
                          ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
                          ("TF speed-up", "speedup_shown", "{}"),
                          ("TF samples/s x", "tf_throughput_ratio", "{:.2f}x")])]
    lines.append("(medians over repeats; '>' / '>=': the side ran out of its --budget, or finished training, before "
                 "the target, so its time is at least that and TuneForge's speed-up at least the ratio shown; "
                 "'<=': TuneForge finished training without reaching it; 'a..b': repeats disagree, the median "
                 "speed-up lies in that range)")
    for r in results:
        if "error" in r:
            lines.append(f"{r['side']} (repeat {r.get('repeat', 0)}): FAILED {r['error']}")
    pts = 0.3 / 100

    def acc_close(other: str) -> tuple[bool | None, str]:
        a, b = tf.get("final_accuracy"), by.get(other, {}).get("final_accuracy")
        if a is None or b is None:
            return None, "no final accuracy"
        if args.stop_at_target:
            return None, "--stop-at-target: runs end at the target, so there is no final accuracy to compare"
        if by[other].get("censored"):
            return None, f"{other} stopped at its budget (accuracy then {b:.4f}); no final accuracy to compare"
        pairs = [(x.get("seed"), x.get("final_accuracy"), y.get("final_accuracy")) for x in results for y in results
                 if x["side"] == "tuneforge" and y["side"] == other and x.get("repeat") == y.get("repeat")]
        per = "; ".join(f"seed {s_}: {p:.4f} vs {q:.4f}" for s_, p, q in pairs if p is not None and q is not None)
        return a >= b - pts, (f"medians tuneforge {a:.4f} vs {other} {b:.4f} ({100 * (a - b):+.2f} points)"
                              + (f" [{per}]" if len(pairs) > 1 else ""))

    for other, need in (("hf_default", 2.5), ("hf_tuned", 1.2)):
        row = by.get(other, {})
        span = row.get("tf_speedup_interval")
        if span is None:
            verdict, detail = None, "-"
        else:
            low, high = span[0], math.inf if span[1] is None else span[1]
            verdict = low >= need
            detail = f"{row['speedup_shown']} (per repeat: {', '.join(row['tf_speedup_per_repeat'])})"
            if low < need <= high:
                detail += "; inconclusive: the median may lie on either side"
        lines.append(check(f"seconds to {args.target} vs {other} >= {need}x", verdict, detail))
        ok, detail = acc_close(other)
        lines.append(check(f"final accuracy at most 0.3 points below {other}", ok, detail))
    a, b = tf.get("final_accuracy"), by.get("tuneforge_fp32", {}).get("final_accuracy")
    lines.append(check("bf16 autocast keeps the accuracy (tuneforge at most 0.3 points below tuneforge_fp32)",
                       None if a is None or b is None else a >= b - pts,
                       "-" if a is None or b is None else f"bf16 {a:.4f} vs fp32 {b:.4f}"))
    return lines


def run_all(args: argparse.Namespace, argv: list[str]) -> list[dict[str, Any]]:
    """Every contender, ``--repeats`` times, interleaved, each in its own subprocess."""
    results: list[dict[str, Any]] = []
    for rep in range(args.repeats):  # interleaved, so that drift in the machine's speed hits every side alike
        for side in args.contenders:
            print(f"running {side} (repeat {rep + 1}/{args.repeats}) ...", flush=True)
            tf = next((r for r in results if r["side"] == "tuneforge" and r["repeat"] == rep), None)
            budget = budget_for(args, side, tf)
            extra = [] if budget is None else ["--side-budget", f"{budget:.1f}"]
            seed = args.seed + rep if args.vary_seed else args.seed
            extra += ["--seed", str(seed)]  # the last --seed wins
            result = run_contender(__file__, [*argv, *extra], side, args.timeout)
            result["repeat"], result["seed"] = rep, seed
            results.append(result)
            print(f"  {side}: " + ", ".join(f"{k} {result.get(k)}" for k in (
                "error", "seconds_to_target", "censored", "train_seconds", "samples_per_second", "final_accuracy")
                if k in result), flush=True)
    return results


# setup keys that may differ between pooled invocations: which seeds and how many repeats each ran
POOL_FREE = ("seed", "repeats", "vary_seed", "timeout")


def pool_results(files: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The setup, the results (repeats renumbered 0..n-1 across files) and one provenance record per file.

    Files must share every setting but ``POOL_FREE``; a file whose repeats were seeded like another's is refused,
    since pooling the same seed twice would count one outcome twice in the accuracy medians."""
    setup: dict[str, Any] | None = None
    results: list[dict[str, Any]] = []
    provenance: list[dict[str, Any]] = []
    seen: dict[tuple[str, Any], str] = {}
    offset = 0
    defaults = {k: v for k, v in vars(parse_args([])).items() if k not in ("side", "out", "from_results")}
    for name in files:
        saved = json.loads(Path(name).read_text(encoding="utf-8"))
        saved["setup"] = {**defaults, **saved["setup"]}  # options added after a file was written: their defaults
        if setup is None:
            setup = dict(saved["setup"])
        else:
            differ = sorted(k for k in set(saved["setup"]) | set(setup)
                            if k not in POOL_FREE and saved["setup"].get(k) != setup.get(k))
            if differ:
                raise SystemExit(f"{name}: setup differs from {files[0]} in {', '.join(differ)}; not pooled")
        repeats = int(saved["setup"].get("repeats", 1))
        for r in saved["results"]:
            key = (r["side"], r.get("seed"))
            if seen.get(key, name) != name:  # the same seed within one file is a timing repeat: kept
                raise SystemExit(f"{name}: {key[0]} seed {key[1]} is also in {seen[key]}; not pooled")
            seen[key] = name
            results.append({**r, "repeat": offset + int(r.get("repeat", 0)), "source": name})
        provenance.append({"file": name, "when": saved.get("when"), "code": saved.get("code"),
                           "seeds": sorted({r.get("seed") for r in saved["results"]} - {None}),
                           "load_average_1m": saved.get("machine", {}).get("load_average_1m")})
        offset += repeats
    assert setup is not None
    setup["repeats"] = offset
    return setup, results, provenance


def pooled_lines(pooled: list[dict[str, Any]]) -> list[str]:
    """Where each pooled file came from, and a warning when they ran different code."""
    lines = ["pooled invocations (each interleaves its own contenders; ratios pair sides within a repeat):"]
    for p in pooled:
        code = p.get("code") or {}
        commit = code.get("commit")
        lines.append(f"  {p['file']}: seeds {p['seeds']}, {p.get('when')}, "
                     + (f"commit {commit[:10]}{' (dirty)' if code.get('dirty') else ''}" if commit
                        else "commit not recorded"))
    commits = {(p.get("code") or {}).get("commit") for p in pooled} - {None}
    if len(commits) > 1:
        lines.append(f"  note: the files ran {len(commits)} different commits")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.side:
        run_side(args)
        return 0
    pooled: list[dict[str, Any]] = []
    if args.from_results:
        files = args.from_results
        if len(files) > 1 and not args.out:
            raise SystemExit("pooling several results files needs --out")
        out = args.out or files[0]
        setup, results, pooled = pool_results(files)
        vars(args).update(setup)
        args.out = out
    else:
        results = run_all(args, argv)
    n_train = len(read_table(SST2 / "train.tsv", "sentence", "label", args.train_limit))
    total, warmup = warmup_steps(args, n_train)
    print(f"\nSST-2 full fine-tuning, MiniLM, {n_train} train rows, {args.epochs:g} epochs x batch {args.batch_size} "
          f"({total} steps, {warmup} warmup), lr {args.lr:g}, max length {args.max_length}, {args.threads} threads; "
          f"dev evaluated every {args.eval_every} steps, eval time excluded from 's to target'; "
          f"{args.repeats} repeat(s)" + (f", pooled from {len(pooled)} invocations" if len(pooled) > 1 else ""))
    rows = summarise(args, results)
    lines = report(args, rows, results)
    if len(pooled) > 1:
        lines += pooled_lines(pooled)
    print("\n".join(lines))
    setup = {k: v for k, v in vars(args).items() if k not in ("side", "out", "from_results")}
    extra = {"pooled_from": pooled} if len(pooled) > 1 else {}
    path = write_results("train", {"setup": setup, "summary": rows, "results": results, "checks": lines,
                                   **extra, "notes": __doc__}, args.out, smoke=args.smoke)
    print(f"written: {path}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
