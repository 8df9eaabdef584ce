"""Near-duplicate detection for reposts: a normalised-text hash for exact copies, then MinHash over word shingles
with LSH bands for edited copies, over a recent time horizon."""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Iterable

import numpy as np

_URL = re.compile(r"https?://\S+|www\.\S+")
_REPOST = re.compile(r"^(rt|fwd?|repost)\s*:?\s*(@\w+:?)?\s*", re.I)
_NON_WORD = re.compile(r"[^\w]+")
_PRIME = (1 << 61) - 1


def normalise(text: str) -> str:
    """Lower case, no URLs, no repost prefix, punctuation folded to single spaces.

    >>> normalise("RT @desk: Nokia CUTS 1,000 jobs!! https://t.co/x")
    'nokia cuts 1 000 jobs'
    """
    text = _URL.sub(" ", text)
    text = _REPOST.sub("", text.strip())
    return _NON_WORD.sub(" ", text.lower()).strip()


def text_key(text: str) -> str:
    return hashlib.blake2b(normalise(text).encode(), digest_size=12).hexdigest()


def shingles(text: str, k: int) -> set[str]:
    """Word k-grams of the normalised text (the whole text when it has fewer than k words)."""
    words = normalise(text).split()
    if len(words) < k:
        return {" ".join(words)}
    return {" ".join(words[i:i + k]) for i in range(len(words) - k + 1)}


class MinHasher:
    """Signatures whose agreement rate estimates the Jaccard similarity of two shingle sets.
    Written here (numpy, ~20 lines) rather than adding a dependency for one function."""

    def __init__(self, num_perm: int, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, _PRIME, num_perm, dtype=np.uint64)
        self.b = rng.integers(0, _PRIME, num_perm, dtype=np.uint64)

    def signature(self, items: Iterable[str]) -> np.ndarray:
        h = np.array([int.from_bytes(hashlib.blake2b(s.encode(), digest_size=4).digest(), "little")
                      for s in items], dtype=np.uint64)  # 32-bit hashes: a*h stays under 2**64 for a < 2**32
        a = self.a % (1 << 32)
        return ((np.outer(h, a) + self.b) % _PRIME).min(axis=0)


def jaccard_estimate(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


class Deduplicator:
    """``seen(text, t)`` is True when an exact or near copy arrived within ``horizon`` seconds before ``t``.

    >>> d = Deduplicator(horizon=3600); d.seen("Nokia cuts 1,000 jobs in Finland", 0)
    False
    >>> d.seen("RT: Nokia cuts 1,000 jobs in Finland!", 60)
    True
    """

    def __init__(self, horizon: int, threshold: float = 0.8, shingle: int = 3, num_perm: int = 64):
        self.horizon, self.threshold, self.k = horizon, threshold, shingle
        self.hasher = MinHasher(num_perm)
        self.rows = max(1, num_perm // 16)  # 16 bands: pairs from ~0.5 similarity up become candidates
        self.recent: deque[tuple[float, str, np.ndarray]] = deque()
        self.keys: dict[str, int] = {}
        self.bands: dict[tuple[int, bytes], list[np.ndarray]] = {}
        self.added: list[tuple[float, str, np.ndarray]] = []  # new entries since the owner last stored them

    def _band_keys(self, sig: np.ndarray) -> list[tuple[int, bytes]]:
        return [(i, sig[i:i + self.rows].tobytes()) for i in range(0, len(sig), self.rows)]

    def _expire(self, t: float) -> None:
        while self.recent and self.recent[0][0] < t - self.horizon:
            _, key, sig = self.recent.popleft()
            self.keys[key] -= 1
            if not self.keys[key]:
                del self.keys[key]
            for bk in self._band_keys(sig):
                bucket = self.bands.get(bk, [])
                bucket[:] = [s for s in bucket if s is not sig]
                if not bucket:
                    self.bands.pop(bk, None)

    def seen(self, text: str, t: float) -> bool:
        self._expire(t)
        key = text_key(text)
        if key in self.keys:
            return True
        sig = self.hasher.signature(shingles(text, self.k))
        cands = {id(s): s for bk in self._band_keys(sig) for s in self.bands.get(bk, ())}
        if any(jaccard_estimate(sig, s) >= self.threshold for s in cands.values()):
            return True
        self.add(t, key, sig)
        return False

    def add(self, t: float, key: str, sig: np.ndarray, new: bool = True) -> None:
        if new:
            self.added.append((t, key, sig))
        self.recent.append((t, key, sig))
        self.keys[key] = self.keys.get(key, 0) + 1
        for bk in self._band_keys(sig):
            self.bands.setdefault(bk, []).append(sig)
