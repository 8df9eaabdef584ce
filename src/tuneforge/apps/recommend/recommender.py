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
                  influences: int = 3, exclude_seen: bool = True) -> dict[str, Any]:
        """Top-``k`` items for ``user`` (their logged history) and/or ``liked`` (more item ids, oldest first).

        Each item carries its cosine score and the ``influences`` history items most similar to it (item-side
        embeddings): the ones that pulled it up the ranking.
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
        top, scores = self.index.top_k(self.user_vector(history), k, rows if exclude_seen else ())
        recent = rows[-self.task.opts.history_length:]  # what the user's text holds
        sims = self.index.matrix[top] @ self.index.matrix[recent].T if top else np.zeros((0, 0))  # (k, H')
        items = []
        for j, (row, score) in enumerate(zip(top, scores)):
            best = np.argsort(-sims[j], kind="stable")[:influences]
            items.append({"item": self.catalogue.ids[row], "title": self._title(row), "score": round(score, 5),
                          "because": [{"item": self.catalogue.ids[recent[b]], "title": self._title(recent[b]),
                                       "similarity": round(float(sims[j, b]), 5)} for b in best]})
        return {"user": user, "history_size": len(history), "items": items,
                "latency_ms": round(1000 * (time.perf_counter() - start), 2)}

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
