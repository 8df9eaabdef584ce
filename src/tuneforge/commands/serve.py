"""``tuneforge serve RUN_DIR``: an HTTP prediction server for a finished run."""

from __future__ import annotations

import argparse


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    from tuneforge.cli import add_inference_args

    add_inference_args(p)


def _run(args: argparse.Namespace) -> int:
    from tuneforge.inference.server import serve

    serve(args.run_dir, args.host, args.port, args.backend, args.precision)
    return 0


def register(register_command) -> None:
    register_command("serve", "serve a finished run over HTTP (POST /predict)", _args, _run)
