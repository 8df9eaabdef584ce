"""Classification examples → chat prompts whose answer is the label word; each label's answer tokens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuneforge.tasks.generation.data import chat_segments

DEFAULT_INSTRUCTION = "Classify the text. Answer with one of: {labels}."


def label_word(label: str) -> str:
    """How a label is written in the answer: ``card_arrival`` → ``card arrival``."""
    return label.replace("_", " ").strip()


def conversation(ex: dict[str, Any], instruction: str, system_prompt: str | None,
                 answer: str | None) -> list[dict[str, str]]:
    """The prompt (instruction, text and optional pair) plus, for training, the label word as the answer."""
    text = ex["text"] + (f"\n\n{ex['text_pair']}" if ex.get("text_pair") else "")
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": f"{instruction}\n\n{text}"})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def answer_token_ids(tokenizer: Any, words: Sequence[str]) -> list[list[int]]:
    """Token ids of each label's answer piece (the word plus the end-of-turn marker), tokenised exactly as in
    training, so "positive" and "positive feedback" stay distinct."""
    out = []
    for word in words:
        probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": word}]
        answer = "".join(text for text, is_answer in chat_segments(tokenizer, probe) if is_answer)
        out.append(tokenizer(answer, add_special_tokens=False)["input_ids"])
    return out
