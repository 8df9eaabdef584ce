"""``tuneforge predict-adapters RUN... --adapter NAME``: several runs on one shared base model, one picked by name."""

from __future__ import annotations

import argparse
import sys


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run directories, as NAME=RUN_DIR or RUN_DIR (named after its folder); LoRA/AdaLoRA/IA3 "
                        "(one kind) or head_only runs on the same base model")
    p.add_argument("--adapter", required=True, help="which run answers (a NAME)")
    p.add_argument("--input", required=True, help="a text file (one input per line), a JSONL file, or - for stdin")
    p.add_argument("--output", help="write JSONL here (default: stdout)")


def _run(args: argparse.Namespace) -> int:
    from tuneforge.cli import _read_inputs
    from tuneforge.inference.multi_adapter import MultiAdapterError, MultiAdapterPredictor
    from tuneforge.io_utils import emit_jsonl

    items = _read_inputs(args.input)
    try:
        predictor = MultiAdapterPredictor.from_run_dirs(args.runs)
        results = predictor.predict(items, adapter=args.adapter)
    except (MultiAdapterError, KeyError) as e:
        print(f"tuneforge predict-adapters: error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    rows = [{"input": item, "adapter": args.adapter, **r} for item, r in zip(items, results)]
    emit_jsonl(rows, args.output)
    return 0


def register(register_command) -> None:
    register_command("predict-adapters", "predict with one of several adapter runs that share a base model",
                     _args, _run)
