"""Inference speed: TuneForge's Predictor vs transformers.pipeline("text-classification") on the same fine-tuned model.

Texts: the 1,821 SST-2 test sentences (test.tsv) with an SST-2 run, and the first 10,000 BANKING77 texts
(train.csv) with a BANKING77 run. Pass finished runs (``--sst2-run runs/sst2 --banking77-run runs/banking77``,
from ``tuneforge train configs/classification/{sst2,banking77}.yaml``); without them the bench first trains a quick
run of each with TuneForge (``--train-limit`` rows, ``--train-epochs``) under ``--work-dir``. Speed does not depend
on how well the model was trained; agreement can (near-ties), so the full-size numbers should use real runs.

How the pipeline gets the same model (the honest option we found): TuneForge's classifier is body + pooling (by
default the mean over real tokens beside BERT's pretrained pooler output) + linear. No
``AutoModelForSequenceClassification`` computes exactly that (BERT's uses the pooler alone; see
tuneforge/export.py), so an export would change the predictions. The pipeline side therefore
builds transformers' own ``TextClassificationPipeline`` (via ``pipeline(..., pipeline_class=...)``) around the run's
BertModel and replaces only ``_forward`` so that it calls the same TuneForge classifier module. Tokenisation (one
text at a time), batching and padding (its DataLoader, inputs in the order given), ``no_grad``, fp32 and the
softmax/label postprocess are the pipeline's own. What is measured is therefore the inference path around an
identical model: TuneForge sorts by length, batches, runs under ``inference_mode`` with bf16 autocast where the CPU
runs bf16 matmuls measurably faster than fp32 (training/precision.py); the pipeline does what it does by default
(batch_size=1) and with batch_size equal to ours. ``tuneforge_int8`` is the same Predictor with
``precision="int8"`` (inference/int8.py: per-token int8 body, near ties redone in fp32; the "fp32 redo" column is
the share of rows redone). ``tuneforge_onnx`` is the same Predictor with
``backend="onnxruntime"``: the same batches through a parity-checked ONNX export of the same classifier, fp32
(inference/onnx_backend.py; its load time includes the one-off export when the run has none yet).

Each side runs in its own subprocess (its own peak RSS): load, one warm-up call on 64 texts, then ``--repeats``
timed calls over all texts (texts in, labels out; median reported). Agreement = share of texts whose predicted
label equals the pipeline's (batch_size=1) label; the acceptance needs >= 99.9%.

    python bench/bench_inference.py --sst2-run runs/sst2 --banking77-run runs/banking77
    python bench/bench_inference.py --smoke            # quick-trained tiny runs, 64/200 texts, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BANKING77,
    ROOT,
    SST2,
    check,
    emit,
    ratio,
    read_table,
    run_contender,
    set_threads,
    table,
    write_results,
)

SIDES = ("tuneforge", "tuneforge_fp32", "tuneforge_int8", "tuneforge_onnx", "pipeline_b1", "pipeline_batched")
REFERENCE = "pipeline_b1"  # agreement is measured against the pipeline as users call it by default
DATASETS = {
    # name: (texts file, text column, quick-train config)
    "sst2": (SST2 / "test.tsv", "sentence", {
        "data": {"train": str(SST2 / "train.tsv"), "test": str(SST2 / "dev.tsv"), "text_column": "sentence",
                 "label_column": "label", "max_length": 128, "split": {"validation": 0.05}},
        "train": {"lr": 8e-5}}),
    "banking77": (BANKING77 / "train.csv", "text", {
        "data": {"train": str(BANKING77 / "train.csv"), "test": str(BANKING77 / "test.csv"), "text_column": "text",
                 "label_column": "category", "max_length": 96, "split": {"validation": 0.05}},
        "train": {"lr": 1.5e-4}}),
}
N_TEXTS = {"sst2": 1821, "banking77": 10_000}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    p.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    p.add_argument("--sst2-run", default=None, help="a finished TuneForge SST-2 run directory")
    p.add_argument("--banking77-run", default=None, help="a finished TuneForge BANKING77 run directory")
    p.add_argument("--work-dir", default=str(ROOT / "runs" / "bench_inference"), help="quick runs go here")
    p.add_argument("--train-limit", type=int, default=4000, help="rows for a quick run (no run dir given)")
    p.add_argument("--train-epochs", type=float, default=2)
    p.add_argument("--retrain", action="store_true", help="train the quick runs again even if present")
    p.add_argument("--text-limit", type=int, default=None, help="first N texts (default 1,821 / 10,000)")
    p.add_argument("--batch-size", type=int, default=64, help="TuneForge's and pipeline_batched's batch size")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--timeout", type=float, default=None, help="seconds per side")
    p.add_argument("--smoke", action="store_true", help="quick runs on 128 rows, 64 texts, 1 repeat")
    p.add_argument("--out", default=None, help="results JSON (default bench/results/inference.json)")
    p.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--dataset", choices=list(DATASETS), help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    p.add_argument("--preds-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.train_limit, args.train_epochs, args.text_limit, args.repeats = 128, 1, 64, 1
        args.work_dir = str(Path(args.work_dir) / "smoke")
    return args


def texts_of(name: str, limit: int | None) -> list[str]:
    path, column, _ = DATASETS[name]
    return [t for t, _ in read_table(path, column, None, limit or N_TEXTS[name])]


# ---------------------------------------------------------------- quick runs (only when no run dir is given)
def quick_run(args: argparse.Namespace, name: str) -> Path:
    given = getattr(args, f"{name}_run")
    if given:
        return Path(given)
    run_dir = Path(args.work_dir) / name
    if (run_dir / "best" / "model.safetensors").is_file() and not args.retrain:
        return run_dir
    from tuneforge.config import config_from_dict
    from tuneforge.runner import train

    base = DATASETS[name][2]
    cfg = config_from_dict({
        "model": "minilm", "task": "classification", "seed": 42, "output_dir": str(run_dir),
        "data": {**base["data"], "limit": args.train_limit},
        "train": {**base["train"], "epochs": args.train_epochs, "batch_size": 32, "progress": False,
                  "num_threads": args.threads, "early_stopping": {"patience": None}},
        "eval": {"baselines": []}})
    print(f"training a quick {name} run ({args.train_limit} rows, {args.train_epochs:g} epochs) in {run_dir}",
          flush=True)
    train(cfg)
    return run_dir


# ---------------------------------------------------------------- the sides
def run_tuneforge(args: argparse.Namespace, texts: list[str], precision: str,
                  backend: str = "torch") -> tuple[list[str], dict]:
    from tuneforge.inference.predictor import Predictor

    t = time.perf_counter()
    predictor = Predictor.from_run_dir(args.run_dir, batch_size=args.batch_size, precision=precision,
                                       backend=backend)
    set_threads(args.threads)  # from_run_dir applies the run's thread setting; the bench decides here
    load = time.perf_counter() - t
    model = predictor.model
    preds, info = time_calls(lambda xs: [p["label"] for p in predictor.predict(xs)], texts, args.repeats,
                             {"load_seconds": load, "batch_size": args.batch_size, "backend": backend,
                              "precision": predictor.precision})
    if predictor.precision == "int8":  # rows redone in fp32 (near ties), over all calls; the kernel picked
        from tuneforge.inference.int8 import Int8Linear

        info["near_tie_share"] = model.rows_rechecked / max(1, model.rows_predicted)
        info["int8_kernel"] = next(m.kernel for m in model.modules() if isinstance(m, Int8Linear))
    return preds, info


def run_pipeline(args: argparse.Namespace, texts: list[str], batch_size: int) -> tuple[list[str], dict]:
    from transformers import TextClassificationPipeline, pipeline
    from transformers.modeling_outputs import SequenceClassifierOutput

    from tuneforge.inference.predictor import Predictor

    class SameModelPipeline(TextClassificationPipeline):
        """transformers' text-classification pipeline; only ``_forward`` differs: it calls TuneForge's classifier."""

        classifier: Any = None

        def _forward(self, model_inputs):
            return SequenceClassifierOutput(logits=self.classifier(**model_inputs)["logits"])

    t = time.perf_counter()
    loaded = Predictor.from_run_dir(args.run_dir, precision="fp32")  # the run's weights, in TuneForge's module
    set_threads(args.threads)
    body = loaded.model.backbone
    labels = loaded.task.labels
    body.config.id2label = dict(enumerate(labels))
    body.config.label2id = {lab: i for i, lab in enumerate(labels)}
    pipe = pipeline("text-classification", model=body, tokenizer=loaded.task.tokenizer,
                    pipeline_class=SameModelPipeline, device="cpu")
    pipe.classifier = loaded.model.eval()
    load = time.perf_counter() - t
    max_length = loaded.cfg.data.max_length  # truncate as TuneForge encodes, or long texts would differ

    def call(xs: list[str]) -> list[str]:
        return [o["label"] for o in pipe(xs, batch_size=batch_size, truncation=True, max_length=max_length)]

    return time_calls(call, texts, args.repeats, {"load_seconds": load, "precision": "fp32",
                                                  "batch_size": batch_size})


def time_calls(call, texts: list[str], repeats: int, info: dict) -> tuple[list[str], dict]:
    t = time.perf_counter()
    call(texts[:64])  # warm-up: first-call allocations, lazy imports, int8's kernel compile
    info = {**info, "warmup_seconds": time.perf_counter() - t}
    seconds, preds = [], []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        preds = call(texts)
        seconds.append(time.perf_counter() - t)
    median = statistics.median(seconds)
    return preds, {**info, "seconds": seconds, "median_seconds": median, "texts": len(texts),
                   "sentences_per_second": len(texts) / median}


def run_side(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    texts = texts_of(args.dataset, args.text_limit)
    if args.side.startswith("tuneforge"):
        precision = {"tuneforge_fp32": "fp32", "tuneforge_int8": "int8"}.get(args.side, "auto")
        preds, out = run_tuneforge(args, texts, precision,
                                   "onnxruntime" if args.side == "tuneforge_onnx" else "torch")
    else:
        preds, out = run_pipeline(args, texts, 1 if args.side == "pipeline_b1" else args.batch_size)
    Path(args.preds_out).write_text(json.dumps(preds))
    emit({"side": args.side, "dataset": args.dataset, **out})


# ---------------------------------------------------------------- the parent
def side_argv(argv: list[str], dataset: str, run_dir: Path, preds: Path) -> list[str]:
    return [*argv, "--dataset", dataset, "--run-dir", str(run_dir), "--preds-out", str(preds)]


def compare(results: list[dict], preds: dict[str, list[str]]) -> None:
    ref = preds.get(REFERENCE)
    base = next((r for r in results if r["side"] == "tuneforge" and "error" not in r), {})
    for r in results:
        mine = preds.get(r["side"])
        if ref is not None and mine is not None and len(ref) == len(mine):
            r["agreement_with_pipeline_b1"] = sum(a == b for a, b in zip(mine, ref)) / max(1, len(ref))
        r["tf_speedup"] = ratio(base.get("sentences_per_second"), r.get("sentences_per_second"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.side:
        run_side(args)
        return 0
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    all_results, lines, failed = {}, [], False
    for name in args.datasets:
        run_dir = quick_run(args, name)
        results, preds = [], {}
        for side in args.sides:
            print(f"{name}: running {side} ...", flush=True)
            path = work / f"preds.{name}.{side}.json"
            path.unlink(missing_ok=True)
            r = run_contender(__file__, side_argv(argv, name, run_dir, path), side, args.timeout)
            results.append(r)
            failed |= "error" in r
            if path.is_file():
                preds[side] = json.loads(path.read_text())
        compare(results, preds)
        n = next((r["texts"] for r in results if "texts" in r), 0)
        lines.append(f"\n{name}: {n} texts, run {run_dir}, {args.threads} threads, batch size {args.batch_size}")
        lines.append(table(results, [("sent/s", "sentences_per_second", "{:.1f}"),
                                     ("median s", "median_seconds", "{:.2f}"), ("load s", "load_seconds", "{:.1f}"),
                                     ("warm-up s", "warmup_seconds", "{:.1f}"),
                                     ("precision", "precision", "{}"), ("batch", "batch_size", "{}"),
                                     ("fp32 redo", "near_tie_share", "{:.1%}"),
                                     ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
                                     ("same as pipe_b1", "agreement_with_pipeline_b1", "{:.4%}"),
                                     ("TF speed-up", "tf_speedup", "{:.2f}x")]))
        by = {r["side"]: r for r in results}
        for mine, label in (("tuneforge", ""), ("tuneforge_int8", " (precision int8)"),
                            ("tuneforge_onnx", " (backend onnxruntime)")):
            if mine not in by:
                continue
            tf = by[mine]
            if mine == "tuneforge_int8" and tf.get("precision") not in (None, "int8"):
                label = f" (precision int8, ran {tf['precision']}: int8 matmuls are slower than fp32 here)"
            for other in ("pipeline_b1", "pipeline_batched"):
                sp = ratio(tf.get("sentences_per_second"), by.get(other, {}).get("sentences_per_second"))
                lines.append(check(f"{name}{label}: sentences/s vs {other} >= 3x", None if sp is None else sp >= 3,
                                   "-" if sp is None else f"{sp:.2f}x"))
            agree = tf.get("agreement_with_pipeline_b1")
            lines.append(check(f"{name}{label}: identical predictions >= 99.9%",
                               None if agree is None else agree >= 0.999,
                               "-" if agree is None else f"{agree:.4%} ({round((1 - agree) * n)} of {n} differ)"))
        lines.extend(f"{r['side']}: FAILED {r['error']}" for r in results if "error" in r)
        all_results[name] = {"run_dir": str(run_dir), "results": results}
    print("\nInference, texts in -> labels out. The pipeline runs the same TuneForge classifier module through "
          "transformers' TextClassificationPipeline (only _forward replaced); see the docstring.")
    print("\n".join(lines))
    setup = {k: v for k, v in vars(args).items() if k not in ("side", "out", "dataset", "run_dir", "preds_out")}
    path = write_results("inference", {"setup": setup, "datasets": all_results, "checks": lines,
                                       "notes": __doc__}, args.out, smoke=args.smoke)
    print(f"written: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
