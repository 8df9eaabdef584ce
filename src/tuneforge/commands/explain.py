"""``tuneforge explain RUN --input TEXT|FILE``: per-word attributions (Integrated Gradients, occlusion) as JSON
lines, and optionally as a highlighted HTML page."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument("--input", required=True, help="a text to explain, or a file: one input per line, or JSONL "
                                                  "with the run's text column")
    p.add_argument("--label", help="explain this label instead of the predicted one")
    p.add_argument("--steps", type=int, default=50, help="Integrated Gradients steps (Gauss-Legendre)")
    p.add_argument("--html", help="also write a page with the words shaded by their attribution")


def read_inputs(value: str) -> list:
    path = Path(value)
    if not path.is_file():
        return [value]
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON line ({e.msg})") from None
        else:
            items.append(line)
    return items


def _run(args: argparse.Namespace) -> int:
    from tuneforge.explain import ExplainError
    from tuneforge.explain.render import page
    from tuneforge.inference.predictor import Predictor
    from tuneforge.io_utils import atomic_write_text

    try:
        items = read_inputs(args.input)
        predictor = Predictor.from_run_dir(args.run_dir, precision="fp32")
        found = predictor.explain(items, label=args.label, steps=args.steps)
    except (ExplainError, ValueError) as e:
        print(f"tuneforge explain: error: {e}", file=sys.stderr)
        return 2
    for e in found:
        print(json.dumps(e, ensure_ascii=False))
    if args.html:
        atomic_write_text(Path(args.html), page(found))
        print(f"wrote {args.html}", file=sys.stderr)
    return 0


def register(register_command) -> None:
    register_command("explain", "token attributions for a run's predictions (Integrated Gradients, occlusion)",
                     _args, _run)
