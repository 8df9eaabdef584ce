"""From the data config to validated train/validation/test examples: read, parse, split."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuneforge.data.audit import normalise
from tuneforge.data.readers import BadRows, DataError, ReadOptions, read_file
from tuneforge.data.split import stratified_split

SPLITS = ("train", "validation", "test")


@dataclass
class LoadedData:
    splits: dict[str, list[dict[str, Any]]]
    files: dict[str, str | list[str] | None]
    bad_rows: list[dict[str, Any]] = field(default_factory=list)
    carved: list[str] = field(default_factory=list)  # which splits were cut from the train file
    shots: Any = None  # the k-shot draw (tuneforge.prompting.shots.ShotDraw) when data.shots_per_class is set
    limited: dict[str, int] = field(default_factory=dict)  # split → the data.*limit that cut it


def split_paths(value: str | list[str] | None) -> list[str]:
    """The files of one split: ``data.train`` and friends take one path or a list of paths."""
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def load_splits(data: Any, task: Any, seed: int) -> LoadedData:
    """Read the configured files with ``task.parse`` and carve missing validation/test splits from train.

    ``data`` is the ``data`` config section. Carved splits are stratified on ``task.stratify_key`` and drawn with
    ``data.split.seed`` when set, else with ``seed`` (the run's).
    """
    if not data.train:
        raise DataError("<config>", None, "data.train is not set", field="data.train")
    bad = BadRows(skip=data.skip_bad_rows)
    opts = ReadOptions.from_data(data, getattr(task, "name", None))
    files = {name: getattr(data, name) for name in SPLITS}
    parsed = {}
    for name, paths in files.items():
        if not paths:
            continue
        parsed[name] = []
        for path in split_paths(paths):  # a list of files is read in order and concatenated
            examples = task.parse(read_file(path, data.format, opts, bad, role=name), bad)
            if not examples:
                raise DataError(path, None, f"no usable examples in this {name} file")
            parsed[name].extend(examples)
    missing = {name: getattr(data.split, name) for name in ("validation", "test") if name not in parsed}
    missing = {k: v for k, v in missing.items() if v > 0}
    splits = dict(parsed)
    if missing:
        key = task.stratify_key if data.split.stratify else None
        group = None
        if data.split.group_duplicates:
            by = task.split_group or task.audit_view()[0]
            group = lambda ex: normalise(by(ex))  # noqa: E731
        split_seed = seed if data.split.seed is None else data.split.seed
        carved = stratified_split(parsed["train"], missing, split_seed, key=key, group=group)
        for name in missing:
            if group and not carved[name] and round(missing[name] * len(parsed["train"])) >= 1:
                raise DataError(split_paths(files["train"])[0], None,
                                f"carving data.split.{name}={missing[name]} left {name} empty: with "
                                f"data.split.group_duplicates every duplicated text stays in one split, and these "
                                f"{len(parsed['train'])} examples are mostly copies; set it to false or give "
                                f"data.{name} as a file")
        splits.update(carved)
    limited = {}
    for name, limit in (("train", data.limit), ("validation", data.validation_limit), ("test", data.test_limit)):
        if limit is not None and name in splits and len(splits[name]) > limit:
            splits[name] = splits[name][:limit]
            limited[name] = limit
    shots = None
    if data.shots_per_class:  # few-shot: K per class from train, after carving, so validation and test stay whole
        from tuneforge.prompting.shots import draw_shots

        shots = draw_shots(splits["train"], data.shots_per_class, seed, task.stratify_key)
        splits["train"] = shots.examples
    check_train_classes(splits["train"], split_paths(files["train"])[0], data.label_column, limited.get("train"))
    return LoadedData({k: splits[k] for k in SPLITS if k in splits}, files, bad.rows, list(missing), shots, limited)


def class_labels(ex: dict[str, Any]) -> list[str] | None:
    """The classes of a classification-style example (``labels`` list or ``relation``); None for other tasks."""
    if isinstance(ex.get("labels"), list):
        return ex["labels"]
    return [ex["relation"]] if isinstance(ex.get("relation"), str) else None


def check_train_classes(train: list[dict[str, Any]], where: str, label_column: str, limit: int | None) -> None:
    """A classifier needs at least two classes in train; one class usually means a file sorted by label cut by
    ``data.limit``, or the wrong label column."""
    seen: set[str] = set()
    for ex in train:
        labels = class_labels(ex)
        if labels is None:
            return
        seen.update(labels)
        if len(seen) > 1:
            return
    if len(seen) == 1:
        hint = (f"data.limit={limit} kept the first {limit} rows and the file looks sorted by label: shuffle it or "
                "raise the limit" if limit else "a classifier needs at least two; check data.label_column")
        raise DataError(where, None, f"the train split has a single class {next(iter(seen))!r} "
                                     f"({len(train)} examples): {hint}", field=label_column)
