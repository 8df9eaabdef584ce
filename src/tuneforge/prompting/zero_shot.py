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
                          pad_id: int, normalise: bool = True, rows_per_batch: int = 32) -> torch.Tensor:
    """(N, C) log p(candidate | prompt): summed over the candidate's tokens, or their mean with ``normalise``
    (so a label word cut into more tokens is not penalised for its length).

    Every (prompt, candidate) pair is one right-padded row; the vocabulary projection runs only at candidate
    positions (``answer_nll``).
    """
    from tuneforge.tasks.generation.data import IGNORE
    from tuneforge.tasks.generation.head import answer_nll

    pairs = [(p, c) for p in prompts for c in candidates]
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    out = torch.zeros(len(pairs))
    device = next(model.parameters()).device
    with torch.inference_mode():
        for s in range(0, len(order), rows_per_batch):
            idx = order[s:s + rows_per_batch]
            width = max(len(pairs[i][0]) + len(pairs[i][1]) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            targets = torch.full((len(idx), width), IGNORE, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                p, c = pairs[i]
                ids[r, :len(p) + len(c)] = torch.tensor(p + c)
                targets[r, len(p):len(p) + len(c)] = torch.tensor(c)
                mask[r, :len(p) + len(c)] = 1
            nll, keep = answer_nll(model, ids.to(device), mask.to(device), targets.to(device))
            dense = torch.zeros(keep.shape, device=nll.device)  # (rows, T-1)
            dense[keep] = -nll.float()
            total = dense.sum(-1).cpu()
            if normalise:
                total = total / keep.sum(-1).clamp(min=1).cpu()
            out[idx] = total
    return out.view(len(prompts), len(candidates))


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
