"""Relation data: the SemEval-2010 Task 8 reader, head/tail spans, entity-marker insertion and marker positions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tuneforge.data.readers import (
    LOC,
    READERS,
    BadRows,
    DataError,
    ReadOptions,
    Record,
    read_text,
    record_error,
)

Example = dict[str, Any]
MARKERS = ("[E1]", "[/E1]", "[E2]", "[/E2]")  # added to the tokenizer as special tokens; never split
_SEMEVAL_LINE = re.compile(r'^(\d+)\t"(.*)"\s*$')
_TAGS = ("<e1>", "</e1>", "<e2>", "</e2>")




@READERS.decorator("semeval")
def read_semeval(path: Path, opts: ReadOptions, bad: BadRows) -> list[Record]:
    """SemEval-2010 Task 8 files: ``ID<TAB>"sentence with <e1>..</e1> <e2>..</e2>"``, the label line, a
    ``Comment:`` line, a blank line. Records: ``{"id", "text" (still marked), "relation", "_loc"}``."""
    lines = read_text(path, opts.encoding).splitlines()
    records: list[Record] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("Comment"):
            i += 1
            continue
        m = _SEMEVAL_LINE.match(line)
        if not m:
            bad.report(DataError(path, i + 1, f'expected ID<TAB>"sentence", found {line[:60]!r}', field="text"))
            i += 1
            continue
        label = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if not label or _SEMEVAL_LINE.match(label) or label.startswith("Comment"):
            bad.report(DataError(path, i + 2, f"no relation label after sentence {m.group(1)}", field="relation"))
            i += 1
            continue
        records.append({"id": m.group(1), "text": m.group(2), "relation": label, LOC: f"{path}:{i + 1}"})
        i += 2
    return records


def strip_tags(rec: Record, marked: str) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """``"a <e1>b</e1> c <e2>d</e2>"`` → ("a b c d", head span, tail span), spans end-exclusive."""
    found = {t: [m.start() for m in re.finditer(re.escape(t), marked)] for t in _TAGS}
    wrong = [t for t in _TAGS if len(found[t]) != 1]
    if wrong:
        raise record_error(rec, "text", f"expected each of <e1> </e1> <e2> </e2> exactly once; problem with {wrong}")
    order = sorted(_TAGS, key=lambda t: found[t][0])
    if order not in (list(_TAGS), ["<e2>", "</e2>", "<e1>", "</e1>"]):
        raise record_error(rec, "text", "entity tags are nested or crossed")
    text, spans, pos, last = "", {}, 0, 0
    for tag in order:
        at = found[tag][0]
        text += marked[last:at]
        pos = len(text)
        spans[tag] = pos
        last = at + len(tag)
    text += marked[last:]
    return text, (spans["<e1>"], spans["</e1>"]), (spans["<e2>"], spans["</e2>"])


def parse_records(records: list[Record], text_col: str, label_col: str, bad: BadRows) -> list[Example]:
    out: list[Example] = []
    for rec in records:
        try:
            out.append(parse_one(rec, text_col, label_col))
        except DataError as e:
            bad.report(e)
    return out


def parse_one(rec: Record, text_col: str, label_col: str, need_label: bool = True) -> Example:
    """``text`` + ``head``/``tail`` spans (``{"start", "end"}`` or ``[start, end]``), or a text marked with
    ``<e1>..</e1> <e2>..</e2>``; the label comes from ``relation`` (else the configured label column)."""
    text = rec.get(text_col)
    if not isinstance(text, str) or not text.strip():
        raise record_error(rec, text_col, "empty text")
    if "head" in rec or "tail" in rec:
        head, tail = _span(rec, text, "head"), _span(rec, text, "tail")
    else:
        text, head, tail = strip_tags(rec, text)
    if head[0] < tail[1] and tail[0] < head[1]:
        raise record_error(rec, "tail", f"head {head} and tail {tail} overlap")
    ex: Example = {"text": text, "head": head, "tail": tail, LOC: rec.get(LOC)}
    if need_label:
        col = "relation" if "relation" in rec else label_col
        label = rec.get(col)
        if not isinstance(label, str) or not label.strip():
            raise record_error(rec, col, "missing or empty relation label")
        ex["relation"] = label.strip()
    return ex


def _span(rec: Record, text: str, field: str) -> tuple[int, int]:
    value = rec.get(field)
    if isinstance(value, dict):
        s, e = value.get("start"), value.get("end")
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        s, e = value
    else:
        raise record_error(rec, field, f"expected {{start, end}} or [start, end], got {value!r}")
    if not isinstance(s, int) or not isinstance(e, int) or isinstance(s, bool) or isinstance(e, bool):
        raise record_error(rec, field, f"start and end must be integers, got {s!r} and {e!r}")
    if not 0 <= s < e <= len(text):
        raise record_error(rec, field, f"span {s}-{e} lies outside the text (length {len(text)})")
    if isinstance(value, dict) and "text" in value and value["text"] != text[s:e]:
        raise record_error(rec, field, f"{field} text {value['text']!r} does not match the text at {s}-{e}: {text[s:e]!r}")
    return s, e


def mark(text: str, head: tuple[int, int], tail: tuple[int, int]) -> str:
    """Insert the markers around the two spans: ``"the [E1] child [/E1] in the [E2] cradle [/E2]"``.

    >>> mark("a b c", (0, 1), (4, 5))
    '[E1] a [/E1] b [E2] c [/E2]'
    """
    inserts = sorted([(head[0], f"{MARKERS[0]} "), (head[1], f" {MARKERS[1]}"),
                      (tail[0], f"{MARKERS[2]} "), (tail[1], f" {MARKERS[3]}")], key=lambda x: x[0])
    out, last = [], 0
    for at, piece in inserts:
        out += [text[last:at], piece]
        last = at
    out.append(text[last:])
    return "".join(out)


def encode(ex: Example, tokenizer: Any, label_index: dict[str, int], max_length: int) -> dict[str, Any]:
    """Marked text → tokens; long inputs are cut to a window around the markers so both starts survive."""
    marked = mark(ex["text"], ex["head"], ex["tail"])
    enc = tokenizer(marked, return_offsets_mapping=True)
    if len(enc["input_ids"]) > max_length:
        marked = _crop(marked, enc, tokenizer, max_length)
        enc = tokenizer(marked, truncation=True, max_length=max_length)
    ids = enc["input_ids"]
    e1, e2 = (tokenizer.convert_tokens_to_ids(m) for m in (MARKERS[0], MARKERS[2]))
    feat = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    feat["e1_pos"] = ids.index(e1) if e1 in ids else 0  # a marker cut away falls back to the first token
    feat["e2_pos"] = ids.index(e2) if e2 in ids else 0
    feat["labels"] = label_index.get(ex.get("relation", ""), -100)
    feat["length"] = len(ids)
    return feat


def _crop(marked: str, enc: Any, tokenizer: Any, max_length: int) -> str:
    """The character window of ``marked`` whose tokens fit in ``max_length``, centred on the marked spans
    (or starting at the first marker when the two spans lie further apart than the window)."""
    specials = set(tokenizer.all_special_ids) - {tokenizer.convert_tokens_to_ids(m) for m in MARKERS}
    content = [off for tok, off in zip(enc["input_ids"], enc["offset_mapping"]) if tok not in specials]
    room = max_length - (len(enc["input_ids"]) - len(content))
    at = [k for k, off in enumerate(content) if marked[off[0]:off[1]] in MARKERS]
    lo, hi = min(at), max(at)
    start = lo - (room - (hi - lo + 1)) // 2 if hi - lo < room else lo
    start = max(0, min(start, len(content) - room))
    window = content[start:start + room]
    return marked[window[0][0]:window[-1][1]]


def collate(features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(f["length"] for f in features)
    batch: dict[str, torch.Tensor] = {}
    for key, pad in (("input_ids", pad_id), ("attention_mask", 0), ("token_type_ids", 0)):
        if key in features[0]:
            batch[key] = torch.tensor([f[key] + [pad] * (width - f["length"]) for f in features])
    for key in ("e1_pos", "e2_pos", "labels"):
        batch[key] = torch.tensor([f[key] for f in features])
    return batch
