"""The ``parallel`` file format: two aligned plain-text files (``train.en`` + ``train.de``) → source/target records."""

from __future__ import annotations

from pathlib import Path

from tuneforge.data.readers import LOC, READERS, BadRows, DataError, ReadOptions, Record, read_text


def target_path(source: Path, suffix: str | None) -> Path:
    """``train.en`` + ``de`` → ``train.de``. Without a suffix, the one sibling with the same stem is the target.

    >>> # target_path(Path("multi30k/train.en"), "de") -> Path("multi30k/train.de")
    """
    if suffix:
        target = source.with_suffix("." + suffix.lstrip("."))
        if not target.is_file():
            raise DataError(target, None, f"target file of {source.name} not found (data.target_suffix={suffix!r})")
        return target
    siblings = sorted(p for p in source.parent.glob(source.stem + ".*") if p != source and p.is_file())
    if len(siblings) != 1:
        found = ", ".join(p.name for p in siblings) or "none"
        raise DataError(source, None, f"cannot tell which file holds the targets (candidates: {found}); set "
                                      f"data.target_suffix, e.g. data.target_suffix=de for {source.stem}.de")
    return siblings[0]


@READERS.decorator("parallel")
def read_parallel(path: Path, opts: ReadOptions, bad: BadRows) -> list[Record]:
    """Line i of the source file is translated by line i of the target file; both must have as many lines."""
    target = target_path(path, opts.target_suffix)
    sources = read_text(path, opts.encoding).splitlines()
    targets = read_text(target, opts.encoding).splitlines()
    if len(sources) != len(targets):
        raise DataError(target, min(len(sources), len(targets)) + 1,
                        f"{len(targets)} lines, but {path.name} has {len(sources)}: parallel files must align "
                        f"line by line")
    langs = {"source_lang": path.suffix.lstrip("."), "target_lang": target.suffix.lstrip(".")}
    records: list[Record] = []
    for i, (src, tgt) in enumerate(zip(sources, targets), start=1):
        if not src.strip() and not tgt.strip():
            continue  # a blank line on both sides: not a pair
        if not src.strip() or not tgt.strip():
            empty, other = (path, target) if not src.strip() else (target, path)
            bad.report(DataError(empty, i, f"empty line where {other.name} has text",
                                 field="source" if empty == path else "target"))
            continue
        records.append({"source": src.strip(), "target": tgt.strip(), **langs, LOC: f"{path}:{i}"})
    return records
