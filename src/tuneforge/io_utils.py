"""Atomic file and folder writes (temp + fsync + rename) and small JSON helpers: no half-written file is left behind."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path next to ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        fsync_path(tmp)  # the data reaches the disk before the name does: a crash never leaves an empty file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def fsync_path(path: str | Path) -> None:
    """Flush a file's or folder's contents to disk (a folder's fsync makes the names in it durable)."""
    if os.name == "nt" and Path(path).is_dir():  # Windows cannot open a folder for fsync
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | Path) -> None:
    """fsync every file under ``folder``, then the folders themselves, deepest first."""
    folders = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            fsync_path(Path(root) / name)
        folders.append(Path(root))
    for d in reversed(folders):
        fsync_path(d)


@contextmanager
def atomic_dir(path: str | Path):
    """Yield an empty temp folder next to ``path``; when the block succeeds, fsync it and swap it in whole.

    An existing ``path`` is never half-replaced: it is renamed aside (``.NAME.old-*``), the new folder renamed in,
    and only then the old one deleted. A kill between the two renames leaves the old folder aside, which
    ``clean_temp_dirs`` puts back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        fsync_tree(tmp)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(src: Path, dst: Path) -> None:
    """Rename folder ``src`` to ``dst``, replacing any ``dst`` without a moment where a half folder is visible."""
    if not dst.exists():
        os.replace(src, dst)  # renaming onto an absent name is atomic
        fsync_path(dst.parent)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
    os.replace(dst, aside / dst.name)
    os.replace(src, dst)
    fsync_path(dst.parent)
    shutil.rmtree(aside, ignore_errors=True)


def remove_dir(path: Path) -> None:
    """Delete a folder so that an interrupted delete never leaves a partial folder under its own name."""
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    os.replace(path, aside / path.name)
    fsync_path(path.parent)
    shutil.rmtree(aside, ignore_errors=True)


# ``.NAME.XXXX`` (a folder being written) and ``.NAME.old-XXXX/NAME`` (a folder set aside): mkdtemp's suffixes
# never contain "-", so the two cannot be confused
_TEMP = re.compile(r"^\.(?P<name>.+?)\.(?P<old>old-)?[A-Za-z0-9_]+$")


def clean_temp_dirs(parent: str | Path, names: re.Pattern[str]) -> list[str]:
    """Remove the temp folders ``atomic_dir``/``remove_dir`` left in ``parent`` when a process was killed, for
    targets whose name matches ``names``; a target that was set aside and never replaced is put back first.
    Returns one line per action."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    done = []
    for entry in sorted(parent.iterdir()):
        m = _TEMP.match(entry.name)
        if not (m and entry.is_dir() and names.fullmatch(m["name"])):
            continue
        target, kept = parent / m["name"], entry / m["name"]
        if m["old"] and not target.exists() and kept.is_dir():
            os.replace(kept, target)
            fsync_path(parent)
            done.append(f"restored {target} (a replacement was interrupted)")
        shutil.rmtree(entry, ignore_errors=True)
        done.append(f"removed {entry.name} (left by an interrupted write)")
    return done


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")


def emit_jsonl(rows: Iterable[dict[str, Any]], output: str | Path | None = None) -> None:
    """Prediction rows as JSONL: to ``output`` (written whole, then renamed) or, without one, to stdout."""
    if output:
        atomic_write_jsonl(output, rows)
        return
    for row in rows:
        print(json.dumps(row, ensure_ascii=False, default=_json_default))


def append_jsonl(path: str | Path, row: dict[str, Any]) -> None:
    """Append one line; a line is written with a single write call so readers never see half a record."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
