"""``tuneforge assist RUN_DIR``: the customer-service assistant in the terminal, or over HTTP with ``--serve``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from typing import Any

HELP = ("type a question; /wrong [INTENT] marks the last reply wrong (INTENT = the right one), /right marks it "
        "right, /exit (or Ctrl-D) quits")


def format_reply(reply: dict[str, Any]) -> str:
    """The answer, then one line on how it was chosen."""
    how = {"intent": f"intent {reply['intent']} ({reply['confidence']:.2f})",
           "faq": f"FAQ: {reply.get('faq', {}).get('question', '')!r} "
                  f"(similarity {reply.get('faq', {}).get('similarity', 0):.2f})",
           "handoff": "hand-off; candidates: " + ", ".join(f"{c['intent']} ({c['confidence']:.2f})"
                                                          for c in reply["candidates"])}[reply["path"]]
    return f"assistant> {reply['answer']}\n           [{how}; id {reply['id'][:8]}]\n"


def assist_loop(assistant: Any, lines: Iterable[str], write: Callable[[str], Any],
                prompt: Callable[[], None] = lambda: None) -> int:
    """Answer lines until /exit or the end of input; returns the number of replies given."""
    last: dict[str, Any] | None = None
    replies = 0
    prompt()
    for line in lines:
        text = line.strip()
        if text in ("/exit", "/quit"):
            break
        if text.startswith(("/wrong", "/right")):
            if last is None:
                write("(nothing to judge yet)\n")
            else:
                parts = text.split(maxsplit=1)
                try:
                    assistant.feedback(last["id"], parts[0] == "/right", parts[1] if len(parts) > 1 else None)
                    write("(feedback saved)\n")
                except ValueError as e:
                    write(f"(not saved: {e})\n")
        elif text:
            last = assistant.reply(text)
            write(format_reply(last))
            replies += 1
        prompt()
    return replies


def _stdin_lines() -> Iterable[str]:
    while True:
        try:
            yield input()
        except EOFError:
            return


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a single-label classification run (its config's `assistant` section applies)")
    p.add_argument("--answers", help="answers file (default: assistant.answers of the run's config)")
    p.add_argument("--faq-encoder", help="FAQ bi-encoder: run | minilm | a folder (default: assistant.faq_encoder)")
    p.add_argument("--threshold", type=float,
                   help="answer an intent when its calibrated confidence is at least this (default: the run's "
                        "stored abstention threshold)")
    p.add_argument("--feedback", help="feedback JSONL (default: assistant.feedback, in the run directory)")
    p.add_argument("--serve", action="store_true", help="serve POST /v1/assist and /v1/feedback instead")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)


def build_app(assistant: Any) -> Any:
    """A FastAPI app with ``GET /health`` and the assistant's routes."""
    from fastapi import FastAPI

    from tuneforge.apps.assistant.routes import add_assistant_routes

    app = FastAPI(title="TuneForge assistant", version="0.1.0")
    app.get("/health")(lambda: {"status": "ok"})
    return add_assistant_routes(app, assistant)


def _run(args: argparse.Namespace) -> int:
    from tuneforge.apps.assistant import AnswersError, Assistant

    try:
        assistant = Assistant.from_run_dir(args.run_dir, args.answers, args.faq_encoder, args.threshold,
                                           args.feedback)
    except (AnswersError, ValueError) as e:
        print(f"tuneforge assist: error: {e}", file=sys.stderr)
        return 2
    if args.serve:
        import uvicorn

        uvicorn.run(build_app(assistant), host=args.host, port=args.port, log_level="info")
        return 0
    out = sys.stdout

    def write(text: str) -> None:
        out.write(text)
        out.flush()

    write(HELP + "\n")
    assist_loop(assistant, _stdin_lines(), write, prompt=lambda: write("you> "))
    write("\n")
    return 0


def register(register_command: Callable[..., None]) -> None:
    register_command("assist", "the customer-service assistant on a classification run (terminal or --serve)",
                     _args, _run)
