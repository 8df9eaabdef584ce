"""``tuneforge assist RUN_DIR``: the customer-service assistant in the terminal, or over HTTP with ``--serve``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
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
    reworded = reply.get("reword")
    if reworded is not None:
        how += "; reworded" if reworded["used"] else f"; template kept ({reworded['kept_because']})"
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


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a single-label classification run (its config's `assistant` section applies)")
    p.add_argument("--answers", help="answers file (default: assistant.answers of the run's config)")
    p.add_argument("--faq-encoder", help="FAQ bi-encoder: run | minilm | a folder (default: assistant.faq_encoder)")
    p.add_argument("--threshold", type=float,
                   help="answer an intent when its calibrated confidence is at least this (default: the run's "
                        "stored abstention threshold)")
    p.add_argument("--feedback", help="feedback JSONL (default: assistant.feedback, in the run directory)")
    p.add_argument("--reword", metavar="RUN_OR_MODEL",
                   help="reword answers with a causal LM (a generation run or e.g. smollm2); a rewrite that changes "
                        "a number, link or slot value is not used (default: assistant.reword)")
    p.add_argument("--serve", action="store_true", help="serve POST /v1/assist and /v1/feedback instead")
    p.add_argument("--export-feedback", metavar="OUT.jsonl",
                   help="write the replies marked wrong with their right intent as training rows (the run's text "
                        "and label columns; add OUT.jsonl to a later run's data.train) and exit")
    p.add_argument("--tune-faq", metavar="FOLDER",
                   help="fine-tune the FAQ bi-encoder on the answers file's question-answer pairs, save it to "
                        "FOLDER (set assistant.faq_encoder or --faq-encoder to it) and exit")
    p.add_argument("--epochs", type=int, default=3, help="--tune-faq: passes over the pairs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)


def build_app(assistant: Any) -> Any:
    """A FastAPI app with ``GET /health`` and the assistant's routes."""
    from fastapi import FastAPI

    from tuneforge.apps.assistant.routes import add_assistant_routes

    app = FastAPI(title="TuneForge assistant", version="0.1.0")
    app.get("/health")(lambda: {"status": "ok"})
    return add_assistant_routes(app, assistant)


def _export_feedback(args: argparse.Namespace) -> int:
    from tuneforge.apps.assistant import training_rows
    from tuneforge.apps.assistant.assistant import resolve_output
    from tuneforge.io_utils import atomic_write_jsonl
    from tuneforge.run import load_run_config

    cfg = load_run_config(args.run_dir)
    source = resolve_output(args.feedback or cfg.assistant.feedback, Path(args.run_dir))
    rows = training_rows(source, cfg.data.text_column, cfg.data.label_column)
    atomic_write_jsonl(args.export_feedback, rows)
    print(f"{len(rows)} corrected replies from {source} -> {args.export_feedback}")
    return 0


def _tune_faq(assistant: Any, args: argparse.Namespace) -> int:
    if assistant.faq is None:
        print("tuneforge assist: error: the answers file has no faq pairs to tune on", file=sys.stderr)
        return 2
    losses = assistant.faq.encoder.fine_tune(assistant.answers.faq, epochs=args.epochs)
    assistant.faq.encoder.save(args.tune_faq)
    print(f"FAQ bi-encoder tuned on {len(assistant.answers.faq)} pairs (loss per epoch: "
          f"{', '.join(f'{v:.4f}' for v in losses)}) -> {args.tune_faq}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from tuneforge.apps.assistant import AnswersError, Assistant

    if args.export_feedback:
        return _export_feedback(args)
    try:
        assistant = Assistant.from_run_dir(args.run_dir, args.answers, args.faq_encoder, args.threshold,
                                           args.feedback, reword=args.reword)
    except (AnswersError, ValueError) as e:
        print(f"tuneforge assist: error: {e}", file=sys.stderr)
        return 2
    if args.tune_faq:
        return _tune_faq(assistant, args)
    if args.serve:
        import uvicorn

        uvicorn.run(build_app(assistant), host=args.host, port=args.port, log_level="info")
        return 0
    out = sys.stdout

    def write(text: str) -> None:
        out.write(text)
        out.flush()

    from tuneforge.commands.chat import stdin_lines

    write(HELP + "\n")
    assist_loop(assistant, stdin_lines(), write, prompt=lambda: write("you> "))
    write("\n")
    return 0


def register(register_command: Callable[..., None]) -> None:
    register_command("assist", "the customer-service assistant on a classification run (terminal or --serve)",
                     _args, _run)
