"""NER data: the CoNLL reader, tag checks and IOB1 → BIO, words with character offsets, subword alignment."""

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
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)  # words and single punctuation marks, like CoNLL tokens
_TAG = re.compile(r"^(O|[BI]-\S+)$")




# ---------------- reading ----------------
@READERS.decorator("conll")
def read_conll(path: Path, opts: ReadOptions, bad: BadRows) -> list[Record]:
    """Whitespace-separated columns, token first and NER tag last; blank lines end sentences.

    ``-DOCSTART-`` lines may appear anywhere and only end the current sentence. Each sentence becomes
    ``{"tokens": [...], "tags": [...], "_loc": "file:first_line"}``.
    """
    records: list[Record] = []
    tokens: list[str] = []
    tags: list[str] = []
    start, broken = 0, False
    width: int | None = None

    def flush() -> None:
        nonlocal tokens, tags, broken
        if tokens and not broken:
            records.append({"tokens": tokens, "tags": tags, LOC: f"{path}:{start}"})
        tokens, tags, broken = [], [], False

    for i, line in enumerate(read_text(path, opts.encoding).splitlines(), start=1):
        cols = line.split()
        if not cols or cols[0] == "-DOCSTART-":
            flush()
            continue
        if not tokens and not broken:
            start = i
        width = width or len(cols)
        if len(cols) < 2 or len(cols) != width:
            broken = True  # the whole sentence goes: its tokens and tags no longer line up
            bad.report(DataError(path, i, f"expected {max(width, 2)} whitespace-separated columns (token ... tag), "
                                          f"found {len(cols)}: {line.strip()[:60]!r}", field="tags"))
            continue
        tokens.append(cols[0])
        tags.append(cols[-1])
    flush()
    return records


# ---------------- tags ----------------
def iob1_to_bio(tags: Sequence[str]) -> list[str]:
    """IOB1 (I- opens an entity, B- only between two same-type neighbours) → BIO/IOB2 (every entity opens with B-).

    Valid BIO passes through unchanged, so both schemes can be read the same way.

    >>> iob1_to_bio(["I-PER", "I-PER", "O", "I-LOC", "B-LOC"])
    ['B-PER', 'I-PER', 'O', 'B-LOC', 'B-LOC']
    """
    out: list[str] = []
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def check_tags(tags: Sequence[Any]) -> str | None:
    """The first malformed tag (not ``O``, ``B-X`` or ``I-X``), or None."""
    for tag in tags:
        if not isinstance(tag, str) or not _TAG.match(tag):
            return repr(tag)
    return None


def entity_types(tags: Sequence[str]) -> list[str]:
    return [t[2:] for t in tags if t.startswith("B-")]


# ---------------- words and offsets ----------------
def split_words(text: str, cuts: Sequence[int] = ()) -> list[tuple[int, int]]:
    """Character spans of words; ``cuts`` are extra boundaries (entity edges) no word may cross.

    >>> split_words("New-York, NY", cuts=[3])
    [(0, 3), (3, 4), (4, 8), (8, 9), (10, 12)]
    """
    bounds = sorted({0, len(text), *cuts})
    spans: list[tuple[int, int]] = []
    for a, b in zip(bounds, bounds[1:]):
        spans.extend((a + m.start(), a + m.end()) for m in _WORD.finditer(text[a:b]))
    return spans


def join_tokens(tokens: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Tokens → a text with single spaces between them, and each token's character span in it."""
    offsets, pos = [], 0
    for tok in tokens:
        offsets.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    return " ".join(tokens), offsets


# ---------------- records → examples ----------------
def parse_records(records: list[Record], text_col: str, bad: BadRows) -> list[Example]:
    """Either ``tokens`` + ``tags`` (``ner_tags`` also accepted), or ``text`` + ``entities`` character spans."""
    out: list[Example] = []
    for rec in records:
        try:
            out.append(parse_one(rec, text_col))
        except DataError as e:
            bad.report(e)
    return out


def parse_one(rec: Record, text_col: str) -> Example:
    tag_col = "tags" if "tags" in rec else "ner_tags"
    if "tokens" in rec and tag_col in rec:
        return _from_tokens(rec, rec["tokens"], rec[tag_col], tag_col)
    if text_col in rec and "entities" in rec:
        return _from_spans(rec, rec[text_col], rec["entities"], text_col)
    columns = ", ".join(c for c in rec if c != LOC)
    raise record_error(rec, "tokens", f"expected tokens + tags, or {text_col} + entities; columns here: {columns}")


def _from_tokens(rec: Record, tokens: Any, tags: Any, tag_col: str) -> Example:
    if not isinstance(tokens, list) or not tokens:
        raise record_error(rec, "tokens", "tokens must be a non-empty list")
    if not isinstance(tags, list) or len(tags) != len(tokens):
        n = len(tags) if isinstance(tags, list) else type(tags).__name__
        raise record_error(rec, tag_col, f"{len(tokens)} tokens but {n} tags: every token needs exactly one tag")
    bad_tok = next((t for t in tokens if not isinstance(t, str) or not t or any(c.isspace() for c in t)), None)
    if bad_tok is not None:
        raise record_error(rec, "tokens", f"token {bad_tok!r} is empty, not a string or contains whitespace")
    bad_tag = check_tags(tags)
    if bad_tag:
        raise record_error(rec, tag_col, f"tag {bad_tag} is not O, B-TYPE or I-TYPE")
    text, offsets = join_tokens(tokens)
    return {"tokens": list(tokens), "tags": iob1_to_bio(tags), "text": text, "offsets": offsets, LOC: rec.get(LOC)}


def _from_spans(rec: Record, text: Any, entities: Any, text_col: str) -> Example:
    if not isinstance(text, str) or not text.strip():
        raise record_error(rec, text_col, "empty text")
    if not isinstance(entities, list):
        raise record_error(rec, "entities", "entities must be a list of {start, end, label}")
    spans = sorted(_check_entity(rec, text, ent, i) for i, ent in enumerate(entities))
    for (_, e1, _), (s2, _, _) in zip(spans, spans[1:]):
        if s2 < e1:
            raise record_error(rec, "entities", f"entities overlap at characters {s2}-{e1}: {text[s2:e1]!r}")
    offsets = split_words(text, [x for s, e, _ in spans for x in (s, e)])
    tags = ["O"] * len(offsets)
    for s, e, label in spans:
        inside = [i for i, (a, b) in enumerate(offsets) if a >= s and b <= e]
        if not inside:
            raise record_error(rec, "entities", f"entity {text[s:e]!r} ({s}-{e}) holds no word")
        tags[inside[0]] = f"B-{label}"
        for i in inside[1:]:
            tags[i] = f"I-{label}"
    tokens = [text[a:b] for a, b in offsets]
    return {"tokens": tokens, "tags": tags, "text": text, "offsets": offsets, LOC: rec.get(LOC)}


def _check_entity(rec: Record, text: str, ent: Any, i: int) -> tuple[int, int, str]:
    field = f"entities[{i}]"
    if not isinstance(ent, dict) or not {"start", "end", "label"} <= set(ent):
        raise record_error(rec, field, f"expected {{start, end, label}}, got {ent!r}")
    s, e, label = ent["start"], ent["end"], ent["label"]
    if not isinstance(s, int) or not isinstance(e, int) or isinstance(s, bool) or isinstance(e, bool):
        raise record_error(rec, field, f"start and end must be integers, got {s!r} and {e!r}")
    if not 0 <= s < e <= len(text):
        raise record_error(rec, field, f"span {s}-{e} lies outside the text (length {len(text)})")
    if not isinstance(label, str) or not label.strip() or any(c.isspace() for c in label):
        raise record_error(rec, field, f"label must be a non-empty word, got {label!r}")
    if "text" in ent and ent["text"] != text[s:e]:
        raise record_error(rec, field, f"entity text {ent['text']!r} does not match the text at {s}-{e}: {text[s:e]!r}")
    return s, e, label


# ---------------- features ----------------
def continuation_tag(tag: str) -> str:
    return "I-" + tag[2:] if tag.startswith("B-") else tag


def encode(ex: Example, tokenizer: Any, tag_index: dict[str, int], max_length: int,
           label_all_subwords: bool) -> dict[str, Any]:
    """Words → subwords. The first subword of each word carries its tag; the others get -100 (or, with
    ``label_all_subwords``, the word's I- tag). ``word_starts`` holds each word's first subword (-1 if cut off)."""
    enc = tokenizer(ex["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
    feat = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    tags = ex.get("tags")
    labels, starts, prev = [], [-1] * len(ex["tokens"]), None
    for pos, w in enumerate(enc.word_ids()):
        if w is None:
            labels.append(-100)
        elif w != prev:
            starts[w] = pos
            labels.append(tag_index.get(tags[w], -100) if tags else -100)
        else:
            labels.append(tag_index.get(continuation_tag(tags[w]), -100) if tags and label_all_subwords else -100)
        prev = w
    feat.update(labels=labels, word_starts=starts, length=len(enc["input_ids"]))
    return feat


def collate(features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Pad to the longest sequence; ``word_starts`` stays a plain list (metadata, never a model input)."""
    width = max(f["length"] for f in features)
    batch: dict[str, Any] = {}
    for key, pad in (("input_ids", pad_id), ("attention_mask", 0), ("token_type_ids", 0), ("labels", -100)):
        if key in features[0]:
            batch[key] = torch.tensor([f[key] + [pad] * (width - f["length"]) for f in features])
    batch["word_starts"] = [f["word_starts"] for f in features]
    return batch
