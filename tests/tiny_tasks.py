"""Tiny training data per task, for the task × method matrix. To plug a new task in, add one factory here.

A factory writes train/validation/test files under ``folder`` and returns the config fields for them
(``data`` plus anything else the task needs, e.g. ``span``), the baselines it supports and the model kind.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TinyTask:
    data: dict[str, Any]
    baselines: list[str]
    model_kind: str = "encoder"  # which tiny model fixture: "encoder" (BERT) or "decoder" (Llama)
    extra: dict[str, Any] = field(default_factory=dict)  # other config sections, e.g. {"span": {...}}


TINY_TASKS: dict[str, Callable[[Path], TinyTask]] = {}


def tiny_task(name: str):
    def register(fn: Callable[[Path], TinyTask]) -> Callable[[Path], TinyTask]:
        TINY_TASKS[name] = fn
        return fn
    return register


def _splits(folder: Path, write: Callable[[Path, int, int], None], ext: str) -> dict[str, str]:
    """16 training rows (one batch: every step sees the same batch, so the loss must fall), 8 + 8 held out."""
    files = {}
    for split, n, seed in (("train", 16, 0), ("validation", 8, 1), ("test", 8, 2)):
        path = folder / f"{split}.{ext}"
        write(path, n, seed)
        files[split] = str(path)
    return files


# ---------------- classification ----------------
def write_sentiment_csv(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    pos, neg, filler = ["good", "great", "love"], ["bad", "terrible", "hate"], ["the", "movie", "film", "it"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(n):
            label = "positive" if i % 2 else "negative"
            words = rng.sample(pos if label == "positive" else neg, 2) + rng.sample(filler, 2)
            rng.shuffle(words)
            w.writerow([" ".join(words), label])


@tiny_task("classification")
def classification(folder: Path) -> TinyTask:
    return TinyTask({**_splits(folder, write_sentiment_csv, "csv"), "max_length": 16}, ["majority"])


# ---------------- ner ----------------
def write_conll(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    lines: list[str] = []
    for _ in range(n):
        who, org, where = rng.choice(["john", "mary"]), rng.choice(["google", "apple"]), rng.choice(["paris", "london"])
        rows = [(who, "B-PER"), ("works", "O"), ("at", "O"), (org, "B-ORG"), ("in", "O"), (where, "B-LOC")]
        lines += [f"{w} X X {t}" for w, t in rows] + [""]
    path.write_text("\n".join(lines) + "\n")


@tiny_task("ner")
def ner(folder: Path) -> TinyTask:
    return TinyTask({**_splits(folder, write_conll, "txt"), "format": "conll", "max_length": 16}, [])


# ---------------- relation ----------------
def write_semeval(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    lines: list[str] = []
    for i in range(n):
        person, place = rng.choice(["john", "mary"]), rng.choice(["paris", "london"])
        if i % 2:
            text, label = f"<e1>{person}</e1> was born in <e2>{place}</e2>", "Born-In(e1,e2)"
        else:
            text, label = f"<e1>{person}</e1> and <e2>{place}</e2> are new", "Other"
        lines += [f'{i + 1}\t"{text}"', label, "Comment:", ""]
    path.write_text("\n".join(lines) + "\n")


@tiny_task("relation")
def relation(folder: Path) -> TinyTask:
    return TinyTask({**_splits(folder, write_semeval, "txt"), "format": "semeval", "max_length": 24}, ["majority"])


# ---------------- qa ----------------
def write_squad(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    paragraphs = []
    for i in range(n):
        person, place = rng.choice(["john", "mary"]), rng.choice(["paris", "london"])
        context = f"{person} works at google . {person} was born in {place} ."
        start = context.rindex(place)
        paragraphs.append({"context": context, "qas": [{"id": f"{seed}-{i}", "question": f"where was {person} born ?",
                                                        "answers": [{"text": place, "answer_start": start}]}]})
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": paragraphs}]}))


@tiny_task("qa")
def qa(folder: Path) -> TinyTask:
    return TinyTask({**_splits(folder, write_squad, "json"), "format": "squad", "max_length": 40}, [],
                    extra={"span": {"doc_stride": 8, "max_question_length": 12}})


# ---------------- generation ----------------
def write_alpaca(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        word = rng.choice(["good", "bad", "great", "terrible"])
        rows.append({"instruction": f"is {word} positive or negative", "output": "positive" if word in ("good", "great")
                     else "negative"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@tiny_task("generation")
def generation(folder: Path) -> TinyTask:
    return TinyTask({**_splits(folder, write_alpaca, "jsonl"), "max_length": 32}, ["majority"], model_kind="decoder",
                    extra={"generation": {"schema": "alpaca", "max_new_tokens": 3, "eval_batch_size": 8}})


@tiny_task("classification_generative")
def classification_generative(folder: Path) -> TinyTask:
    return TinyTask({**_splits(folder, write_sentiment_csv, "csv"), "max_length": 48}, ["majority"],
                    model_kind="decoder", extra={"generation": {"eval_batch_size": 8}})


# ---------------- recommendation ----------------
@tiny_task("recommendation")
def recommendation(folder: Path) -> TinyTask:
    """4 users x 6 movies of one taste each: 12 training examples (one batch), 4 validation and 4 test users."""
    items = [(str(100 + i), f"{('love', 'money')[i % 2]} film {i}", ("Drama", "Comedy")[i % 2]) for i in range(12)]
    (folder / "items.csv").write_text("item_id,title,genres\n" + "".join(f"{a},{b},{c}\n" for a, b, c in items))
    rows = [f"{u},{100 + (u % 2) + 2 * ((u + t) % 6)},{10 * t + u}\n" for u in range(4) for t in range(6)]
    (folder / "log.csv").write_text("user_id,item_id,timestamp\n" + "".join(rows))
    return TinyTask({"train": str(folder / "log.csv"), "max_length": 32}, ["popularity"],
                    extra={"recommend": {"items": str(folder / "items.csv"), "history_length": 4,
                                         "item_max_length": 12, "targets_per_user": None, "hard_negatives": 1,
                                         "bootstrap": 0}})
