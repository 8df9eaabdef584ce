"""``make bench``: run every ``bench/bench_*.py`` one after the other; each prints its table and writes
``bench/results/<name>.json``. A failing script does not stop the others; the exit code says whether any failed.

    python bench/run_all.py                        # full size: hours on a small CPU (the training bench dominates)
    python bench/run_all.py --smoke                # every script with its --smoke sizes (minutes)
    python bench/run_all.py --only train mfu       # bench_train.py and bench_mfu.py only
    python bench/run_all.py --threads 2            # passed on to every script (each accepts --threads)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    """Every bench script, found by name, so a new ``bench_<name>.py`` is picked up without an edit here."""
    return sorted(BENCH.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="pass --smoke to every script")
    p.add_argument("--only", nargs="+", metavar="NAME", help="script names without bench_ and .py")
    p.add_argument("--threads", type=int, default=None, help="pass --threads N to every script")
    p.add_argument("--list", action="store_true", help="list the scripts and exit")
    args = p.parse_args(argv)
    found = scripts()
    if args.only:
        unknown = set(args.only) - {s.stem.removeprefix("bench_") for s in found}
        if unknown:
            p.error(f"unknown bench {sorted(unknown)}; known: {[s.stem.removeprefix('bench_') for s in found]}")
        found = [s for s in found if s.stem.removeprefix("bench_") in args.only]
    if args.list:
        print("\n".join(s.name for s in found))
        return 0
    extra = (["--smoke"] if args.smoke else []) + (["--threads", str(args.threads)] if args.threads else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    summary = []
    for script in found:
        cmd = [sys.executable, str(script), *extra]
        print(f"\n=== {script.name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call(cmd, env=env, cwd=BENCH.parent)
        summary.append((script.name, rc, time.perf_counter() - start))
    print("\n=== summary")
    for name, rc, seconds in summary:
        print(f"{name:<28} {'ok' if rc == 0 else f'FAILED (exit {rc})':<18} {seconds:8.0f} s")
    print(f"results: {BENCH / 'results'}")
    return 0 if all(rc == 0 for _, rc, _ in summary) else 1


if __name__ == "__main__":
    raise SystemExit(main())
