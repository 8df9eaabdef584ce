"""``tuneforge ui``: the local web workbench (train, watch, compare, try); binds 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", default="runs", help="folder whose run directories the workbench lists and writes")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 exposes it to the network")
    p.add_argument("--port", type=int, default=7860, help="port")


def _run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise SystemExit("tuneforge ui needs FastAPI and uvicorn: pip install 'tuneforge[serve]'") from None
    from tuneforge.ui.app import create_app

    print(f"workbench: http://{args.host}:{args.port}  (runs folder: {args.runs})")
    uvicorn.run(create_app(args.runs), host=args.host, port=args.port, log_level="warning")
    return 0


def register(register_command) -> None:
    register_command("ui", "local web workbench: launch, watch, compare and try runs", _args, _run)
