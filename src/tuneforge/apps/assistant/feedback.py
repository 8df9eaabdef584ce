"""The feedback log: one JSON line per judged reply, written and fsynced before the call returns, so a killed
server loses nothing it acknowledged; a later training run reads the corrected rows as extra data."""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any


class FeedbackLog:
    """Append-only JSONL. Each record is one ``write`` of one line on an ``O_APPEND`` descriptor, then ``fsync``:
    a record is on disk when ``append`` returns, and concurrent writers never interleave inside a line.

    >>> # log = FeedbackLog("runs/assistant/feedback.jsonl"); log.append({"id": "r1", "correct": False})
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self.path.stat().st_size and not self._ends_with_newline():
            os.write(self._fd, b"\n")  # a torn last line (a crash inside write) stays alone on its line

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        row = {"time": round(time.time(), 3), **record}
        data = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            written = os.write(self._fd, data)
            if written != len(data):  # regular files write whole buffers; anything else is a full disk
                raise OSError(f"{self.path}: short write ({written} of {len(data)} bytes)")
            os.fsync(self._fd)
        return row

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def read_feedback(path: str | Path) -> list[dict[str, Any]]:
    """Every complete record. A torn line (a crash inside a write, before it was acknowledged) is skipped with a
    warning naming its file and line, never silently."""
    rows = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            warnings.warn(f"{path}:{i}: skipped an unreadable feedback record ({e.msg})", stacklevel=2)
    return rows


def training_rows(path: str | Path, text_column: str = "text", label_column: str = "label") -> list[dict[str, str]]:
    """The corrected replies as training rows (``text_column``, ``label_column``): replies marked wrong with the
    right intent given. The latest judgement of a reply wins."""
    latest: dict[str, dict[str, Any]] = {}
    for row in read_feedback(path):
        latest[row.get("reply_id") or row.get("text", "")] = row
    return [{text_column: r["text"], label_column: r["correct_intent"]} for r in latest.values()
            if r.get("correct_intent") and r.get("text")]
