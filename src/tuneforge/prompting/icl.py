"""In-context learning with a decoder: k demonstrations per label in the prompt, verbaliser scoring, contextual
calibration; prompts longer than the context lose demonstrations and are reported, never silently cut."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tuneforge.prompting.shots import (
    contextual_calibration,
    example_id,
    order_demonstrations,
    select_demonstrations,
)
from tuneforge.prompting.templates import PromptSpec, conversation
from tuneforge.prompting.zero_shot import candidate_ids, continuation_logprobs, label_scores, prompt_ids

CONTENT_FREE = ("N/A", "", "[MASK]")  # Zhao et al. 2021: inputs that carry no label evidence


@dataclass
class IclOptions:
    k: int = 0  # demonstrations per label; 0 = zero-shot
    selection: str = "random"  # random (one draw per seed, shared by every query) | nearest (per query)
    order: str = "random"  # random | grouped | similar_last
    calibrate: bool = True
    normalise: bool = True  # length-normalised log-likelihood of each label word
    seed: int = 0
    max_tokens: int | None = None  # prompt + answer budget; None = the model's context length


@dataclass
class IclResult:
    log_probs: torch.Tensor  # (N, L) calibrated (when asked) label log-probabilities
    raw: torch.Tensor  # (N, L) before calibration
    overflow: list[dict[str, Any]] = field(default_factory=list)  # queries that lost demonstrations to the budget
    demonstrations: list[str] = field(default_factory=list)  # ids of the shared draw (selection random)
    mean_prompt_tokens: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"overflow_count": len(self.overflow), "overflow": self.overflow[:50],
                "demonstrations": self.demonstrations, "mean_prompt_tokens": round(self.mean_prompt_tokens, 1)}


def context_length(model: torch.nn.Module) -> int | None:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "max_position_embeddings", None)


def fit_prompt(tokenizer: Any, spec: PromptSpec, query: dict[str, Any], demos: list[tuple[dict[str, Any], str]],
               budget: int | None) -> tuple[list[int], int]:
    """The prompt ids with as many demonstrations as fit ``budget`` tokens (the first ones, farthest from the
    query, go first), and how many were dropped. A query that does not fit on its own is an error."""
    dropped = 0
    while True:
        ids = prompt_ids(tokenizer, conversation(spec, query, demos[dropped:]))
        if budget is None or len(ids) <= budget:
            return ids, dropped
        if dropped == len(demos):
            raise ValueError(f"{example_id(query, -1)}: the prompt alone is {len(ids)} tokens, over the budget of "
                             f"{budget} (fewshot.max_prompt_tokens or the model's context); shorten the input")
        dropped += 1


def decoder_predict(model: torch.nn.Module, tokenizer: Any, spec: PromptSpec, labels: Sequence[str],
                    test: Sequence[dict[str, Any]], pool: Sequence[dict[str, Any]] = (),
                    opts: IclOptions | None = None, similarity: torch.Tensor | None = None) -> IclResult:
    """Label log-probabilities for ``test`` from an untuned decoder, with ``opts.k`` demonstrations per label from
    ``pool`` (``similarity``: (N, P) query-to-pool similarity, for nearest selection or similar_last order)."""
    opts = opts or IclOptions()
    cands, word_label = candidate_ids(tokenizer, spec, labels)
    limit = opts.max_tokens or context_length(model)
    budget = None if limit is None else limit - max(len(c) for c in cands)
    rng = random.Random(opts.seed)
    pool_labels = [ex["labels"][0] for ex in pool]
    shared: list[int] | None = None
    if opts.k and opts.selection == "random" and opts.order != "similar_last":  # one draw and order for all queries
        shared = order_demonstrations(select_demonstrations(pool_labels, labels, opts.k, "random", rng),
                                      "grouped" if opts.order == "grouped" else "random", rng)
    prompts, overflow, demo_sets = [], [], []
    for n, ex in enumerate(test):
        sim = similarity[n] if similarity is not None else None
        idx = shared if shared is not None else []
        if opts.k and shared is None:
            idx = order_demonstrations(select_demonstrations(pool_labels, labels, opts.k, opts.selection, rng, sim),
                                       opts.order, rng, sim)
        demos = [(pool[i], pool_labels[i]) for i in idx]
        ids, dropped = fit_prompt(tokenizer, spec, ex, demos, budget)
        if dropped:
            overflow.append({"id": example_id(ex, n), "demonstrations_dropped": dropped,
                             "demonstrations_kept": len(demos) - dropped})
        prompts.append(ids)
        demo_sets.append(demos[dropped:])
    words = continuation_logprobs(model, prompts, cands, tokenizer.pad_token_id, opts.normalise)
    raw = torch.log_softmax(label_scores(words, word_label, len(labels)), -1)
    result = IclResult(raw, raw, overflow, [example_id(pool[i], i) for i in shared or []],
                       sum(map(len, prompts)) / max(1, len(prompts)))
    if opts.calibrate:
        result.log_probs = contextual_calibration(raw, _content_free_prior(
            model, tokenizer, spec, labels, demo_sets if shared is None else [demo_sets[0]] if demo_sets else [[]],
            cands, word_label, opts.normalise, per_query=shared is None and opts.k > 0))
    return result


def _content_free_prior(model: torch.nn.Module, tokenizer: Any, spec: PromptSpec, labels: Sequence[str],
                        demo_sets: list[list[tuple[dict[str, Any], str]]], cands: list[list[int]],
                        word_label: list[int], normalise: bool, per_query: bool) -> torch.Tensor:
    """Label log-probabilities for content-free inputs under the same demonstrations: (L,) averaged over the
    three inputs for a shared prompt, (N, L) with "N/A" for per-query demonstrations (a third of the cost)."""
    inputs = CONTENT_FREE[:1] if per_query else CONTENT_FREE
    prompts = [prompt_ids(tokenizer, conversation(spec, {"text": t}, demos)) for demos in demo_sets for t in inputs]
    words = continuation_logprobs(model, prompts, cands, tokenizer.pad_token_id, normalise)
    probs = torch.softmax(label_scores(words, word_label, len(labels)), -1)  # (S * I, L)
    probs = probs.view(len(demo_sets), len(inputs), len(labels)).mean(1)  # (S, L)
    return probs.log() if per_query else probs[0].log()
