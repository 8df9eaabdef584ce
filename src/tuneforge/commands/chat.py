"""``tuneforge chat RUN_DIR``: an interactive terminal chat with a generative run, tokens streamed as they come."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

HELP = "type a message; /reset forgets the conversation, /exit (or Ctrl-D) quits"


class ChatSession:
    """A conversation with a loaded generation run; ``reply`` streams the answer through ``on_text``.

    >>> # s = ChatSession(Predictor.from_run_dir("runs/alpaca")); s.reply("Hi!", print)
    """

    def __init__(self, predictor: Any, system: str | None = None, **decoding: Any):
        task, model = predictor.task, predictor.model
        if getattr(task, "name", None) != "generation" or not hasattr(model, "generate"):
            raise ValueError(f"chat needs a run of task 'generation', not {getattr(task, 'name', '?')!r}")
        self.task, self.model, self.system = task, model, system
        # streaming works token by token, so beams (the run may evaluate with them) are turned off here
        self.decoding = {"num_beams": 1, **{k: v for k, v in decoding.items() if v is not None}}
        self.messages: list[dict[str, str]] = []
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def reply(self, text: str, on_text: Callable[[str], None]) -> str:
        from tuneforge.inference.streaming import WholeTextStreamer

        self.messages.append({"role": "user", "content": text})
        feature = self.task.encode({"messages": self.messages})  # keeps the last data.max_length prompt tokens
        device = next(self.model.parameters()).device
        prompt = self.task.collate([feature])
        streamer = WholeTextStreamer(self.task.tokenizer)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                self.model.generate(prompt["prompt_ids"].to(device), prompt["prompt_mask"].to(device),
                                    streamer=streamer, **self.decoding)
            except BaseException as e:  # re-raised in the caller; end() keeps the reader from waiting forever
                errors.append(e)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        pieces = []
        for piece in streamer:
            pieces.append(piece)
            on_text(piece)
        thread.join()
        if errors:
            self.messages.pop()
            raise errors[0]
        answer = "".join(pieces).strip()
        self.messages.append({"role": "assistant", "content": answer})
        return answer


def chat_loop(session: ChatSession, lines: Iterable[str], write: Callable[[str], Any],
              prompt: Callable[[], None] = lambda: None) -> int:
    """Read user lines until /exit or the end of input; returns the number of answers given."""
    answers = 0
    prompt()
    for line in lines:
        text = line.strip()
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            session.reset()
            write("(conversation reset)\n")
        elif text:
            write("assistant> ")
            session.reply(text, write)
            write("\n")
            answers += 1
        prompt()
    return answers


def stdin_lines() -> Iterable[str]:
    """Lines typed on the terminal until end of input (Ctrl-D)."""
    while True:
        try:
            yield input()
        except EOFError:
            return


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory of task 'generation'")
    p.add_argument("--system", help="system message for the conversation")
    p.add_argument("--max-new-tokens", type=int, help="longest answer (default: the run's generation config)")
    p.add_argument("--temperature", type=float, help="sample with this temperature (implies sampling)")
    p.add_argument("--top-p", type=float, help="nucleus sampling mass (implies sampling)")


def _run(args: argparse.Namespace) -> int:
    from tuneforge.inference.predictor import Predictor

    sampling = args.temperature is not None or args.top_p is not None
    session = ChatSession(Predictor.from_run_dir(args.run_dir), system=args.system,
                          max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                          do_sample=True if sampling else None)
    out = sys.stdout
    print(HELP, file=out)

    def write(text: str) -> None:
        out.write(text)
        out.flush()

    chat_loop(session, stdin_lines(), write, prompt=lambda: write("you> "))
    write("\n")
    return 0


def register(register_command: Callable[..., None]) -> None:
    register_command("chat", "chat with a generative run in the terminal (streamed answers)", _args, _run)
