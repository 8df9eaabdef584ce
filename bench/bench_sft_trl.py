"""LoRA SFT throughput and memory: TuneForge's fit() vs TRL's SFTTrainer on the same data, model, LoRA and lengths.

Each side runs in its own subprocess (so peak RSS is measured separately) on the same first ``--examples``
conversations, the same chat template, an answer-only loss, the same LoRA (rank, alpha, target modules, no dropout),
max length, batch size, learning rate, optimizer steps and thread count, in fp32. Neither side evaluates or saves
during the timed part. "Real tokens/s" counts non-padding tokens fed to the model (attention_mask sums) per second
of training wall time.

Differences that stay, on purpose, because they are each tool's own behaviour: TuneForge groups batches by length
and projects to the vocabulary only at answer tokens; TRL (gradient checkpointing turned off here to match) pads
each batch as it comes and computes full (B, T, V) logits. ``--batching random`` makes TuneForge's batches random too.

    python bench/bench_sft_trl.py                      # full size: 512 examples, 40 steps (minutes of CPU)
    python bench/bench_sft_trl.py --smoke              # a few steps, to check that both sides run
    python bench/bench_sft_trl.py --sides tuneforge --gradient-checkpointing --out bench/results/sft_gc.json

Peak RSS is the process's ``ru_maxrss``: it counts the model weights (a file mapping, paged in as they are first
used), so "RSS after load" is lower than the weights' size. TRL's side needs ~15 GB at the default size;
``--keep-trl`` reuses the TRL figures already in ``--out`` on hosts without that much free memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "instruct_small" / "alpaca_en_demo.json"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2", help="tuneforge model name or local folder (both sides load it)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="Alpaca-style JSON file")
    p.add_argument("--examples", type=int, default=512)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--r", type=int, default=16)
    p.add_argument("--alpha", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--batching", choices=["length_grouped", "random"], default="length_grouped",
                   help="TuneForge's batching (TRL always takes batches as they come)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="32 examples, 3 steps, batch 2, max length 256")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "sft_trl.json"))
    p.add_argument("--sides", default="tuneforge,trl", help="comma-separated sides to run: tuneforge, trl")
    p.add_argument("--keep-trl", action="store_true", help="reuse the TRL result already in --out")
    p.add_argument("--gradient-checkpointing", action="store_true", help="TuneForge: train.gradient_checkpointing")
    p.add_argument("--full-finetune", action="store_true", help="TuneForge: train every weight, no LoRA")
    p.add_argument("--longest", action="store_true",
                   help="keep the --examples longest conversations (by characters): every batch near max length, "
                        "the worst case for peak memory")
    p.add_argument("--side", choices=["tuneforge", "trl"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.full_finetune and "trl" in args.sides.split(","):
        p.error("--full-finetune is TuneForge's side only: add --sides tuneforge")
    if args.smoke:
        args.examples, args.steps, args.batch_size, args.max_length = 32, 3, 2, 256
    return args


def conversations(path: str, n: int, longest: bool = False) -> list[list[dict[str, str]]]:
    """The first ``n`` records as conversations, read by TuneForge's Alpaca schema for both sides."""
    from tuneforge.data.readers import BadRows, read_file
    from tuneforge.tasks.generation.schemas import SchemaOptions, parse_records

    rows = read_file(path)
    if longest:
        rows = sorted(rows, key=lambda r: -sum(len(str(v)) for k, v in r.items() if not k.startswith("_")))
    examples, _ = parse_records(rows[:n], "alpaca", SchemaOptions(), BadRows())
    return [ex["messages"] for ex in examples]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_tuneforge(args: argparse.Namespace, convs: list, model_path: str, workdir: Path) -> dict:
    from tuneforge.config import config_from_dict
    from tuneforge.run import prepare
    from tuneforge.training.loop import fit

    cfg = config_from_dict({
        "model": model_path, "task": "generation", "seed": args.seed, "output_dir": str(workdir),
        "data": {"max_length": args.max_length}, "generation": {"schema": "messages"},
        "peft": ({"method": None} if args.full_finetune else
                 {"method": "lora", "r": args.r, "alpha": args.alpha, "dropout": 0.0, "target_modules": TARGETS}),
        "train": {"gradient_checkpointing": args.gradient_checkpointing, "max_steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "precision": "fp32",
                  "warmup_ratio": 0.0, "batching": args.batching, "progress": False, "log_every": 1,
                  "num_threads": args.threads, "early_stopping": {"patience": None}}})
    prepared = prepare(cfg, {"train": [{"messages": c} for c in convs]})
    task, features = prepared.task, prepared.features["train"]
    built = prepared.build_model(args.steps)
    rss_loaded = peak_rss_mb()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = fit(built.model, task, features, [], [], cfg.train, cfg.seed, workdir, step_hooks=built.step_hooks)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    losses = [json.loads(line)["loss"] for line in (workdir / "metrics.jsonl").read_text().splitlines()
              if '"train"' in line]
    return {"steps": result.global_step, "train_seconds": wall, "train_cpu_seconds": cpu,
            "real_tokens": result.tokens_per_second * result.train_seconds, "rss_after_load_mb": rss_loaded,
            "first_loss": losses[0], "last_loss": losses[-1], "trainable": built.parameters["trainable"],
            "truncated_examples": sum(f["truncated"] for f in features)}


def run_trl(args: argparse.Namespace, convs: list, model_path: str, workdir: Path) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    data = Dataset.from_list([{"prompt": c[:-1], "completion": c[-1:]} for c in convs])
    sft = SFTConfig(output_dir=str(workdir), max_length=args.max_length, per_device_train_batch_size=args.batch_size,
                    max_steps=args.steps, learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=0,
                    weight_decay=0.01, max_grad_norm=1.0, seed=args.seed, use_cpu=True, bf16=False,
                    gradient_checkpointing=False, packing=False, completion_only_loss=True, logging_steps=1,
                    save_strategy="no", eval_strategy="no", report_to="none", dataloader_num_workers=0,
                    disable_tqdm=True)
    lora = LoraConfig(r=args.r, lora_alpha=args.alpha, lora_dropout=0.0, target_modules=TARGETS,
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=sft, train_dataset=data, processing_class=tokenizer, peft_config=lora)
    counted = {"tokens": 0}
    inner = trainer.data_collator

    def counting(features):
        batch = inner(features)
        counted["tokens"] += int(batch["attention_mask"].sum())
        return batch

    trainer.data_collator = counting
    rss_loaded = peak_rss_mb()
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer.train()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return {"steps": trainer.state.global_step, "train_seconds": wall, "train_cpu_seconds": cpu,
            "real_tokens": counted["tokens"],
            "rss_after_load_mb": rss_loaded, "first_loss": losses[0], "last_loss": losses[-1],
            "trainable": trainable}


def run_side(args: argparse.Namespace) -> None:
    import tempfile

    import torch

    from tuneforge.models import resolve_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    convs = conversations(args.data, args.examples, args.longest)
    model_path = resolve_model(args.model).path
    with tempfile.TemporaryDirectory(prefix=f"bench_{args.side}_") as tmp:
        runner = run_tuneforge if args.side == "tuneforge" else run_trl
        out = runner(args, convs, model_path, Path(tmp))
    out.update(side=args.side, peak_rss_mb=peak_rss_mb(), tokens_per_second=out["real_tokens"] / out["train_seconds"])
    print("RESULT " + json.dumps(out))


def run_both(args: argparse.Namespace, argv: list[str]) -> dict:
    results = {}
    sides = args.sides.split(",")
    old = Path(args.out)
    if args.keep_trl and "trl" not in sides and old.is_file():
        results["trl"] = json.loads(old.read_text())["results"]["trl"]
    for side in sides:
        proc = subprocess.run([sys.executable, __file__, *argv, "--side", side], capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.exit(f"{side} side failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        results[side] = json.loads(lines[-1][len("RESULT "):])
    return results


def host_cpu() -> str:
    import platform

    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def table(results: dict) -> str:
    tf, trl = results["tuneforge"], results["trl"]
    rows = [("real tokens/s", "tokens_per_second", "{:.1f}"), ("train seconds", "train_seconds", "{:.1f}"),
            ("real tokens", "real_tokens", "{:.0f}"), ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
            ("RSS after load MB", "rss_after_load_mb", "{:.0f}"), ("first loss", "first_loss", "{:.3f}"),
            ("last loss", "last_loss", "{:.3f}"), ("trainable params", "trainable", "{:.0f}")]
    out = [f"{'':<20}{'tuneforge':>12}{'trl':>12}{'tf/trl':>9}"]
    for label, key, fmt in rows:
        ratio = tf[key] / trl[key] if trl[key] else float("nan")
        out.append(f"{label:<20}{fmt.format(tf[key]):>12}{fmt.format(trl[key]):>12}{ratio:>9.2f}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.side:
        run_side(args)
        return 0
    results = run_both(args, argv)
    setup = {k: v for k, v in vars(args).items() if k not in ("side", "out", "sides", "keep_trl")}
    setup["host_cpu"] = host_cpu()
    print(f"LoRA SFT, {args.examples} examples, {args.steps} steps x batch {args.batch_size}, max length "
          f"{args.max_length}, r={args.r}, {args.threads} threads, fp32")
    if {"tuneforge", "trl"} <= results.keys():
        print(table(results))
    else:
        print(json.dumps(results, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"setup": setup, "results": results}, indent=2))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
