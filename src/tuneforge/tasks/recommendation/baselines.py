"""Reference scorers of the recommendation task: the untuned encoder's cosine similarity and collaborative
filtering with implicit's ALS (the ``recommend`` extra), each an (N users, I items) score matrix."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch


def zero_shot_scores(embed: Callable[[list[str]], torch.Tensor], users: list[str], items: list[str]) -> np.ndarray:
    """Cosine similarity of each user text with each item text, both embedded by ``embed``."""
    u = torch.nn.functional.normalize(embed(users).float(), dim=-1).numpy()
    i = torch.nn.functional.normalize(embed(items).float(), dim=-1).numpy()
    return u @ i.T  # (N, I)


def interaction_matrix(known: dict[str, list[str]], users: Sequence[str], index: dict[str, int]) -> Any:
    """(users, items) CSR matrix of ones: one row per user of ``users``, in that order."""
    from scipy.sparse import csr_matrix

    rows, cols = [], []
    for r, user in enumerate(users):
        for item in set(known.get(user, ())):
            rows.append(r)
            cols.append(index[item])
    data = np.ones(len(rows), dtype=np.float32)
    return csr_matrix((data, (rows, cols)), shape=(len(users), len(index)))


def als_scores(known: dict[str, list[str]], test_users: Sequence[str], catalogue: Any, opts: Any,
               seed: int) -> np.ndarray:
    """ALS (implicit's ``AlternatingLeastSquares``) fit on every user's interactions before their test items;
    scores = user factors · item factors for the test users. Items nobody touched keep near-zero factors."""
    try:
        from implicit.als import AlternatingLeastSquares
    except ImportError:
        raise ImportError("baseline als needs the implicit package: pip install 'tuneforge[recommend]'") from None
    users = sorted(known)
    row = {u: i for i, u in enumerate(users)}
    matrix = interaction_matrix(known, users, catalogue.index)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):  # implicit parallelises itself; a BLAS pool inside each thread oversubscribes
        model = AlternatingLeastSquares(factors=opts.als_factors, regularization=opts.als_regularization,
                                        iterations=opts.als_iterations, random_state=seed,
                                        num_threads=torch.get_num_threads())
        model.fit(matrix, show_progress=False)
    user_f, item_f = _numpy(model.user_factors), _numpy(model.item_factors)
    return user_f[[row[u] for u in test_users]] @ item_f.T  # (N, I)


def _numpy(x: Any) -> np.ndarray:
    return x.to_numpy() if hasattr(x, "to_numpy") else np.asarray(x)
