"""Interaction logs and item tables: reading them, the per-user time split, user/item texts and negative sampling.

The fiddly parts (split without future leakage, seeded negatives that never hit a positive) are small functions
tested on hand-made logs in tests/test_recommend.py.
"""

from __future__ import annotations

import csv
import math
import string
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.data.readers import LOC, DataError


@dataclass(frozen=True)
class Interaction:
    user: str
    item: str
    time: float
    where: str  # file:line, for error messages


@dataclass
class Catalogue:
    """The item table: ids in file order, each item's fields (list fields joined with ', '), and tags."""

    ids: list[str]
    fields: list[dict[str, str]]
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {item: i for i, item in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def text(self, item: str, template: str) -> str:
        return render_template(template, self.fields[self.index[item]])


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def _rows(path: str | Path, required: Sequence[str], encoding: str = "utf-8") -> Iterable[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV/TSV file with a header; a missing column is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), None, "file not found")
    with path.open(newline="", encoding=encoding) as fh:
        reader = csv.DictReader(fh, delimiter=_delimiter(path))
        header = reader.fieldnames or []
        for col in required:
            if col not in header:
                raise DataError(str(path), 1, f"no column {col!r}; the header has {', '.join(header)}", field=col)
        for row in reader:
            yield reader.line_num, row


def read_catalogue(path: str | Path, id_column: str, list_delimiter: str = "|", tags: str | Path | None = None,
                   tag_column: str = "tag", encoding: str = "utf-8") -> Catalogue:
    """The item table at ``path`` (one row per item), with the distinct tags of ``tags`` (if given) as ``tags``.

    >>> # read_catalogue("movies.csv", "movieId", tags="tags.csv").text("1", "{title}. {genres}")
    """
    ids: list[str] = []
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for line, row in _rows(path, [id_column], encoding):
        item = (row.get(id_column) or "").strip()
        if not item:
            raise DataError(str(path), line, "empty item id", field=id_column)
        if item in seen:
            raise DataError(str(path), line, f"item {item!r} appears twice in the item table", field=id_column)
        seen.add(item)
        values = {k: _list_field(v or "", list_delimiter) for k, v in row.items() if k is not None and k != id_column}
        ids.append(item)
        rows.append({**values, "tags": ""})
    if not ids:
        raise DataError(str(path), None, "the item table has no rows")
    cat = Catalogue(ids, rows)
    if tags:
        per_item: dict[str, list[str]] = defaultdict(list)
        for line, row in _rows(tags, [id_column, tag_column], encoding):
            item, tag = (row[id_column] or "").strip(), (row[tag_column] or "").strip()
            if item not in cat.index:
                raise DataError(str(tags), line, f"item {item!r} is not in the item table {path}", field=id_column)
            if tag and tag.lower() not in {t.lower() for t in per_item[item]}:
                per_item[item].append(tag)
        for item, values in per_item.items():
            cat.fields[cat.index[item]]["tags"] = ", ".join(values)
    return cat


def _list_field(value: str, delimiter: str) -> str:
    value = value.strip()
    if value == "(no genres listed)":  # MovieLens' own empty marker
        return ""
    return ", ".join(p.strip() for p in value.split(delimiter)) if delimiter and delimiter in value else value


def render_template(template: str, values: dict[str, str]) -> str:
    """``template`` with ``{field}`` filled from ``values``; an empty field drops with the separator after it.

    >>> render_template("{title}. {genres}. {tags}", {"title": "Heat (1995)", "genres": "Crime", "tags": ""})
    'Heat (1995). Crime'
    """
    out = ""
    for literal, name, _, _ in string.Formatter().parse(template):
        if name is None:  # the text after the last field
            out += literal
            continue
        if name not in values:
            raise KeyError(f"template field {{{name}}} is not an item column; known: {', '.join(sorted(values))}")
        if values[name]:  # an empty field is left out with the separator before it
            out += (literal if out else literal.lstrip(" .,;:-")) + values[name]
    return out.strip()


def read_interactions(path: str | Path, user_column: str, item_column: str, time_column: str,
                      catalogue: Catalogue, rating_column: str | None = None, min_rating: float | None = None,
                      encoding: str = "utf-8") -> list[Interaction]:
    """The log's rows as ``Interaction``s; an unknown item, a bad time or rating is an error naming file and line."""
    required = [user_column, item_column, time_column] + ([rating_column] if rating_column else [])
    if min_rating is not None and not rating_column:
        raise DataError(str(path), None, "recommend.min_rating needs recommend.rating_column",
                        field="recommend.rating_column")
    out = []
    for line, row in _rows(path, required, encoding):
        where = f"{path}:{line}"
        user, item = (row[user_column] or "").strip(), (row[item_column] or "").strip()
        if not user:
            raise DataError(str(path), line, "empty user id", field=user_column)
        if item not in catalogue.index:
            raise DataError(str(path), line, f"item {item!r} is not in the item table", field=item_column)
        time = _number(row[time_column], path, line, time_column)
        if min_rating is not None and rating_column and _number(row[rating_column], path, line,
                                                                  rating_column) < min_rating:
            continue
        out.append(Interaction(user, item, time, where))
    if not out:
        raise DataError(str(path), None, "no interactions left to train on")
    return out


def _number(value: str | None, path: str | Path, line: int, column: str) -> float:
    try:
        x = float(value or "")
    except ValueError:
        raise DataError(str(path), line, f"{value!r} is not a number", field=column) from None
    if not math.isfinite(x):
        raise DataError(str(path), line, f"{value!r} is not a finite number", field=column)
    return x


# ---------------------------------------------------------------- the split
@dataclass
class UserSplit:
    """One user's interactions in time order, cut into train / validation / test (positions into ``items``)."""

    user: str
    items: list[str]
    times: list[float]
    n_train: int
    n_val: int  # 0 or 1

    @property
    def train(self) -> list[str]:
        return self.items[:self.n_train]

    @property
    def validation(self) -> list[str]:
        return self.items[self.n_train:self.n_train + self.n_val]

    @property
    def test(self) -> list[str]:
        return self.items[self.n_train + self.n_val:]


def time_split(interactions: Sequence[Interaction], mode: str = "leave_last_out", test_fraction: float = 0.2,
               min_interactions: int = 3) -> dict[str, UserSplit]:
    """Per user, sorted by (time, file order): the last interaction (``leave_last_out``) or the last
    ``test_fraction`` of them (``last_fraction``, at least one) is test, the one before is validation, the rest
    train. Users with fewer than ``min_interactions`` keep everything in train.

    Ties in time keep the log's order. A user's repeated interaction with an item counts once, at its first time.
    >>> # time_split(log)["7"].test  → the items user 7 touched last
    """
    if mode not in ("leave_last_out", "last_fraction"):
        raise ValueError(f"recommend.split {mode!r}: use leave_last_out or last_fraction")
    per_user: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for order, x in enumerate(interactions):
        per_user[x.user].append((x.time, order, x.item))
    out = {}
    for user, rows in per_user.items():
        rows.sort()
        first: dict[str, tuple[float, int, str]] = {}
        for r in rows:  # a repeated interaction counts once, at its first time: no test item is a train repeat
            first.setdefault(r[2], r)
        rows = sorted(first.values())
        items, times = [r[2] for r in rows], [r[0] for r in rows]
        n = len(items)
        if n < max(3, min_interactions):
            out[user] = UserSplit(user, items, times, n, 0)
            continue
        n_test = 1 if mode == "leave_last_out" else max(1, min(n - 2, round(n * test_fraction)))
        out[user] = UserSplit(user, items, times, n - n_test - 1, 1)
    return out


def leakage(splits: dict[str, UserSplit]) -> dict[str, int]:
    """Counts of what must be zero: users with a validation/test interaction timed before one of their train (or
    validation before test) interactions, and test items the same user already has in train."""
    future, repeated = 0, 0
    for s in splits.values():
        t_train = s.times[:s.n_train]
        t_val = s.times[s.n_train:s.n_train + s.n_val]
        t_test = s.times[s.n_train + s.n_val:]
        last_train = max(t_train, default=-math.inf)
        if (t_val and min(t_val) < last_train) or (t_test and min(t_test) < max([last_train, *t_val])):
            future += 1
        repeated += len(set(s.test) & set(s.train))
    return {"users_with_future_in_train": future, "test_items_seen_in_train": repeated}


# ---------------------------------------------------------------- examples and negatives
def user_text(history: Sequence[str], catalogue: Catalogue, template: str, length: int) -> str:
    """The user's recent history (at most ``length`` items), most recent first, each rendered by ``template``."""
    recent = list(history)[-length:][::-1] if length > 0 else []
    return "; ".join(t for t in (catalogue.text(i, template) for i in recent) if t)


def train_targets(n_train: int, per_user: int | None, rng: np.random.Generator) -> list[int]:
    """Positions of a user's train items used as targets: each needs at least one earlier item (its history);
    a seeded sample of ``per_user`` of them (all when ``per_user`` is None or larger), in time order."""
    positions = list(range(1, n_train))
    if per_user is not None and len(positions) > per_user:
        positions = sorted(rng.choice(positions, size=per_user, replace=False).tolist())
    return positions


def sample_negatives(n: int, weights: np.ndarray, exclude: set[int], rng: np.random.Generator) -> list[int]:
    """``n`` distinct item rows drawn with probability proportional to ``weights``, never one in ``exclude``.

    >>> sample_negatives(2, np.ones(5), {0, 1}, np.random.default_rng(0))  # doctest: +SKIP
    [3, 2]
    """
    p = np.asarray(weights, dtype=np.float64).copy()
    if exclude:
        p[list(exclude)] = 0.0
    allowed = int((p > 0).sum())
    if allowed < n:
        raise ValueError(f"cannot draw {n} negatives: only {allowed} items are not positives of this user")
    if n == 0:
        return []
    return rng.choice(len(p), size=n, replace=False, p=p / p.sum()).tolist()


def popularity(interactions: Iterable[str], catalogue: Catalogue) -> np.ndarray:
    """Interaction count per catalogue row."""
    counts = np.zeros(len(catalogue), dtype=np.float64)
    for item, c in Counter(interactions).items():
        counts[catalogue.index[item]] = c
    return counts


def last_seen(splits: dict[str, UserSplit], catalogue: Catalogue) -> np.ndarray:
    """Per catalogue row, the time of its last training interaction (-inf for items nobody touched in train)."""
    out = np.full(len(catalogue), -np.inf)
    for s in splits.values():
        for item, t in zip(s.train, s.times[:s.n_train]):
            row = catalogue.index[item]
            out[row] = max(out[row], t)
    return out


def build_examples(splits: dict[str, UserSplit], targets_per_user: int | None, seed: int) -> dict[str, list[dict]]:
    """Train / validation / test examples: ``{"user", "history", "targets", "seen"}`` with item ids.

    A train example's history is what the user had before that target; validation sees the whole train part;
    test sees train + validation. ``seen`` (excluded from ranking and from negatives) is everything known before
    the target, plus for train examples the user's other train items (never drawn as negatives)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for user in sorted(splits, key=_user_key):
        s = splits[user]
        train = s.train
        for pos in train_targets(len(train), targets_per_user, rng):
            out["train"].append({"user": user, "history": train[:pos], "targets": [train[pos]], "seen": train,
                                 LOC: f"user {user}, train item {pos + 1}"})
        if s.validation:
            out["validation"].append({"user": user, "history": train, "targets": s.validation, "seen": train,
                                      LOC: f"user {user}, validation"})
        if s.test:
            known = train + s.validation
            out["test"].append({"user": user, "history": known, "targets": s.test, "seen": known,
                                LOC: f"user {user}, test"})
    return out


def _user_key(user: str) -> tuple[int, Any]:
    return (0, int(user)) if user.isdigit() else (1, user)
