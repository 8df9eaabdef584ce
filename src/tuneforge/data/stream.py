"""Streamed encoding: a columnar source (Parquet, Arrow, a ``save_to_disk`` folder, a hub dataset) is read, parsed
and tokenised one record batch at a time, and the features go to an Arrow file that is memory-mapped back. Memory
holds one batch of Python records, whatever the corpus size.

>>> # feats = encode_to_arrow(open_columnar("corpus.parquet", "train"), task, Path("train.features.arrow"))
>>> # len(feats), feats[0]["input_ids"][:5], feats.lengths()[:3]

The task must be set up (label set, tokenizer) before; ``label_examples`` builds what a classification task's
``setup`` reads from one column, without materialising the corpus.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tuneforge.data.columnar import BATCH_ROWS, ColumnarSource, require_pyarrow
from tuneforge.data.readers import BadRows, DataError, Record, rename_columns


class ArrowFeatures(Sequence):
    """Features in a memory-mapped Arrow file, read row by row as the dicts ``task.encode`` returned."""

    def __init__(self, path: str | Path):
        pa = require_pyarrow(str(path))
        self.path = Path(path)
        self.table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.table.slice(i, 1).to_pylist()[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.table.to_batches(max_chunksize=BATCH_ROWS):
            yield from batch.to_pylist()

    def lengths(self) -> list[int]:
        """Every feature's ``length`` (what the batcher sorts by), read from one column."""
        return self.table.column("length").to_pylist()


class LabelView:
    """What a classification task's ``setup`` reads (``ex["labels"]`` of every train example), from label counts:
    iterable any number of times, without one Python object per row."""

    def __init__(self, counts: dict[str, int]):
        self.counts = dict(counts)

    def __len__(self) -> int:
        return sum(self.counts.values())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for lab, n in self.counts.items():
            ex = {"labels": [lab]}
            for _ in range(n):
                yield ex


def label_examples(source: ColumnarSource, label_column: str, batch_rows: int = 65536) -> LabelView:
    """The label counts of ``source``'s label column (the only column read), as a ``LabelView``."""
    from collections import Counter

    if label_column not in source.column_names:
        raise DataError(source.where, None, f"no column {label_column!r}; columns: {', '.join(source.column_names)}",
                        field=label_column)
    counts: Counter[str] = Counter()
    for batch in source.column_batches(label_column, batch_rows):
        counts.update(str(v) for v in batch if v not in (None, ""))
    return LabelView(counts)


def encode_to_arrow(source: ColumnarSource, task: Any, out: str | Path, bad: BadRows | None = None,
                    columns: dict[str, str] | None = None, batch_rows: int = BATCH_ROWS) -> ArrowFeatures:
    """Parse and encode ``source`` batch by batch (``task.parse`` then ``task.encode``) into the Arrow file ``out``,
    and memory-map it back. ``columns`` is ``data.columns``."""
    pa = require_pyarrow(str(out))
    bad = bad or BadRows()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    writer, schema = None, None
    try:
        for rows in source.iter_batches(batch_rows):
            records: list[Record] = rename_columns(rows, columns, source.where)
            features = [task.encode(ex) for ex in task.parse(records, bad)]
            if not features:
                continue
            batch = pa.RecordBatch.from_pylist(features, schema=schema)
            if writer is None:
                schema = batch.schema
                writer = pa.ipc.new_file(str(tmp), schema)
            writer.write_batch(batch)
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    if writer is not None:
        writer.close()
    if writer is None:
        raise DataError(source.where, None, "no usable examples")
    tmp.replace(out)
    return ArrowFeatures(out)
