"""The monitor's SQLite database: window aggregates, kept texts, input offsets, dedup state and alerts. Each batch
is one transaction, so a restart resumes from the stored offsets and a kill loses nothing that was committed."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

LABELS = ("negative", "neutral", "positive")
ALL = "all"  # the overall series, stored next to the per-topic ones

SCHEMA = """
CREATE TABLE IF NOT EXISTS offsets (source TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS windows (
  width INTEGER, start INTEGER, topic TEXT, n INTEGER, neg INTEGER, neu INTEGER, pos INTEGER,
  wneg REAL, wneu REAL, wpos REAL, last_t REAL, PRIMARY KEY (width, start, topic));
CREATE TABLE IF NOT EXISTS texts (t REAL, topic TEXT, label TEXT, p_neg REAL, p_pos REAL, source TEXT, text TEXT);
CREATE INDEX IF NOT EXISTS texts_topic_t ON texts (topic, t);
CREATE TABLE IF NOT EXISTS seen (t REAL, key TEXT, sig BLOB);
CREATE TABLE IF NOT EXISTS alerts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, width INTEGER, start INTEGER, topic TEXT, detector TEXT,
  statistic REAL, detail TEXT, at REAL, examples TEXT, UNIQUE (width, start, topic, detector));
"""


class Store:
    """A thin layer over one SQLite file (WAL journal: readers such as ``report`` never block the writer)."""

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), isolation_level=None)  # explicit BEGIN/COMMIT per batch
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")  # a committed batch survives power loss, not only a kill
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    # input positions and counters
    def offset(self, source: str) -> int:
        row = self.conn.execute("SELECT position FROM offsets WHERE source = ?", (source,)).fetchone()
        return row[0] if row else 0

    def offsets(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT source, position FROM offsets"))

    def set_offset(self, source: str, position: int) -> None:
        self.conn.execute("INSERT INTO offsets VALUES (?, ?) ON CONFLICT(source) DO UPDATE SET position = ?",
                          (source, position, position))

    def bump(self, name: str, by: int = 1) -> None:
        if by:
            self.conn.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
                              (name, by, by))

    def counters(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT name, value FROM counters"))

    # aggregation
    def add(self, width: int, t: float, topic: str, label: str, probs: dict[str, float]) -> int:
        """Count one text into its window of ``width`` seconds; returns the window start."""
        start = int(t // width) * width
        hard = [int(label == k) for k in LABELS]
        soft = [float(probs.get(k, 0.0)) for k in LABELS]
        self.conn.execute(
            "INSERT INTO windows VALUES (?,?,?,1,?,?,?,?,?,?,?) ON CONFLICT(width, start, topic) DO UPDATE SET "
            "n = n + 1, neg = neg + ?, neu = neu + ?, pos = pos + ?, wneg = wneg + ?, wneu = wneu + ?, "
            "wpos = wpos + ?, last_t = max(last_t, ?)",
            (width, start, topic, *hard, *soft, t, *hard, *soft, t))
        return start

    def add_text(self, t: float, topic: str, label: str, probs: dict[str, float], source: str, text: str) -> None:
        self.conn.execute("INSERT INTO texts VALUES (?,?,?,?,?,?,?)",
                          (t, topic, label, probs.get("negative", 0.0), probs.get("positive", 0.0), source, text))

    def series(self, width: int, topic: str, end: int, length: int) -> list[dict[str, Any]]:
        """The ``length`` windows up to and including ``end``, oldest first; windows without texts have n = 0."""
        rows = self.conn.execute(
            "SELECT start, n, neg, neu, pos, wneg, wneu, wpos, last_t FROM windows WHERE width = ? AND topic = ? "
            "AND start > ? AND start <= ?", (width, topic, end - length * width, end)).fetchall()
        got = {r[0]: r for r in rows}
        out = []
        for start in range(end - (length - 1) * width, end + 1, width):
            r = got.get(start, (start, 0, 0, 0, 0, 0.0, 0.0, 0.0, None))
            out.append(dict(zip(("start", "n", "neg", "neu", "pos", "wneg", "wneu", "wpos", "last_t"), r)))
        return out

    def windows(self, width: int) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT * FROM windows WHERE width = ? ORDER BY topic, start", (width,))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur]

    def examples(self, topic: str, start: float, end: float, k: int) -> list[dict[str, Any]]:
        """The ``k`` most negative kept texts of ``topic`` (any topic for ``all``) in [start, end)."""
        where, args = ("", ()) if topic == ALL else ("AND topic = ?", (topic,))
        cur = self.conn.execute(f"SELECT t, topic, p_neg, source, text FROM texts WHERE t >= ? AND t < ? {where} "
                                "ORDER BY p_neg DESC LIMIT ?", (start, end, *args, k))
        return [dict(zip(("t", "topic", "p_negative", "source", "text"), r)) for r in cur]

    # dedup state
    def add_seen(self, t: float, key: str, sig: np.ndarray) -> None:
        self.conn.execute("INSERT INTO seen VALUES (?,?,?)", (t, key, sig.astype(np.uint64).tobytes()))

    def load_seen(self, since: float) -> Iterable[tuple[float, str, np.ndarray]]:
        self.conn.execute("DELETE FROM seen WHERE t < ?", (since,))
        for t, key, sig in self.conn.execute("SELECT t, key, sig FROM seen ORDER BY t"):
            yield t, key, np.frombuffer(sig, dtype=np.uint64)

    # alerts
    def add_alert(self, alert: dict[str, Any]) -> bool:
        """Store an alert; False when this (window, topic, detector) already fired."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO alerts (width, start, topic, detector, statistic, detail, at, examples) "
            "VALUES (?,?,?,?,?,?,?,?)", (alert["window_seconds"], alert["window_start"], alert["topic"],
                                         alert["detector"], alert["statistic"], alert["detail"], alert["at"],
                                         json.dumps(alert["examples"], ensure_ascii=False)))
        return cur.rowcount == 1

    def alerted(self, width: int, topic: str, since: int, until: int) -> set[int]:
        """Starts of the windows of ``topic`` in [since, until) with a negative-share or volume alert."""
        return {r[0] for r in self.conn.execute(
            "SELECT start FROM alerts WHERE width = ? AND topic = ? AND start >= ? AND start < ? AND detector != "
            "'reversal'", (width, topic, since, until))}

    def alerts(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT id, width, start, topic, detector, statistic, detail, at, examples "
                                "FROM alerts ORDER BY at, id")
        keys = ("id", "window_seconds", "window_start", "topic", "detector", "statistic", "detail", "at", "examples")
        return [{**dict(zip(keys, r)), "examples": json.loads(r[-1])} for r in cur]

    def top_negative(self, k: int) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT t, topic, p_neg, source, text FROM texts ORDER BY p_neg DESC, t DESC "
                                "LIMIT ?", (k,))
        return [dict(zip(("t", "topic", "p_negative", "source", "text"), r)) for r in cur]
