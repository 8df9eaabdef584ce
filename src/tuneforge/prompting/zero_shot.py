"""Classification without training: label-description similarity (encoders) and verbaliser log-likelihood
(decoders, length-normalised and constrained to the label set)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from tuneforge.prompting.templates import PromptSpec

Embed = Callable[[list[str]], torch.Tensor]


def description_scores(texts: Sequence[str], labels: Sequence[str], spec: PromptSpec, embed: Embed) -> torch.Tensor:
    """(N, L) cosine similarity of each text to each label's descriptions, averaged on the unit sphere.

    >>> # description_scores(["great film"], ["neg", "pos"], spec, embed).argmax(-1)
    """
    descs = [d for lab in labels for d in spec.descriptions[lab]]
    d_emb = F.normalize(embed(descs).float(), dim=-1)  # (D, H)
    centroids, s = [], 0
    for lab in labels:  # one centroid per label: the mean of its descriptions' unit vectors
        n = len(spec.descriptions[lab])
        centroids.append(F.normalize(d_emb[s:s + n].mean(0), dim=-1))
        s += n
    t_emb = F.normalize(embed(list(texts)).float(), dim=-1)  # (N, H)
    return t_emb @ torch.stack(centroids).T  # (N, L)


# ---------------------------------------------------------------- decoders: verbaliser log-likelihood
def candidate_ids(tokenizer: Any, spec: PromptSpec, labels: Sequence[str]) -> tuple[list[list[int]], list[int]]:
    """Token ids of every verbaliser word as a complete answer (the word plus the chat template's end-of-turn
    marker, so "positive" cannot score as the start of "positively"), and the label index of each."""
    from tuneforge.tasks.classification_generative.data import answer_token_ids

    words = [(w, i) for i, lab in enumerate(labels) for w in spec.verbaliser[lab]]
    return answer_token_ids(tokenizer, [w for w, _ in words]), [i for _, i in words]


def continuation_logprobs(model: torch.nn.Module, prompts: Sequence[list[int]], candidates: Sequence[list[int]],
                          pad_id: int, normalise: bool = True, batch_size: int = 16) -> torch.Tensor:
    """(N, C) log p(candidate | prompt): summed over the candidate's tokens, or their mean with ``normalise``
    (so a label word cut into more tokens is not penalised for its length).

    The tokens every prompt shares (system prompt, instruction, a shared set of demonstrations) run once; each
    prompt's own tokens run once per batch, and each candidate continues from that cache, so scoring costs about
    one forward pass over the distinct tokens, however many labels there are.
    """
    from tuneforge.tasks.generation.head import unwrap_lm

    lm = unwrap_lm(model)
    shared = _common_prefix(prompts)[:min(len(p) for p in prompts) - 1]  # each prompt keeps >= 1 token of its own
    out = torch.zeros(len(prompts), len(candidates))
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    device = next(lm.parameters()).device
    with torch.inference_mode():
        base = None
        if shared:
            base = lm.get_decoder()(input_ids=torch.tensor([shared], device=device), use_cache=True).cache
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            out[idx] = _score_batch(lm, base, len(shared), [prompts[i][len(shared):] for i in idx], candidates,
                                    pad_id, normalise)
    return out


def _common_prefix(seqs: Sequence[list[int]]) -> list[int]:
    first = seqs[0]
    n = len(first)
    for seq in seqs[1:]:
        n = min(n, len(seq))
        while n and seq[:n] != first[:n]:
            n -= 1
    return list(first[:n])


def _expand(cache: Any, rows: int) -> Any:
    import copy

    if cache is None:
        return None
    cache = copy.deepcopy(cache)
    cache.batch_repeat_interleave(rows)
    return cache


def _score_batch(lm: Any, base: Any, shared: int, suffixes: list[list[int]], candidates: Sequence[list[int]],
                 pad_id: int, normalise: bool) -> torch.Tensor:
    """(B, C) scores of one batch of prompts: their own tokens after the shared cache, then each candidate."""
    device = next(lm.parameters()).device
    rows, width = len(suffixes), max(map(len, suffixes))
    lens = torch.tensor([len(x) for x in suffixes], device=device)
    ids = torch.full((rows, width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((rows, shared + width), dtype=torch.long, device=device)
    mask[:, :shared] = 1
    for r, x in enumerate(suffixes):  # right padding: pads sit after each prompt, masked out
        ids[r, :len(x)] = torch.tensor(x)
        mask[r, shared:shared + len(x)] = 1
    pos = shared + torch.arange(width, device=device).expand(rows, width)
    h = lm.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=pos,
                         cache=_expand(base, rows), use_cache=True)
    head = lm.get_output_embeddings()
    last = h.last_hidden_state[torch.arange(rows, device=device), lens - 1]  # (B, H): predicts the answer's start
    first = torch.log_softmax(head(last).float(), -1)  # (B, V)
    out = torch.zeros(rows, len(candidates))
    for j, cand in enumerate(candidates):
        score = first[:, cand[0]]
        if len(cand) > 1:  # the rest of the candidate continues from each prompt's cache
            n = len(cand) - 1
            cid = torch.tensor(cand[:-1], device=device).expand(rows, n)
            pos2 = (shared + lens)[:, None] + torch.arange(n, device=device)
            mask2 = torch.cat([mask, torch.ones((rows, n), dtype=torch.long, device=device)], 1)
            h2 = lm.get_decoder()(input_ids=cid, attention_mask=mask2, position_ids=pos2,
                                  cache=_expand(h.cache, 1), use_cache=True).last_hidden_state
            logp = torch.log_softmax(head(h2).float(), -1)  # (B, n, V)
            target = torch.tensor(cand[1:], device=device).expand(rows, n)
            score = score + logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).sum(-1)
        out[:, j] = (score / len(cand) if normalise else score).cpu()
    return out


def label_scores(word_scores: torch.Tensor, word_label: Sequence[int], num_labels: int) -> torch.Tensor:
    """(N, W) scores of the verbaliser words → (N, L): each label takes its best word.

    >>> label_scores(torch.tensor([[-1.0, -3.0, -2.0]]), [0, 0, 1], 2)
    tensor([[-1., -2.]])
    """
    out = torch.full((word_scores.shape[0], num_labels), float("-inf"))
    for w, lab in enumerate(word_label):
        out[:, lab] = torch.maximum(out[:, lab], word_scores[:, w])
    return out


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The chat-templated prompt, ending with the assistant header the answer follows."""
    from tuneforge.tasks.generation.data import render

    return tokenizer(render(tokenizer, messages, generation_prompt=True), add_special_tokens=False)["input_ids"]
