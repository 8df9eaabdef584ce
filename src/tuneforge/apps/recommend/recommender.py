"""``Recommender``: top-K items for a user of the log (their whole history) or a new user (item ids they liked),
scored by the tuned bi-encoder, each with the history items closest to it (what most influenced it)."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuneforge.apps.recommend.index import ItemIndex, fingerprint, load_cached, save_cached
from tuneforge.tasks.recommendation import data as rdata
from tuneforge.tasks.recommendation.cross_encoder import RERANKERS, CrossReranker, reorder_top

MAX_K = 100


class Recommender:
    """>>> # rec = Recommender.from_run_dir("runs/movielens_minilm"); rec.recommend(user="1", k=5)["items"][0]"""

    def __init__(self, task: Any, model: torch.nn.Module, history: dict[str, list[str]], run_dir: Path | None = None,
                 weights: Path | None = None):
        self.task, self.model = task, model.eval()
        self.catalogue = task.catalogue
        self.history = history
        texts = [self.catalogue.text(i, task.opts.item_template) for i in self.catalogue.ids]
        key = fingerprint(weights, texts) if weights is not None and weights.is_file() else None
        matrix = load_cached(run_dir, key, len(texts)) if run_dir is not None and key else None
        if matrix is None:
            matrix = task.item_matrix(model)
            if run_dir is not None and key:
                save_cached(run_dir, key, matrix)
        self.index = ItemIndex(matrix, self.catalogue.ids)
        # a fitted cross-encoder is loaded when there is one; recommend.rerank says whether replies use it by default
        self.reranker: CrossReranker | None = None
        self.rerank_default = RERANKERS.get(task.opts.rerank) is not None and task.opts.rerank == "cross_encoder"
        folder = run_dir / "recommend" / "cross_encoder" if run_dir is not None else None
        if folder is not None and (folder.is_dir() or self.rerank_default):
            self.reranker = CrossReranker.load(folder)
        elif self.rerank_default:
            raise ValueError("recommend.rerank cross_encoder needs the run directory that holds it")

    @classmethod
    def from_run_dir(cls, run_dir: str | Path) -> Recommender:
        from tuneforge.run import open_run

        loaded = open_run(run_dir)
        return cls.from_loaded(loaded.task, loaded.model, loaded.cfg, loaded.run_dir, loaded.weights)

    @classmethod
    def from_predictor(cls, predictor: Any) -> Recommender:
        from tuneforge.run import weights_folder

        task = getattr(predictor.task, "task", predictor.task)  # under a calibration wrapper, the task itself
        run_dir = Path(predictor.run_dir) if predictor.run_dir is not None else None
        weights = weights_folder(run_dir) if run_dir is not None else None
        return cls.from_loaded(task, predictor.model, predictor.cfg, run_dir, weights)

    @classmethod
    def from_loaded(cls, task: Any, model: torch.nn.Module, cfg: Any, run_dir: Path | None,
                    weights: Path | None) -> Recommender:
        return cls(task, model, read_histories(cfg, task.catalogue), run_dir,
                   weights / "model.safetensors" if weights is not None else None)

    def user_vector(self, history: list[str]) -> np.ndarray:
        feature = self.task.encode({"history": history})
        batch = self.task.collate([feature])
        with torch.inference_mode():
            out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return out["user"][0].float().numpy()

    def recommend(self, user: str | None = None, liked: list[str] | None = None, k: int = 10,
                  influences: int = 3, exclude_seen: bool = True, rerank: bool | None = None) -> dict[str, Any]:
        """Top-``k`` items for ``user`` (their logged history) and/or ``liked`` (more item ids, oldest first).

        Each item carries its cosine score and the ``influences`` history items most similar to it (item-side
        embeddings): the ones that pulled it up the ranking. ``rerank`` (default: on when the run's
        recommend.rerank names one) re-orders the bi-encoder's top recommend.rerank_k by the cross-encoder; each
        item then also carries its ``rerank_score``.
        """
        start = time.perf_counter()
        if not 1 <= k <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K}, not {k}")
        history: list[str] = []
        if user is not None:
            if user not in self.history:
                raise KeyError(f"unknown user {user!r}: not in the interaction log; give the items they liked "
                               "instead (--liked / \"liked\")")
            history = list(self.history[user])
        unknown = [i for i in liked or [] if i not in self.catalogue.index]
        if unknown:
            raise ValueError(f"unknown item ids {unknown[:5]}: not in the item table")
        history += [i for i in liked or [] if i not in set(history)]
        if not history:
            raise ValueError("give a user of the log or at least one liked item id")
        rows = [self.catalogue.index[i] for i in history]
        use = self.rerank_default if rerank is None else rerank
        if use and self.reranker is None:
            raise ValueError("this run serves no re-ranker: set recommend.rerank: cross_encoder after "
                             "`tuneforge recommend RUN --fit-reranker`")
        n = max(k, self.task.opts.rerank_k) if use else k
        top, scores = self.index.top_k(self.user_vector(history), n, rows if exclude_seen else ())
        extra: list[float | None] = [None] * len(top)
        if use and self.reranker is not None:
            top, scores, extra = self._rerank(history, top, scores)
        top, scores, extra = top[:k], scores[:k], extra[:k]
        recent = rows[-self.task.opts.history_length:]  # what the user's text holds
        sims = self.index.matrix[top] @ self.index.matrix[recent].T if top else np.zeros((0, 0))  # (k, H')
        items = []
        for j, (row, score) in enumerate(zip(top, scores)):
            best = np.argsort(-sims[j], kind="stable")[:influences]
            items.append({"item": self.catalogue.ids[row], "title": self._title(row), "score": round(score, 5),
                          "because": [{"item": self.catalogue.ids[recent[b]], "title": self._title(recent[b]),
                                       "similarity": round(float(sims[j, b]), 5)} for b in best]})
            if extra[j] is not None:
                items[-1]["rerank_score"] = round(float(extra[j]), 5)
        return {"user": user, "history_size": len(history), "items": items, "reranked": bool(use),
                "latency_ms": round(1000 * (time.perf_counter() - start), 2)}

    def _rerank(self, history: list[str], top: list[int], scores: list[float]) -> tuple[list[int], list[float],
                                                                                       list[float | None]]:
        """The first recommend.rerank_k of ``top`` in the cross-encoder's order; the rest as retrieved."""
        assert self.reranker is not None
        head = top[:self.task.opts.rerank_k]
        texts = [self.catalogue.text(self.catalogue.ids[r], self.task.opts.item_template) for r in head]
        cross = self.reranker.score(self.task.user_text(history), texts)
        order = reorder_top(list(range(len(head))), cross.tolist())
        tail = range(len(head), len(top))
        return ([top[i] for i in order] + [top[i] for i in tail], [scores[i] for i in order] + [scores[i] for i in tail],
                [float(cross[i]) for i in order] + [None] * len(tail))

    def _title(self, row: int) -> str:
        return self.catalogue.text(self.catalogue.ids[row], self.task.opts.history_template)


def read_histories(cfg: Any, catalogue: rdata.Catalogue) -> dict[str, list[str]]:
    """Every user's items in time order from the run's interaction log (all of it: serving knows the test part)."""
    o, log = cfg.recommend, cfg.data.train
    path = log[0] if isinstance(log, list) else log
    if not path or not Path(path).is_file():
        return {}
    rows = rdata.read_interactions(path, o.user_column, o.item_id_column, o.time_column, catalogue,
                                   o.rating_column, o.min_rating, cfg.data.encoding)
    per_user: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for order, x in enumerate(rows):
        per_user[x.user].append((x.time, order, x.item))
    return {u: [r[2] for r in sorted(v)] for u, v in per_user.items()}
