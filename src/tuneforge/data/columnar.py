"""Columnar sources: Parquet and Arrow files, folders written by ``datasets``' ``save_to_disk`` and datasets on the
Hugging Face hub → records, read in record batches.

Arrow files and ``save_to_disk`` folders are memory-mapped (their pages belong to the page cache, not the process),
Parquet files are decoded one row group at a time, so ``iter_batches`` walks a table larger than RAM while holding
one batch of Python records. ``read_columnar`` gathers them into the list the rest of the data path takes.

Addresses (``data.train`` and friends, ``tuneforge eval --data``):

- ``corpus.parquet`` (``.pq``), ``corpus.arrow`` (``.feather``, ``.ipc``: the Arrow IPC file or stream format);
- a ``save_to_disk`` folder: a ``Dataset``, or a ``DatasetDict`` whose split is the one of the config field
  (``data.validation`` reads the folder's ``validation`` split); ``folder?split=dev`` names another;
- ``hf://owner/name?config=sst2&split=train&revision=main``: a hub dataset through ``datasets.load_dataset`` (needs
  the network, or the dataset in the local ``datasets`` cache).

Columns typed ``ClassLabel`` by ``datasets`` (also inside lists, as NER tags) are read as their names. Records carry
``_loc`` = ``"<source>:row N"`` (N counts from 0, as ``dataset[N]``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from tuneforge.data.readers import LOC, DataError, Record

HUB_PREFIX = "hf://"
PARQUET_SUFFIXES = (".parquet", ".pq")
ARROW_SUFFIXES = (".arrow", ".feather", ".ipc")
BATCH_ROWS = 2048  # rows turned into Python records at a time
EXTRA_HINT = "pip install 'tuneforge[datasets]'"
SPLIT_ALIASES = {"validation": ("validation", "valid", "dev", "val"), "test": ("test",), "train": ("train",)}
HUB_KEYS = ("config", "split", "revision")


def require_pyarrow(what: str) -> Any:
    try:
        import pyarrow
    except ImportError:
        raise DataError(what, None, f"reading this needs pyarrow: {EXTRA_HINT}") from None
    return pyarrow


def is_hub_source(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(HUB_PREFIX)


def split_query(value: str) -> tuple[str, dict[str, str]]:
    """``"path?split=dev"`` → ``("path", {"split": "dev"})``; a value without ``?`` has no options."""
    base, sep, query = value.partition("?")
    if not sep:
        return value, {}
    return base, dict(parse_qsl(query, keep_blank_values=True))


def is_columnar_source(value: str | Path) -> bool:
    """A hub id, a Parquet/Arrow file or a ``save_to_disk`` folder (with or without ``?split=``)."""
    text = str(value)
    if is_hub_source(text):
        return True
    path = Path(split_query(text)[0]) if not Path(text).exists() else Path(text)
    return path.suffix.lower() in PARQUET_SUFFIXES + ARROW_SUFFIXES or path.is_dir()


@dataclass
class HubSpec:
    name: str
    config: str | None = None
    split: str | None = None
    revision: str | None = None


def parse_hub(value: str) -> HubSpec:
    """``hf://nyu-mll/glue?config=sst2&split=train`` → HubSpec; unknown options and a missing name are errors."""
    rest, options = split_query(value[len(HUB_PREFIX):])
    name = rest.strip("/")
    if not name:
        raise DataError(value, None, "no dataset name after hf:// (e.g. hf://nyu-mll/glue?config=sst2&split=train)")
    unknown = sorted(set(options) - set(HUB_KEYS))
    if unknown:
        raise DataError(value, None, f"unknown option {unknown[0]!r}; known: {', '.join(HUB_KEYS)}")
    return HubSpec(name, options.get("config") or None, options.get("split") or None, options.get("revision") or None)


# ---------------------------------------------------------------- ClassLabel names from datasets' feature JSON
def class_names(features: dict[str, Any] | None) -> dict[str, list[str]]:
    """Column → label names for ``ClassLabel`` columns and lists of them, from datasets' serialised features."""
    out: dict[str, list[str]] = {}
    for col, spec in (features or {}).items():
        if not isinstance(spec, dict):
            continue
        if spec.get("_type") == "ClassLabel" and spec.get("names"):
            out[col] = list(spec["names"])
        inner = spec.get("feature")
        if spec.get("_type") in ("List", "Sequence", "LargeList") and isinstance(inner, dict) \
                and inner.get("_type") == "ClassLabel" and inner.get("names"):
            out[col] = list(inner["names"])
    return out


def schema_class_names(schema: Any) -> dict[str, list[str]]:
    """ClassLabel names from the ``huggingface`` metadata datasets writes into an Arrow schema."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return {}
    try:
        return class_names(json.loads(raw).get("info", {}).get("features"))
    except (ValueError, AttributeError):
        return {}


@dataclass
class ColumnarSource:
    """One table: its rows come as record batches; ``where`` names it in errors and in each record's ``_loc``."""

    where: str
    num_rows: int
    column_names: list[str]
    _batches: Any  # callable(batch_rows, columns=None) -> iterator of pyarrow.RecordBatch
    names: dict[str, list[str]] = field(default_factory=dict)  # ClassLabel columns

    def iter_batches(self, batch_rows: int = BATCH_ROWS) -> Iterator[list[Record]]:
        """Records, ``batch_rows`` at a time; ClassLabel ids become names, each record gets ``_loc``."""
        offset = 0
        for batch in self._batches(batch_rows):
            rows = batch.to_pylist()
            for i, rec in enumerate(rows):
                for col, labels in self.names.items():
                    if col in rec:
                        rec[col] = self._name(rec, col, rec[col], labels, offset + i)
                rec[LOC] = f"{self.where}:row {offset + i}"
            offset += len(rows)
            yield rows

    def column_batches(self, column: str, batch_rows: int = BATCH_ROWS) -> Iterator[list[Any]]:
        """The values of one column (ClassLabel ids as names), ``batch_rows`` at a time; no other column is read."""
        labels = self.names.get(column)
        offset = 0
        for batch in self._batches(batch_rows, [column]):
            values = batch.column(0).to_pylist()
            if labels:
                values = [self._name({}, column, v, labels, offset + i) for i, v in enumerate(values)]
            offset += len(values)
            yield values

    def _name(self, rec: Record, col: str, value: Any, labels: list[str], row: int) -> Any:
        if isinstance(value, list):
            return [self._name(rec, col, v, labels, row) for v in value]
        if value is None or value == -1:  # datasets' "no label" (e.g. GLUE test splits)
            return None
        if not isinstance(value, int) or not 0 <= value < len(labels):
            raise DataError(self.where, f"row {row}", f"class id {value!r} outside the {len(labels)} names of "
                                                      f"this ClassLabel column", field=col)
        return labels[value]

    def records(self) -> list[Record]:
        return [rec for rows in self.iter_batches() for rec in rows]


def _table_source(where: str, table: Any, names: dict[str, list[str]]) -> ColumnarSource:
    return ColumnarSource(where, table.num_rows, list(table.column_names),
                          lambda n, cols=None: iter((table.select(cols) if cols else table).to_batches(max_chunksize=n)),
                          names)


def open_arrow(path: Path) -> ColumnarSource:
    """An Arrow IPC file (random-access format) or stream (what ``datasets`` writes), memory-mapped: reading the
    table copies nothing."""
    pa = require_pyarrow(str(path))
    try:
        source = pa.memory_map(str(path))
    except OSError as e:
        raise DataError(path, None, f"cannot open: {e}") from None
    try:
        table = pa.ipc.open_file(source).read_all()
    except (pa.ArrowException, OSError, ValueError):
        source.seek(0)
        try:
            table = pa.ipc.open_stream(source).read_all()
        except (pa.ArrowException, OSError, ValueError) as e:  # pyarrow raises OSError for some corrupt streams
            raise DataError(path, None, f"not an Arrow IPC file or stream: {e}") from None
    return _table_source(str(path), table, schema_class_names(table.schema))


def open_parquet(path: Path) -> ColumnarSource:
    """A Parquet file, decoded one batch at a time (``ParquetFile.iter_batches``), never whole."""
    require_pyarrow(str(path))
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(path))  # buffered reads: a mapped file would count its touched pages as ours
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DataError(path, None, f"not a readable Parquet file: {e}") from None
    schema = pf.schema_arrow

    def batches(n: int, cols: list[str] | None = None) -> Iterator[Any]:
        try:
            yield from pf.iter_batches(batch_size=n, columns=cols)
        except (pa.ArrowException, OSError, ValueError) as e:
            raise DataError(path, None, f"corrupt Parquet data: {e}") from None

    return ColumnarSource(str(path), pf.metadata.num_rows, list(schema.names), batches, schema_class_names(schema))


def _dataset_folder(folder: Path) -> ColumnarSource:
    """One ``Dataset`` folder of ``save_to_disk``: ``state.json`` lists its Arrow shards, read in order."""
    require_pyarrow(str(folder))
    try:
        state = json.loads((folder / "state.json").read_text())
        shards = [folder / f["filename"] for f in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(folder / "state.json", None, f"not a datasets save_to_disk state file: {e}") from None
    if not shards:
        raise DataError(folder / "state.json", None, "lists no Arrow data files")
    tables = [open_arrow(shard) for shard in shards]
    try:
        info = json.loads((folder / "dataset_info.json").read_text())
    except (OSError, ValueError):
        info = {}
    names = (class_names(info.get("features")) if isinstance(info, dict) else {}) or tables[0].names

    def batches(n: int, cols: list[str] | None = None) -> Iterator[Any]:
        for t in tables:
            yield from t._batches(n, cols)

    cols = tables[0].column_names
    for shard, t in zip(shards, tables):
        if t.column_names != cols:
            raise DataError(shard, None, f"columns {t.column_names} differ from the first shard's {cols}")
    return ColumnarSource(str(folder), sum(t.num_rows for t in tables), cols, batches, names)


def pick_split(where: str | Path, available: list[str], wanted: str | None, role: str | None) -> str:
    """The split to read: the one asked for with ``?split=``, else the one named like the config field."""
    if wanted:
        if wanted not in available:
            raise DataError(where, None, f"no split {wanted!r}; this dataset has {', '.join(available)}")
        return wanted
    for name in SPLIT_ALIASES.get(role or "", ()):
        if name in available:
            return name
    if len(available) == 1:
        return available[0]
    raise DataError(where, None, f"holds the splits {', '.join(available)}: name one with "
                                 f"'{Path(str(where)).name}?split=NAME'")


def open_folder(folder: Path, options: dict[str, str], role: str | None) -> ColumnarSource:
    """A ``save_to_disk`` folder: a ``Dataset`` (``state.json``) or a ``DatasetDict`` (``dataset_dict.json``)."""
    unknown = sorted(set(options) - {"split"})
    if unknown:
        raise DataError(folder, None, f"unknown option {unknown[0]!r}; a folder takes only ?split=NAME")
    if (folder / "dataset_dict.json").is_file():
        try:
            splits = json.loads((folder / "dataset_dict.json").read_text())["splits"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(folder / "dataset_dict.json", None, f"not a datasets DatasetDict file: {e}") from None
        split = pick_split(folder, list(splits), options.get("split"), role)
        return _dataset_folder(folder / split)
    if (folder / "state.json").is_file():
        if options.get("split"):
            raise DataError(folder, None, "this folder holds one Dataset, not a DatasetDict: drop ?split=")
        return _dataset_folder(folder)
    raise DataError(folder, None, "a folder must be written by datasets' save_to_disk (dataset_dict.json or "
                                  "state.json); give data files by name otherwise")


def open_hub(value: str, role: str | None) -> ColumnarSource:
    """A hub dataset through ``datasets.load_dataset``: Arrow files in the datasets cache, memory-mapped."""
    spec = parse_hub(value)
    try:
        import datasets
    except ImportError:
        raise DataError(value, None, f"hub datasets need the datasets library: {EXTRA_HINT}") from None
    offline = any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on")
                  for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    try:
        loaded = datasets.load_dataset(spec.name, spec.config, split=spec.split, revision=spec.revision)
    except Exception as e:  # network, authentication, a missing config: datasets raises many types
        hint = (" (HF_HUB_OFFLINE is set and the dataset is not in the local datasets cache)" if offline
                else "")
        raise DataError(value, None, f"cannot load the hub dataset {spec.name!r}{hint}: {type(e).__name__}: "
                                     f"{str(e).splitlines()[0] if str(e) else ''} — or save it with "
                                     f"save_to_disk on a machine with network and give the folder") from None
    if isinstance(loaded, datasets.DatasetDict):
        loaded = loaded[pick_split(value, list(loaded), None, role)]
    if getattr(loaded, "_indices", None) is not None:
        loaded = loaded.flatten_indices()
    return _table_source(value, loaded.data.table, class_names(loaded.features.to_dict()))


def open_columnar(value: str | Path, role: str | None = None, fmt: str = "auto") -> ColumnarSource:
    """The source behind a data address (see the module docstring); ``role`` is the split it is read for."""
    text = str(value)
    if is_hub_source(text):
        return open_hub(text, role)
    path, options = (Path(text), {}) if Path(text).exists() else (lambda b, o: (Path(b), o))(*split_query(text))
    if path.is_dir():
        return open_folder(path, options, role)
    if options:
        raise DataError(path, None, "?split= applies to save_to_disk folders and hub datasets, not to files")
    if not path.is_file():
        raise DataError(path, None, "file not found")
    kind = fmt if fmt in ("parquet", "arrow") else ("parquet" if path.suffix.lower() in PARQUET_SUFFIXES else "arrow")
    return open_parquet(path) if kind == "parquet" else open_arrow(path)


def read_columnar(value: str | Path, role: str | None = None, fmt: str = "auto") -> list[Record]:
    return open_columnar(value, role, fmt).records()
