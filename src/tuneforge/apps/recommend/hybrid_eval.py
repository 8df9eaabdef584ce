"""Scoring the hybrid ranker on a finished recommendation run: fit on the validation users, compare with the text
model alone on the test users (same full-ranking protocol and intervals); written to ``recommend/hybrid.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.evaluation.evaluate import predict_features
from tuneforge.io_utils import atomic_write_json
from tuneforge.tasks.recommendation import hybrid as hy
from tuneforge.tasks.recommendation.metrics import ranking_metrics


def evaluate_hybrid(run_dir: str | Path, top_n: int = 100) -> dict[str, Any]:
    """Text model vs hybrid on ``run_dir``'s test split. The ranker learns from the validation users whose target
    is in the text model's top ``top_n`` (that target against the rest of the list); at test time it re-orders
    the text model's top ``top_n``."""
    from tuneforge.run import open_run, prepare

    loaded = open_run(run_dir)
    prepared = prepare(loaded.cfg, encode=False)  # the same split, counts and times as in training
    task, model = prepared.task, loaded.model
    index = task.catalogue.index
    items = task.item_matrix(model)
    genres = hy.genre_sets(task.catalogue)
    k, length = task.opts.top_k, task.opts.history_length

    def user_scores(split: str) -> tuple[list[dict[str, Any]], np.ndarray]:
        examples = prepared.splits[split]
        feats = [task.encode(ex) for ex in examples]
        users = np.asarray(predict_features(model, task, feats, loaded.cfg.eval.batch_size), dtype=np.float32)
        return examples, users @ items.T  # (N, I)

    def candidate_features(ex: dict[str, Any], text: np.ndarray, split: str, n: int) -> tuple[list[int], np.ndarray]:
        seen = [index[i] for i in ex["seen"]]
        top = hy.candidates(text, seen, n)
        now = task.user_time[ex["user"]][split]
        history = [index[i] for i in ex["history"][-length:]]
        return top, hy.features(text, top, task.counts, task.last_seen, now, history, genres)

    val, val_scores = user_scores("validation")
    ranker, fitted_users = hy.fit_on_listed_targets(
        [candidate_features(ex, text, "validation", top_n) for ex, text in zip(val, val_scores)],
        [{index[t] for t in ex["targets"]} for ex in val], task.seed)

    test, test_scores = user_scores("test")
    text_rank, hybrid_rank = [], []
    for ex, text in zip(test, test_scores):
        seen = [index[i] for i in ex["seen"]]
        targets = [index[t] for t in ex["targets"]]
        top, x = candidate_features(ex, text, "test", top_n)
        text_rank.append(task.rank(text[None, :], [ex])[0])
        hybrid_rank.append(hy.rerank(text, top, ranker.decision_function(x), targets, seen, k))
    cold = [all(task.counts[index[t]] <= task.opts.cold_start_max for t in ex["targets"]) for ex in test]
    coef = ranker[-1].coef_[0].tolist()
    out = {"text": ranking_metrics(text_rank, len(task.catalogue), k, cold, task.opts.bootstrap, task.seed),
           "hybrid": ranking_metrics(hybrid_rank, len(task.catalogue), k, cold, task.opts.bootstrap, task.seed),
           "ranker": {"features": list(hy.FEATURES), "standardised_coefficients": [round(c, 4) for c in coef],
                      "fit_on": f"{fitted_users} validation users with their target in the text model's top {top_n}",
                      "reranks_top": top_n}}
    folder = Path(run_dir) / "recommend"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "hybrid.json", out)
    return out
