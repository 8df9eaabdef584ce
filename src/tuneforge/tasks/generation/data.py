"""Conversations → chat-template token features with an assistant-only loss mask → padded or packed batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

IGNORE = -100

# Used only when a tokenizer has no chat template of its own; saved with the run's tokenizer.
FALLBACK_TEMPLATE = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + eos_token + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}")


class TemplateError(ValueError):
    """The tokenizer's chat template cannot be split into prompt and answer pieces."""


def ensure_chat_template(tokenizer: Any) -> Any:
    if not getattr(tokenizer, "chat_template", None):
        if tokenizer.eos_token is None:
            raise TemplateError("the tokenizer has neither a chat template nor an eos token to end answers with")
        tokenizer.chat_template = FALLBACK_TEMPLATE
    return tokenizer


def render(tokenizer: Any, messages: Sequence[dict], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)


def chat_segments(tokenizer: Any, messages: Sequence[dict], generation_prompt: bool = False) -> list[tuple[str, bool]]:
    """The templated conversation cut into ``(text, is_answer)`` pieces, in order.

    An answer piece is one assistant turn's content plus the template's end-of-turn marker, so the model learns to
    stop. Every assistant turn is an answer piece, in multi-turn dialogues too. The prompt before the last answer is
    exactly the text ``render(messages[:last], generation_prompt=True)`` that inference feeds the model.
    """
    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt, full = render(tokenizer, messages[:i], True), render(tokenizer, messages[:i + 1])
        if not (prompt.startswith(done) and full.startswith(prompt)):
            raise TemplateError("the chat template does not extend earlier turns' text when a turn is added, so "
                                "answer tokens cannot be located; use a template that renders turns in order")
        pieces += [(prompt[len(done):], False), (full[len(prompt):], True)]
        done = full
    rest = render(tokenizer, messages, generation_prompt)
    if not rest.startswith(done):
        raise TemplateError("the chat template renders the last assistant turn differently from a prefix of it")
    pieces.append((rest[len(done):], False))
    return [(text, answer) for text, answer in pieces if text]


def encode_chat(tokenizer: Any, messages: Sequence[dict], max_length: int) -> dict[str, Any]:
    """Token ids, per-token targets (``-100`` outside answers) and the prompt of the last answer.

    Pieces are tokenised separately, so the prompt ids equal what generation sees. Longer-than-``max_length``
    examples keep their first ``max_length`` tokens (``truncated`` is set; the audit reports how many); a prompt
    keeps its last ``max_length`` tokens so generation still starts right after the assistant header.

    >>> # encode_chat(tok, [{"role": "user", ...}, {"role": "assistant", ...}], 512)["labels"][:3] -> [-100, ...]
    """
    has_answer = any(m["role"] == "assistant" for m in messages)
    ids: list[int] = []
    labels: list[int] = []
    prompt_end = 0
    for text, answer in chat_segments(tokenizer, messages, generation_prompt=not has_answer):
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        if answer:
            prompt_end = len(ids)
        ids += piece
        labels += piece if answer else [IGNORE] * len(piece)
    prompt = ids[:prompt_end] if has_answer else list(ids)
    truncated = len(ids) > max_length
    ids, labels = ids[:max_length], labels[:max_length]
    if labels:
        labels[0] = IGNORE  # nothing predicts the first token; also keeps packed examples from scoring across
    return {"input_ids": ids, "labels": labels, "prompt_ids": prompt[-max_length:], "length": len(ids),
            "truncated": truncated}


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: indices grouped into rows whose lengths sum to at most ``capacity``.

    >>> pack_rows([5, 3, 4, 2], 8)
    [[0, 1], [2, 3]]
    """
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


def collate(features: Sequence[dict], pad_id: int, packing: bool = False, max_length: int = 0) -> dict:
    """Right-padded training rows plus left-padded prompts for generation, one prompt per example.

    With ``packing`` the examples share rows; ``segment_ids`` (R, T) says which example (its index in
    ``features``) each token belongs to, ``-1`` for padding, and ``position_ids`` restart at 0 per example.
    """
    rows = pack_rows([f["length"] for f in features], max_length) if packing else [[i] for i in range(len(features))]
    width = max(sum(features[i]["length"] for i in row) for row in rows)
    shape = (len(rows), width)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    target_ids = torch.full(shape, IGNORE, dtype=torch.long)
    attention_mask = torch.zeros(shape, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    segment_ids = torch.full(shape, -1, dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            f, n = features[i], features[i]["length"]
            input_ids[r, at:at + n] = torch.tensor(f["input_ids"], dtype=torch.long)
            target_ids[r, at:at + n] = torch.tensor(f["labels"], dtype=torch.long)
            attention_mask[r, at:at + n] = 1
            position_ids[r, at:at + n] = torch.arange(n)
            segment_ids[r, at:at + n] = i
            at += n
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
             "target_ids": target_ids}
    if packing:
        batch["segment_ids"] = segment_ids
    batch.update(left_pad([f["prompt_ids"] for f in features], pad_id))
    return batch


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Prompts padded on the left, so every row's generation starts at the same column."""
    width = max(1, max(len(p) for p in prompts))
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p):] = 1
    return {"prompt_ids": ids, "prompt_mask": mask}


def target_count(batch: dict) -> float:
    """Answer tokens the loss averages over: targets after the one-token shift."""
    return float((batch["target_ids"][:, 1:] != IGNORE).sum())


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Token ids that end an answer: eos, plus the template's end-of-turn token (ChatML ``<|im_end|>``)."""
    stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    probe = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "MARK"}]
    answer = "".join(text for text, is_answer in chat_segments(tokenizer, probe) if is_answer)
    suffix = answer.split("MARK", 1)[-1]
    ids = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
    if ids and ids[0] in set(tokenizer.all_special_ids):  # a plain "\n" must never stop a multi-line answer
        stops.append(ids[0])
    return sorted(set(stops))
