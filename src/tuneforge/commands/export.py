"""``tuneforge export RUN OUT``: any run as a standard transformers / sentence-transformers / peft folder."""

from __future__ import annotations

import argparse
import sys


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory (any task; full fine-tuning, freezing or a PEFT method)")
    p.add_argument("out", nargs="?", help="write the exported model (weights, tokenizer, model card) to this folder")
    p.add_argument("--merge", metavar="OUT",
                   help="as OUT, for LoRA / AdaLoRA / IA3 runs only: refuse runs whose adapter cannot be merged")
    p.add_argument("--atol", type=float, default=1e-4,
                   help="largest allowed |exported - run| output difference (default 1e-4)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="weights' dtype; auto: generative models as trained (bf16 runs in bfloat16), others float32")
    p.add_argument("--gguf", action="store_true",
                   help="generative runs on a Llama-architecture model: also write model.gguf for llama.cpp, checked "
                        "by reading it back")
    p.add_argument("--license", help="the model card's license (default: the packaged base model's, when known)")


def _run(args: argparse.Namespace) -> int:
    from tuneforge.export import ExportError, export_run

    if bool(args.out) == bool(args.merge):
        print("tuneforge export: error: give the output folder once: RUN OUT (or --merge OUT)", file=sys.stderr)
        return 2
    try:
        result = export_run(args.run_dir, args.out or args.merge, atol=args.atol, dtype=args.dtype,
                            require_merge=bool(args.merge), license=args.license, gguf=args.gguf)
    except (ExportError, FileNotFoundError) as e:
        print(f"tuneforge export: error: {e}", file=sys.stderr)
        return 1
    checks = ", ".join(f"{what} {diff:.2e}" for what, diff in result.checks.items())
    print(f"exported to {result.out} as {result.format} ({result.dtype}); max |exported - run| over "
          f"{result.examples} examples ({result.probe}): {checks}; model card: {result.out / 'README.md'}")
    return 0


def register(register_command) -> None:
    register_command("export", "write a run as a standard transformers / sentence-transformers / peft folder, "
                               "parity-checked", _args, _run)
