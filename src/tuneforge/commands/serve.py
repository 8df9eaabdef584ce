"""``tuneforge serve RUN_DIR``: an HTTP prediction server for a finished run."""

from __future__ import annotations

import argparse


def _args(p: argparse.ArgumentParser) -> None:
    from tuneforge.cli import add_inference_args
    from tuneforge.inference.server_limits import add_server_args

    p.add_argument("run_dir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info",
                   help="uvicorn's log level; below info the per-request access log is off")
    add_inference_args(p)
    add_server_args(p)


def _run(args: argparse.Namespace) -> int:
    from tuneforge.inference.server import serve
    from tuneforge.inference.server_limits import options_from_args

    try:
        options = options_from_args(args)
    except ValueError as e:
        raise SystemExit(f"tuneforge serve: {e}") from None
    serve(args.run_dir, args.host, args.port, args.backend, args.precision, options, args.log_level)
    return 0


def register(register_command) -> None:
    register_command("serve", "serve a finished run over HTTP (POST /predict, /health, /ready, /metrics)", _args,
                     _run)
