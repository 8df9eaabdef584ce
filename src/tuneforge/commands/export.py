"""``tuneforge export RUN_DIR --merge OUT``: merge a LoRA/AdaLoRA/IA3 run into a plain transformers folder."""

from __future__ import annotations

import argparse
import sys


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory trained with peft.method lora, adalora or ia3")
    p.add_argument("--merge", required=True, metavar="OUT",
                   help="write the merged model (body + head + tokenizer + model card) to this folder")
    p.add_argument("--atol", type=float, default=1e-4,
                   help="largest allowed |exported - unmerged| output difference, in fp32 (default 1e-4)")


def _run(args: argparse.Namespace) -> int:
    from tuneforge.export import ExportError, export_merged

    try:
        result = export_merged(args.run_dir, args.merge, atol=args.atol)
    except ExportError as e:
        print(f"tuneforge export: error: {e}", file=sys.stderr)
        return 1
    print(f"exported to {result.out}: max |exported - unmerged| = {result.max_abs_diff:.2e} "
          f"over {result.examples} examples ({result.probe}); model card: {result.out / 'README.md'}")
    return 0


def register(register_command) -> None:
    register_command("export", "merge a LoRA/IA3 run into a plain transformers model folder, with a parity check",
                     _args, _run)
