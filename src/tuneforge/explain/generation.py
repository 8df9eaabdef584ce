"""Explanations of a generative (causal-LM) run: per-word saliency of the prompt for a span of the answer.

The explained scalar is the log-probability of the span's tokens given the prompt and the answer tokens before the
span, ``sum_j log p(a_j | prompt, a_<j)``. Integrated Gradients interpolates the embeddings of the prompt's words
only: the chat template's tokens and the answer keep their embeddings in the baseline, so their attributions are
exactly zero and the words' attributions add up to the log-probability difference (completeness). Occlusion
replaces one word at a time by padding as a gradient-free cross-check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tuneforge.explain.attribution import baseline_ids, integrated_gradients, occlusion
from tuneforge.explain.classify import rank_agreement
from tuneforge.explain.errors import ExplainError

WORD = re.compile(r"\w+|[^\w\s]+")  # words and runs of punctuation, as a reader splits them


def span_target(backbone: nn.Module, prompt_len: int, answer_ids: Sequence[int], start: int, end: int):
    """``(ids, mask, tti) -> (B,)``: the summed log-probability of ``answer_ids[start:end]``, where ``ids`` is the
    prompt (``prompt_len`` tokens) followed by the whole answer. Only the span's positions go through the LM head."""
    from tuneforge.tasks.generation.head import is_prompt_learning, unwrap_lm

    pos = torch.arange(prompt_len + start - 1, prompt_len + end - 1)  # column t predicts token t + 1
    tgt = torch.tensor(list(answer_ids[start:end]))
    prompt_learning = is_prompt_learning(backbone)
    lm = unwrap_lm(backbone)

    def target(ids: torch.Tensor, mask: torch.Tensor, tti: torch.Tensor | None) -> torch.Tensor:
        p, t = pos.to(ids.device), tgt.to(ids.device)
        if prompt_learning:  # virtual tokens are prepended inside PEFT's forward, which returns all logits
            logits = backbone(input_ids=ids, attention_mask=mask).logits[:, -ids.shape[1]:][:, p]
        else:
            hidden = lm.get_decoder()(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            logits = lm.get_output_embeddings()(hidden[:, p])  # (B, S, V)
        logp = torch.log_softmax(logits.float(), -1)
        return logp.gather(-1, t.expand(ids.shape[0], -1).unsqueeze(-1)).squeeze(-1).sum(-1)  # (B,)
    return target


def prompt_tokens(tokenizer: Any, messages: list[dict[str, str]], max_length: int) -> dict[str, Any]:
    """The chat-templated prompt as the model reads it before answering (the same pieces, tokenised separately,
    as training and generation use), with each token's character span in the rendered text."""
    from tuneforge.tasks.generation.data import chat_segments

    text, ids, offsets = "", [], []
    for piece, _ in chat_segments(tokenizer, messages, generation_prompt=True):
        enc = tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True)
        ids += enc["input_ids"]
        offsets += [(len(text) + s, len(text) + e) for s, e in enc["offset_mapping"]]
        text += piece
    truncated = len(ids) > max_length  # as encode_chat: the prompt keeps its last max_length tokens
    return {"text": text, "ids": ids[-max_length:], "offsets": offsets[-max_length:], "truncated": truncated}


def word_groups(text: str, messages: list[dict[str, str]], offsets: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """The words of the messages' contents in the rendered prompt ``text``, each with its token positions. A token
    that spans several words merges them; template tokens (role markers, separators) belong to no word."""
    spans: list[list[int]] = []
    cursor = 0
    for m in messages:
        content = m["content"].strip()
        at = text.find(content, cursor) if content else -1
        if at < 0:
            continue  # the template rewrote this message; its tokens stay fixed in the baseline
        spans += [[at + w.start(), at + w.end()] for w in WORD.finditer(content)]
        cursor = at + len(content)
    parent = list(range(len(spans)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    owner: dict[int, int] = {}  # token position -> a word index
    for pos, (s, e) in enumerate(offsets):
        hit = [i for i, (a, b) in enumerate(spans) if a < max(e, s + 1) and s < b]
        if not hit:
            continue
        for i in hit[1:]:
            parent[root(i)] = root(hit[0])
        owner[pos] = hit[0]
    groups: dict[int, dict[str, Any]] = {}
    for pos, i in owner.items():
        g = groups.setdefault(root(i), {"positions": [], "start": spans[root(i)][0], "end": spans[root(i)][1]})
        g["positions"].append(pos)
    for i in range(len(spans)):  # the merged words' extent
        if root(i) in groups:
            g = groups[root(i)]
            g["start"], g["end"] = min(g["start"], spans[i][0]), max(g["end"], spans[i][1])
    return sorted(groups.values(), key=lambda g: g["start"])


def answer_offsets(tokenizer: Any, answer_ids: Sequence[int]) -> list[tuple[int, int]]:
    """Each answer token's character span in the decoded answer (decoding growing prefixes)."""
    out, prev = [], 0
    for i in range(len(answer_ids)):
        end = max(prev, len(tokenizer.decode(list(answer_ids[:i + 1]), skip_special_tokens=True)))
        out.append((prev, end))
        prev = end
    return out


def choose_span(answer_text: str, offsets: list[tuple[int, int]], span: tuple[int, int] | None,
                span_text: str | None) -> tuple[int, int]:
    """Token indices ``[start, end)`` of the explained span: ``span`` (Python slice bounds, negatives count from
    the end), the tokens covering the first occurrence of ``span_text``, or the whole answer."""
    n = len(offsets)
    if span is not None and span_text is not None:
        raise ExplainError("give the span as token indices or as text, not both")
    if span_text is not None:
        at = answer_text.find(span_text)
        if at < 0 or not span_text:
            raise ExplainError(f"span text {span_text!r} is not in the answer {answer_text!r}")
        tokens = [i for i, (s, e) in enumerate(offsets) if s < at + len(span_text) and at < e]
        return tokens[0], tokens[-1] + 1
    if span is None:
        return 0, n
    start, end, _ = slice(*span).indices(n)
    if not 0 <= start < end <= n:
        raise ExplainError(f"span {span[0]}:{span[1]} selects no token of the {n}-token answer")
    return start, end


def explain_generation(model: nn.Module, task: Any, item: str | dict[str, Any], steps: int = 50,
                       span: tuple[int, int] | None = None, span_text: str | None = None,
                       answer: str | None = None) -> dict[str, Any]:
    """Per-word IG and occlusion saliency of the prompt for a span of the answer: the model's own greedy (or as the
    run decodes) answer, or ``answer`` when given (a reference, or an answer you want explained).

    >>> # explain_generation(predictor.model, predictor.task, "is great positive", span_text="positive")
    """
    tok = task.tokenizer
    if not getattr(tok, "is_fast", False):
        raise ExplainError("explanations map tokens back to words with a fast (Rust) tokenizer")
    backbone = getattr(model, "backbone", None)
    if backbone is None or not hasattr(model, "generate"):
        raise ExplainError("generation explanations need the run's causal-LM model (tuneforge CausalLM)")
    messages = list(task.parse_input(item)["messages"])
    while messages and messages[-1]["role"] == "assistant":  # a reference answer in the input is not the prompt
        messages.pop()
    if not messages:
        raise ExplainError("the input has no prompt to explain")
    prompt = prompt_tokens(tok, messages, task.max_length)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    if answer is not None:
        answer_ids = tok(answer, add_special_tokens=False)["input_ids"]
        source = "given"
    else:
        prompt_ids = torch.tensor([prompt["ids"]], device=device)
        new = model.generate(prompt_ids, torch.ones_like(prompt_ids))[0].tolist()
        stop = set(getattr(model, "stop_ids", []))
        answer_ids = new[:next((i for i, t in enumerate(new) if t in stop), len(new))]
        source = "generated"
    if not answer_ids:
        raise ExplainError("the answer is empty (the model stopped at once): pass an answer to explain")
    answer_text = tok.decode(answer_ids, skip_special_tokens=True)
    offsets = answer_offsets(tok, answer_ids)
    start, end = choose_span(answer_text, offsets, span, span_text)

    words = word_groups(prompt["text"], messages, prompt["offsets"])
    if not words:
        raise ExplainError("no word of the prompt's messages was found in the templated prompt")
    p = len(prompt["ids"])
    ids = torch.tensor([prompt["ids"] + list(answer_ids)], device=device)
    mask = torch.ones_like(ids)
    keep = torch.ones_like(ids)  # template tokens and the answer stay; the words' tokens go to padding
    for w in words:
        keep[0, w["positions"]] = 0
    fill = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    target = span_target(backbone, p, answer_ids, start, end)
    ig = integrated_gradients(target, model, ids, mask, None, baseline_ids(ids, keep, fill), steps=steps,
                              internal_batch_size=max(1, min(25, 4096 // ids.shape[1])))
    occ = occlusion(target, ids, mask, None, [w["positions"] for w in words], fill, batch_size=16)
    with torch.no_grad():
        logp = float(target(ids, mask, None)[0])
    model.train(was_training)
    out_words = [{"text": prompt["text"][w["start"]:w["end"]], "sequence": 0, "start": w["start"], "end": w["end"],
                  "ig": float(sum(ig.token_attributions[i] for i in w["positions"])), "occlusion": o}
                 for w, o in zip(words, occ)]
    span_chars = (offsets[start][0], offsets[end - 1][1])
    return {"text": prompt["text"], "prompt_tokens": p, "prompt_truncated": prompt["truncated"],
            "generated": answer_text, "answer_source": source,
            "answer_tokens": [{"index": i, "text": answer_text[s:e]} for i, (s, e) in enumerate(offsets)],
            "span": {"start": start, "end": end, "text": answer_text[span_chars[0]:span_chars[1]].strip()},
            "target": "log p(span | prompt, answer before the span)", "log_probability": logp,
            "words": out_words,
            "integrated_gradients": {"steps": ig.steps, "sum": ig.total, "logit_difference": ig.difference,
                                     "completeness_error": abs(ig.total - ig.difference),
                                     "relative_completeness_error": ig.completeness_error,
                                     "baseline": "the prompt's words replaced by padding; template tokens and the "
                                                 "answer kept"},
            "agreement": rank_agreement([w["ig"] for w in out_words], occ)}
