"""The item index: every catalogue item's embedding in one (I, H) float32 matrix; retrieval is one matrix-vector
product and a partial sort.

Exact search with numpy rather than FAISS: MovieLens' 9,742 items x 384 dims is 15 MB and one product takes about a
millisecond on a CPU core, so an approximate index would add a dependency and recall loss for no speed that matters.
The matrix is cached in the run directory, keyed by the weights file and the item texts, and read back without
pickle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tuneforge.io_utils import atomic_write_json

FOLDER = "recommend"


class ItemIndex:
    """Unit-length item embeddings and their ids.

    >>> idx = ItemIndex(np.eye(3, dtype=np.float32), ["a", "b", "c"]); idx.top_k(np.array([0, 1, 0.5]), 2)
    ([1, 2], [1.0, 0.5])
    """

    def __init__(self, matrix: np.ndarray, ids: Sequence[str]):
        if matrix.ndim != 2 or matrix.shape[0] != len(ids):
            raise ValueError(f"the index has {matrix.shape[0]} rows for {len(ids)} item ids")
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self.ids = list(ids)

    def scores(self, vector: np.ndarray) -> np.ndarray:
        return self.matrix @ np.asarray(vector, dtype=np.float32)  # (I,)

    def top_k(self, vector: np.ndarray, k: int, exclude: Sequence[int] = ()) -> tuple[list[int], list[float]]:
        """The ``k`` best rows for ``vector`` (highest cosine first; ties by row), never one of ``exclude``."""
        s = self.scores(vector)
        if len(exclude):
            s[list(exclude)] = -np.inf
        k = min(k, int(np.isfinite(s).sum()))
        if k <= 0:
            return [], []
        part = np.argpartition(-s, k - 1)[:k]
        part = part[np.lexsort((part, -s[part]))]
        return part.tolist(), [float(s[i]) for i in part]


def fingerprint(weights: Path, texts: Sequence[str]) -> str:
    """What the cached matrix depends on: the weights file's bytes and every item text."""
    h = hashlib.sha256()
    with weights.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()


def load_cached(run_dir: Path, key: str, n_items: int) -> np.ndarray | None:
    meta, path = run_dir / FOLDER / "item_index.json", run_dir / FOLDER / "item_index.npy"
    if not (meta.is_file() and path.is_file()):
        return None
    try:
        if json.loads(meta.read_text()).get("fingerprint") != key:
            return None
        matrix = np.load(path, allow_pickle=False)
    except (ValueError, OSError):
        return None
    return matrix if matrix.ndim == 2 and matrix.shape[0] == n_items else None


def save_cached(run_dir: Path, key: str, matrix: np.ndarray) -> None:
    folder = run_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "item_index.tmp.npy"
    np.save(tmp, matrix.astype(np.float32), allow_pickle=False)
    tmp.replace(folder / "item_index.npy")
    atomic_write_json(folder / "item_index.json", {"fingerprint": key, "items": int(matrix.shape[0]),
                                                   "dim": int(matrix.shape[1])})
