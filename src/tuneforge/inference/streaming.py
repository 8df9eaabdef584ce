"""Streaming text out of ``generate`` without cutting a character in two.

A byte-level tokenizer (SmolLM2, GPT-2 style) spends 2–4 tokens on one Chinese character; when generation stops
on the token budget inside such a character, decoding the last tokens gives U+FFFD. transformers' streamer
already holds back text until a space, a newline or a CJK character ends it; this one also drops the unfinished
character at the end, so every piece a client gets is whole text.
"""

from __future__ import annotations

from typing import Any

from transformers import TextIteratorStreamer

from tuneforge.evaluation.language import drop_partial_char


class WholeTextStreamer(TextIteratorStreamer):
    """``TextIteratorStreamer`` whose pieces never end inside a character."""

    def __init__(self, tokenizer: Any, **kwargs: Any):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True, **kwargs)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        super().on_finalized_text(drop_partial_char(text) if stream_end else text, stream_end)
