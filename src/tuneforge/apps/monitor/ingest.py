"""Stream input: JSONL or CSV files read incrementally from a stored byte offset (optionally following the file
like ``tail -f``), a directory that receives new files, or stdin. Bad records name their file and line."""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SUFFIXES = (".jsonl", ".json", ".csv")


class BadRecord(ValueError):
    """A record that cannot be read; the message starts with ``file:line``."""


@dataclass(frozen=True)
class Record:
    t: float
    text: str
    source: str
    origin: str  # the file (or ``stdin``) it came from: the key of its stored offset
    end: int  # byte offset just after this record's line


@dataclass(frozen=True)
class Skipped:
    """A bad record that was skipped (``input.skip_bad``); its offset still advances."""

    origin: str
    end: int
    reason: str


FLUSH = "flush"  # no new input for now: commit what is pending


def parse_time(value: Any) -> float:
    """Unix seconds from a number or an ISO 8601 string (a time without zone is taken as UTC).

    >>> parse_time("2026-01-02T00:00:00Z")
    1767312000.0
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip():
        v = value.strip()
        try:
            return float(v)
        except ValueError:
            pass
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
    raise ValueError(f"not a time: {value!r}")


@dataclass(frozen=True)
class Fields:
    time: str = "time"
    text: str = "text"
    source: str = "source"


def to_record(row: Any, fields: Fields, where: str, origin: str, end: int) -> Record:
    if not isinstance(row, dict):
        raise BadRecord(f"{where}: expected an object with {fields.time!r} and {fields.text!r}")
    try:
        t = parse_time(row.get(fields.time))
    except ValueError as e:
        raise BadRecord(f"{where}: field {fields.time!r}: {e}") from None
    text = row.get(fields.text)
    if not isinstance(text, str) or not text.strip():
        raise BadRecord(f"{where}: field {fields.text!r}: missing or empty text")
    source = row.get(fields.source) or ""
    return Record(t, text.strip(), str(source), origin, end)


def _format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if path.suffix.lower() == ".csv":
        return "csv"
    return "jsonl"


def read_file(path: Path, start: int, fields: Fields, fmt: str = "auto", follow: bool = False,
              skip_bad: bool = False, poll: float = 1.0, stop: Callable[[], bool] = lambda: False,
              origin: str | None = None) -> Iterator[Record | Skipped | str]:
    """Records of ``path`` from byte ``start``. A final line without a newline is read only when not following
    (while following it may still be being written). With ``follow`` it yields ``FLUSH`` whenever it waits."""
    fmt, origin = _format(path, fmt), origin or str(path)
    with open(path, "rb") as fh:
        header: list[str] | None = None
        if fmt == "csv":
            first = fh.readline()
            header = next(csv.reader([first.decode("utf-8-sig")]), None)
            if not header:
                raise BadRecord(f"{path}:1: a CSV stream needs a header line")
            start = max(start, len(first))
        fh.seek(0)
        line_no = fh.read(start).count(b"\n")  # so errors after a resume still name the right line
        pos = start
        while True:
            raw = fh.readline()
            if not raw or (follow and not raw.endswith(b"\n")):
                if not follow or stop():
                    return
                fh.seek(pos)
                yield FLUSH
                time.sleep(poll)
                continue
            pos += len(raw)
            line_no += 1
            if not raw.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                yield to_record(_parse(raw, header, where), fields, where, origin, pos)
            except BadRecord as e:
                if not skip_bad:
                    raise
                yield Skipped(origin, pos, str(e))


def _parse(raw: bytes, header: list[str] | None, where: str) -> Any:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRecord(f"{where}: not UTF-8 ({e.reason} at byte {e.start})") from None
    if header is None:
        try:
            return json.loads(line)
        except json.JSONDecodeError as e:
            raise BadRecord(f"{where}: invalid JSON ({e.msg}, column {e.colno})") from None
    cells = next(csv.reader(io.StringIO(line)), [])
    if len(cells) != len(header):
        raise BadRecord(f"{where}: {len(cells)} CSV cells, the header has {len(header)} (a quoted field spanning "
                        "lines is not supported in a stream)")
    return dict(zip(header, cells))


def read_directory(folder: Path, offsets: dict[str, int], fields: Fields, fmt: str = "auto", follow: bool = False,
                   skip_bad: bool = False, poll: float = 1.0,
                   stop: Callable[[], bool] = lambda: False) -> Iterator[Record | Skipped | str]:
    """Files of ``folder`` in name order, each from its stored offset; with ``follow``, new files as they arrive
    (a file is taken as complete once a later-named file exists, or when not following)."""
    while True:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and not p.name.startswith("."))
        for i, path in enumerate(files):
            done = offsets.get(str(path), 0)
            if done and done >= path.stat().st_size:
                continue
            # the newest file's unterminated last line may still be being written: read up to it (follow mode
            # stops at a line without its newline; stop=True ends the read there instead of waiting)
            open_tail = follow and i == len(files) - 1 and not _ends_with_newline(path)
            for item in read_file(path, done, fields, fmt, follow=open_tail, skip_bad=skip_bad, stop=lambda: True):
                yield item
                if not isinstance(item, str):
                    offsets[str(path)] = item.end
        if not follow or stop():
            return
        yield FLUSH
        time.sleep(poll)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        if not fh.tell():
            return True
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"


def read_stdin(fields: Fields, fmt: str = "jsonl", skip_bad: bool = False) -> Iterator[Record | Skipped | str]:
    """Records from standard input (no stored offset: stdin cannot be rewound)."""
    header = None
    pos = 0
    for line_no, line in enumerate(sys.stdin.buffer, 1):
        pos += len(line)
        if fmt == "csv" and header is None:
            header = next(csv.reader([line.decode("utf-8-sig")]))
            continue
        if not line.strip():
            continue
        where = f"<stdin>:{line_no}"
        try:
            yield to_record(_parse(line, header, where), fields, where, "stdin", pos)
        except BadRecord as e:
            if not skip_bad:
                raise
            yield Skipped("stdin", pos, str(e))
