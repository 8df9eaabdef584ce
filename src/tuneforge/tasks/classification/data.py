"""Classification records → examples (text, optional pair, labels) → token features → padded batches."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from tuneforge.data.readers import LOC, BadRows, DataError, Record, record_error

Example = dict[str, Any]




def label_kind(value: Any) -> str:
    """``string``, ``integer`` or ``number`` for a label value; ValueError for values that are no label.

    Labels become strings, so 1 and "1" would name one class: a column must keep to one kind (checked per file).
    """
    if isinstance(value, bool):
        raise ValueError(f"label {value!r} is a boolean; write labels as strings (e.g. \"yes\"/\"no\") or integers")
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"label {value!r} is not a finite number (a missing value?)")
        return "number"
    raise ValueError(f"a label must be a string or a number, got {type(value).__name__} {str(value)[:40]}")


def parse_labels(value: Any, multi_label: bool, delimiter: str | None) -> list[str]:
    """A label cell → list of label strings. Multi-label cells are lists or delimited strings."""
    if isinstance(value, list):
        labels = [str(v).strip() for v in value]
    elif multi_label and delimiter and isinstance(value, str):
        labels = [p.strip() for p in value.split(delimiter)]
    else:
        labels = [str(value).strip()]
    return [lab for lab in labels if lab]


def parse_records(records: list[Record], text_col: str, pair_col: str | None, label_col: str,
                  multi_label: bool, delimiter: str | None, bad: BadRows) -> list[Example]:
    """Validate columns row by row; every problem names the file, line and field."""
    out: list[Example] = []
    first_kind: dict[str, Any] = {}  # the label kind of the first row, and where it was
    for rec in records:
        try:
            ex = _parse_one(rec, text_col, pair_col, label_col, multi_label, delimiter)
            _check_same_kind(rec, rec[label_col], label_col, first_kind)
            out.append(ex)
        except DataError as e:
            bad.report(e)
    return out


def _check_same_kind(rec: Record, value: Any, label_col: str, first: dict[str, Any]) -> None:
    for v in value if isinstance(value, list) else [value]:
        kind = label_kind(v)
        if not first:
            first.update(kind=kind, value=v, loc=rec.get(LOC))
        elif kind != first["kind"]:
            article = "an" if kind == "integer" else "a"
            raise record_error(rec, label_col, f"label {v!r} is {article} {kind} but {first['loc']} has the {first['kind']} "
                                        f"{first['value']!r}: one label column takes one kind (1 and \"1\" would be "
                                        "one class); write them all as strings or all as numbers")


def _parse_one(rec: Record, text_col: str, pair_col: str | None, label_col: str, multi_label: bool,
               delimiter: str | None) -> Example:
    columns = [c for c in rec if c != LOC]
    for col in (text_col, pair_col, label_col):
        if col and col not in rec:
            raise record_error(rec, col, f"missing column {col!r}; columns here: {', '.join(columns)}")
    text = rec[text_col]
    if not isinstance(text, str) or not text.strip():
        raise record_error(rec, text_col, "empty text" if isinstance(text, str) or text is None
                    else f"text must be a string, got {type(text).__name__}")
    ex: Example = {"text": text.strip(), LOC: rec.get(LOC)}
    if pair_col:
        pair = rec[pair_col]
        if not isinstance(pair, str) or not pair.strip():
            raise record_error(rec, pair_col, "empty second text")
        ex["text_pair"] = pair.strip()
    for col in (text_col, pair_col):
        if col and "\x00" in rec[col]:  # an escaped \u0000 in JSON; raw NUL bytes stop the reader
            raise record_error(rec, col, f"NUL character at position {rec[col].index(chr(0))}")
    value = rec[label_col]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise record_error(rec, label_col, "empty label")
    try:
        for v in value if isinstance(value, list) else [value]:
            label_kind(v)
    except ValueError as e:
        raise record_error(rec, label_col, str(e)) from None
    labels = parse_labels(value, multi_label, delimiter)
    if not labels:
        raise record_error(rec, label_col, "empty label")
    if not multi_label and len(labels) > 1:
        raise record_error(rec, label_col, f"{len(labels)} labels in a single-label task; set data.multi_label=true")
    ex["labels"] = labels
    return ex


def encode(ex: Example, tokenizer: Any, label_index: dict[str, int], multi_label: bool, max_length: int) -> dict:
    enc = tokenizer(ex["text"], ex.get("text_pair"), truncation=True, max_length=max_length)
    feat = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    feat["length"] = len(enc["input_ids"])
    known = [label_index[lab] for lab in ex.get("labels", ()) if lab in label_index]
    if multi_label:
        feat["labels"] = known
    else:
        feat["labels"] = known[0] if known else -100  # unseen label: evaluated as wrong, never trained on
    return feat


def collate(features: Sequence[dict], pad_id: int, num_labels: int, multi_label: bool) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence in the batch (dynamic padding)."""
    width = max(f["length"] for f in features)
    batch: dict[str, torch.Tensor] = {}
    for key, pad in (("input_ids", pad_id), ("attention_mask", 0), ("token_type_ids", 0)):
        if key in features[0]:
            batch[key] = torch.tensor([f[key] + [pad] * (width - f["length"]) for f in features])
    if multi_label:
        target = torch.zeros(len(features), num_labels)
        for i, f in enumerate(features):
            target[i, f["labels"]] = 1.0
        batch["labels"] = target
    else:
        batch["labels"] = torch.tensor([f["labels"] for f in features])
    return batch
