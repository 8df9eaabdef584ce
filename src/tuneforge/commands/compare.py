"""``tuneforge compare CONFIG --methods full,lora,...``: one run per method on the same split; table + plot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML run config shared by every method")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every method")
    p.add_argument("--methods", default="full,lora,adalora,ia3,prefix_tuning,prompt_tuning,adapter,head_only,top_k",
                   help="comma-separated: full, head_only, top_k, bitfit and the peft methods")
    p.add_argument("--out", help="output folder (default: the config's output_dir + '_compare')")
    p.add_argument("--set", action="append", default=[], metavar="METHOD:KEY=VALUE",
                   help="an override for one method only, e.g. lora:train.lr=1e-3 (repeatable)")
    p.add_argument("--timeout", type=float, help="seconds allowed per method")


def _run(args: argparse.Namespace) -> int:
    from tuneforge.compare import compare, known_methods
    from tuneforge.config import load_config

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in known_methods()]
    if unknown:
        print(f"tuneforge compare: error: unknown method(s) {', '.join(unknown)}; known: "
              f"{', '.join(known_methods())}", file=sys.stderr)
        return 2
    per_method: dict[str, list[str]] = {}
    for item in args.set:
        method, sep, override = item.partition(":")
        if not sep or "=" not in override or method not in methods:
            print(f"tuneforge compare: error: --set {item!r} must look like METHOD:key=value with METHOD in "
                  f"--methods", file=sys.stderr)
            return 2
        per_method.setdefault(method, []).append(override)
    out = args.out or load_config(args.config, args.overrides).output_dir.rstrip("/") + "_compare"
    rows = compare(args.config, methods, out, args.overrides, per_method, args.timeout)
    print(Path(out, "compare.md").read_text(encoding="utf-8"))
    return 0 if all(r.status == "ok" for r in rows) else 1


def register(register_command) -> None:
    register_command("compare", "train one config with several methods and tabulate params, memory, speed, metric",
                     _args, _run)
