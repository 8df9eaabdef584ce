"""File readers: CSV, TSV, JSON, JSONL, `text@label` lines, Parquet and Arrow → records (dicts), with errors that
name file, line, field. ``save_to_disk`` folders and hub datasets are read by ``tuneforge.data.columnar``.

Every reader raises only ``DataError`` (or reports the row to ``BadRows``), whatever the bytes; tests/unit/test_fuzz.py
holds them to that."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.registry import Registry

Record = dict[str, Any]
LOC = "_loc"  # every record carries "file:line" so later checks can name where it came from


class DataError(ValueError):
    """Malformed input. The message names the file, the line (or record) and the field."""

    def __init__(self, path: str | Path, line: int | str | None, message: str, field: str | None = None):
        self.path, self.line, self.field = str(path), line, field
        where = f"{path}:{line}" if line is not None else str(path)
        col = f" [field {field!r}]" if field else ""
        super().__init__(f"{where}{col}: {message}")


@dataclass
class BadRows:
    """Either raises on the first bad row, or (skip=True) records it so the audit can count and explain it."""

    skip: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list)

    def report(self, error: DataError) -> None:
        if not self.skip:
            raise error
        self.rows.append({"file": error.path, "line": error.line, "field": error.field, "reason": str(error)})


@dataclass
class ReadOptions:
    encoding: str = "utf-8"
    line_delimiter: str = "@"
    text_column: str = "text"
    label_column: str = "label"
    target_suffix: str | None = None  # format `parallel`: extension of the target file
    task: str | None = None  # the task the records are for: `auto` picks conll for .txt files of task ner
    columns: dict[str, str] | None = None  # data.columns: rename {name in the file: name the task reads}

    @classmethod
    def from_data(cls, data: Any, task: str | None = None) -> ReadOptions:
        """The read options of a ``data`` config section."""
        return cls(encoding=data.encoding, line_delimiter=data.line_delimiter, text_column=data.text_column,
                   label_column=data.label_column, target_suffix=data.target_suffix, task=task,
                   columns=getattr(data, "columns", None) or None)


Reader = Callable[[Path, ReadOptions, BadRows], list[Record]]
READERS: Registry[Reader] = Registry("data format")


_CONLL_SUFFIXES = ("conll", "conllu", "conll03", "iob", "iob2", "bio")
_CONLL_LINE = re.compile(r"^\S+(\s+\S+)*\s+(O|[BIES]-\S+)$")  # token ... tag


def looks_like_conll(path: Path, encoding: str = "utf-8", probe_lines: int = 50) -> bool:
    """The first non-blank lines (``-DOCSTART-`` aside) are whitespace-separated columns ending in an IOB tag."""
    try:
        with open(path, encoding=encoding, errors="replace") as fh:
            head = [line.strip() for _, line in zip(range(probe_lines * 4), fh)]
    except (OSError, LookupError):
        return False
    lines = [ln for ln in head if ln and not ln.startswith("-DOCSTART-")][:probe_lines]
    return bool(lines) and all(_CONLL_LINE.match(ln) for ln in lines)


def detect_format(path: Path, task: str | None = None, encoding: str = "utf-8") -> str:
    """The reader for ``data.format: auto``: by extension; a .txt file is CoNLL for task ner when its lines are
    ``token ... tag`` columns, else one ``text@label`` example per line."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("csv", "tsv", "json", "jsonl"):
        return suffix
    if suffix == "ndjson":
        return "jsonl"
    if suffix in _CONLL_SUFFIXES:
        return "conll"
    if suffix in ("parquet", "pq"):
        return "parquet"
    if suffix in ("arrow", "feather", "ipc"):
        return "arrow"
    if suffix == "txt":
        return "conll" if task == "ner" and looks_like_conll(path, encoding) else "lines"
    raise DataError(path, None, f"cannot tell the format from the extension {path.suffix!r}; set data.format "
                                f"(one of {', '.join(READERS.names())})")


def read_file(path: str | Path, fmt: str = "auto", opts: ReadOptions | None = None,
              bad: BadRows | None = None, role: str | None = None) -> list[Record]:
    """Read one data source into records. Each record has ``_loc`` = "file:line" (or "file:row N" for tables).

    ``path`` is a file, a ``datasets`` ``save_to_disk`` folder (``folder?split=NAME`` picks a split; else the one
    named like ``role``, the config field it is read for) or ``hf://owner/name?config=C&split=S``.
    ``opts.columns`` renames columns as they are read.

    >>> # read_file("train.csv")[0] -> {"text": "...", "label": "...", "_loc": "train.csv:2"}
    """
    from tuneforge.data.columnar import is_hub_source, read_columnar

    opts = opts or ReadOptions()
    text = str(path)
    if is_hub_source(text) or Path(text).is_dir() or ("?" in text and not Path(text).exists()):
        return rename_columns(read_columnar(text, role), opts.columns, text)
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "file not found")
    fmt = detect_format(path, opts.task, opts.encoding) if fmt == "auto" else fmt
    return rename_columns(READERS.get(fmt)(path, opts, bad or BadRows()), opts.columns, path)


def rename_columns(records: list[Record], columns: dict[str, str] | None, where: str | Path) -> list[Record]:
    """``data.columns``: {name in the file: name the task reads}, applied to every record. A record that holds
    both a renamed column and its new name is an error (which one would win is not obvious)."""
    if not columns:
        return records
    out = []
    for rec in records:
        for old, new in columns.items():
            if old in rec and old != new and new in rec and new not in columns:
                raise record_error(rec, old, f"data.columns renames {old!r} to {new!r}, but the record already "
                                             f"has a {new!r} column")
        out.append({(k if k == LOC else columns.get(k, k)): v for k, v in rec.items()})
    return out


def read_text(path: Path, encoding: str) -> str:
    """Decode a whole file; a bad byte is reported with its line number and the encoding to try."""
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except LookupError:
        raise DataError(path, None, f"unknown encoding {encoding!r}; set data.encoding (e.g. utf-8, latin-1)",
                        field="data.encoding") from None
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(path, line, f"cannot decode byte 0x{data[e.start]:02x} as {encoding}; "
                                    f"set data.encoding (e.g. latin-1)") from None
    nul = text.find("\x00")
    if nul >= 0:  # text never holds NUL: a binary file, or UTF-16 read as UTF-8
        line = text.count("\n", 0, nul) + 1
        column = nul - (text.rfind("\n", 0, nul) + 1) + 1
        raise DataError(path, line, f"NUL byte at column {column}: this is not a {encoding} text file (UTF-16? "
                                    "set data.encoding)")
    return text.lstrip("\ufeff")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def load_json(text: str) -> Any:
    """``json.loads`` whose every failure is a ``json.JSONDecodeError`` or a ``ValueError`` with a plain message
    (nesting too deep, an integer too long to convert, a lone UTF-16 surrogate that no tokenizer can encode)."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text):  # a \ud83d\ude00 pair is one character; half of one is not text
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a \\u escape holds half of a UTF-16 surrogate pair, which is not a character") from None
    return obj


def json_error(path: Path, line: int | None, e: ValueError) -> DataError:
    if isinstance(e, json.JSONDecodeError):
        return DataError(path, (line or 1) + e.lineno - 1, f"unparseable JSON (column {e.colno}): {e.msg}")
    return DataError(path, line, f"unparseable JSON: {e}")


def _read_delimited(path: Path, opts: ReadOptions, bad: BadRows, delimiter: str) -> list[Record]:
    text = read_text(path, opts.encoding)
    # The csv module's 128 KiB field limit guards streamed reads; the whole file is in memory already, so a field
    # can never be larger than it. A long text is read whole; tokenization cuts it at data.max_length and the audit
    # counts the truncation.
    previous = csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    try:
        return _delimited_rows(path, text, bad, delimiter)
    finally:
        csv.field_size_limit(previous)


def _delimited_rows(path: Path, text: str, bad: BadRows, delimiter: str) -> list[Record]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(path, 1, "empty file: no header row") from None
    except csv.Error as e:
        raise DataError(path, 1, f"unparseable header: {e}") from None
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        raise DataError(path, 1, f"duplicate column names in header {header}")
    records: list[Record] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            bad.report(DataError(path, reader.line_num, f"unparseable row: {e}"))
            continue
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue  # blank line: not a row
        if len(row) != len(header):
            bad.report(DataError(path, line, f"expected {len(header)} fields ({', '.join(header)}), found {len(row)}"))
            continue
        rec: Record = dict(zip(header, row))
        rec[LOC] = f"{path}:{line}"
        records.append(rec)
    return records


@READERS.decorator("csv")
def read_csv(path: Path, opts: ReadOptions, bad: BadRows) -> list[Record]:
    return _read_delimited(path, opts, bad, ",")


@READERS.decorator("tsv")
def read_tsv(path: Path, opts: ReadOptions, bad: BadRows) -> list[Record]:
    return _read_delimited(path, opts, bad, "\t")


@READERS.decorator("jsonl")
def read_jsonl(path: Path, opts: ReadOptions, bad: BadRows) -> list[Record]:
    records: list[Record] = []
    for i, line in enumerate(read_text(path, opts.encoding).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = load_json(line)
        except ValueError as e:
            bad.report(json_error(path, i, e))
            continue
        if not isinstance(obj, dict):
            bad.report(DataError(path, i, f"expected a JSON object, found {type(obj).__name__}"))
            continue
        obj[LOC] = f"{path}:{i}"
        records.append(obj)
    return records


@READERS.decorator("json")
def read_json(path: Path, opts: ReadOptions, bad: BadRows) -> list[Record]:
    """A JSON array of objects, or an object with one list field (``{"data": [...]}``)."""
    text = read_text(path, opts.encoding)
    try:
        obj = load_json(text)
    except ValueError as e:
        raise json_error(path, None, e) from None
    if isinstance(obj, dict):
        lists = [v for v in obj.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(path, None, "expected a JSON array of records, or an object holding exactly one list")
        obj = lists[0]
    if not isinstance(obj, list):
        raise DataError(path, None, f"expected a JSON array of records, found {type(obj).__name__}")
    records: list[Record] = []
    for i, item in enumerate(obj):
        if not isinstance(item, dict):
            bad.report(DataError(path, f"record {i}", f"expected an object, found {type(item).__name__}"))
            continue
        rec = dict(item)
        rec[LOC] = f"{path}:record {i}"
        records.append(rec)
    return records


@READERS.decorator("lines")
def read_lines(path: Path, opts: ReadOptions, bad: BadRows) -> list[Record]:
    """One example per line, ``text<delim>label`` split at the last delimiter (Financial PhraseBank style)."""
    records: list[Record] = []
    delim = opts.line_delimiter
    for i, line in enumerate(read_text(path, opts.encoding).splitlines(), start=1):
        if not line.strip():
            continue
        if delim not in line:
            bad.report(DataError(path, i, f"no {delim!r} separating text and label in {line[:60]!r}",
                                 field=opts.label_column))
            continue
        text, _, label = line.rpartition(delim)
        records.append({opts.text_column: text.strip(), opts.label_column: label.strip(), LOC: f"{path}:{i}"})
    return records


@READERS.decorator("parquet")
def read_parquet(path: Path, opts: ReadOptions, bad: BadRows) -> list[Record]:
    """A Parquet file, decoded a batch at a time (needs pyarrow)."""
    from tuneforge.data.columnar import open_parquet

    return open_parquet(path).records()


@READERS.decorator("arrow")
def read_arrow(path: Path, opts: ReadOptions, bad: BadRows) -> list[Record]:
    """An Arrow IPC file or stream (``.arrow`` as ``datasets`` writes it, ``.feather``), memory-mapped."""
    from tuneforge.data.columnar import open_arrow

    return open_arrow(path).records()


def split_loc(loc: str) -> tuple[str, str]:
    path, _, line = loc.rpartition(":")
    return path, line


def record_error(rec: Record, field: str, message: str) -> DataError:
    """A ``DataError`` at the file and line a parsed record came from, naming its field."""
    path, line = split_loc(rec.get(LOC, "?:?"))
    return DataError(path, line, message, field=field)
