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
    p.add_argument("--span", type=span_bounds, help="generation runs: the answer tokens to explain, START:END "
                                                    "(Python slice bounds; default: the whole answer)")
    p.add_argument("--span-text", help="generation runs: explain the answer tokens covering this text")
    p.add_argument("--answer", help="generation runs: explain this answer instead of the one the model generates")


def span_bounds(value: str) -> tuple[int, int]:
    """``START:END`` → (start, end); an empty side is the answer's start or end."""
    start, sep, end = value.partition(":")
    try:
        if not sep:
            raise ValueError
        return (int(start) if start.strip() else 0, int(end) if end.strip() else 1 << 30)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--span {value!r}: expected START:END, e.g. 0:3") from None


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
        found = predictor.explain(items, label=args.label, steps=args.steps, span=args.span,
                                  span_text=args.span_text, answer=args.answer)
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
