"""Counterfactual bias tests (CheckList-style invariance): sentences that differ only in a group term (a name,
gender, nationality, religion) should get the same label; report the flip rate and probability shift per pair."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tuneforge.data.readers import DataError
from tuneforge.evaluation.stats import wilson_ci

BUILTIN_DIR = Path(__file__).with_name("counterfactuals")
SLOT = "{term}"


@dataclass
class Case:
    group: str
    term_a: str
    term_b: str
    template: str

    @property
    def texts(self) -> tuple[str, str]:
        return self.template.replace(SLOT, self.term_a), self.template.replace(SLOT, self.term_b)


def builtin_sets() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def resolve_template_file(name_or_path: str, base: Path | None = None) -> Path:
    """A built-in set's name (``sentiment_en``) or a YAML path (relative: to ``base``, then the current folder)."""
    if name_or_path in builtin_sets():
        return BUILTIN_DIR / f"{name_or_path}.yaml"
    path = Path(name_or_path)
    for candidate in ([base / path] if base is not None and not path.is_absolute() else []) + [path]:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"eval.counterfactuals: no file {name_or_path!r} and no built-in set of that name; "
                            f"built-in: {', '.join(builtin_sets())}")


def load_cases(path: str | Path) -> list[Case]:
    """Every (template × term pair) of the file. Format: ``pairs: {group: [[a, b], ...]}`` and
    ``templates: {group: ["... {term} ...", ...]}``; every template of a group is filled with each of its pairs."""
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataError(path, mark.line + 1 if mark else None, f"invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("pairs"), dict) or \
            not isinstance(spec.get("templates"), dict):
        raise DataError(path, None, "a counterfactual file needs the mappings pairs: and templates:")
    cases = []
    for group, templates in spec["templates"].items():
        pairs = spec["pairs"].get(group)
        if not pairs:
            raise DataError(path, None, f"templates.{group} has no pairs.{group}; groups with pairs: "
                            f"{', '.join(spec['pairs'])}", field=f"pairs.{group}")
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
                raise DataError(path, None, f"pairs.{group}[{i}] must be two terms, got {pair!r}",
                                field=f"pairs.{group}")
        for j, template in enumerate(templates or []):
            if not isinstance(template, str) or template.count(SLOT) != 1:
                raise DataError(path, None, f"templates.{group}[{j}] must contain {SLOT} once: {template!r}",
                                field=f"templates.{group}")
            cases.extend(Case(group, a, b, template) for a, b in pairs)
    if not cases:
        raise DataError(path, None, "no templates")
    return cases


def flip_stats(probs_a: np.ndarray, probs_b: np.ndarray) -> dict[str, Any]:
    """Flips (argmax differs) and the shift of the probability of A's predicted label when the term changes.

    >>> r = flip_stats(np.array([[.9, .1], [.6, .4]]), np.array([[.8, .2], [.3, .7]]))
    >>> r["flips"], r["flip_rate"], round(r["mean_shift"], 3), round(r["mean_abs_shift"], 3)
    (1, 0.5, -0.2, 0.2)
    """
    pa, pb = np.asarray(probs_a, dtype=float), np.asarray(probs_b, dtype=float)
    top = pa.argmax(-1)
    rows = np.arange(len(pa))
    shift = pb[rows, top] - pa[rows, top]  # < 0: the second term makes the model less sure of its first answer
    flips = int((pb.argmax(-1) != top).sum())
    n = len(pa)
    lo, hi = wilson_ci(flips, n)
    return {"n": n, "flips": flips, "flip_rate": flips / n if n else float("nan"), "flip_rate_ci": [lo, hi],
            "mean_shift": float(shift.mean()) if n else float("nan"),
            "mean_abs_shift": float(np.abs(shift).mean()) if n else float("nan")}


def run_counterfactuals(cases: Sequence[Case], predict_probs: Callable[[list[str]], Sequence[Sequence[float]]],
                        labels: Sequence[str], examples: int = 3) -> dict[str, Any]:
    """Score both sentences of every case; figures overall, per group and per term pair, plus the flipped
    sentences as examples (up to ``examples`` per pair)."""
    texts = [t for c in cases for t in c.texts]
    probs = np.asarray(predict_probs(texts), dtype=float).reshape(len(cases), 2, -1)  # (cases, 2, C)
    out: dict[str, Any] = {"overall": flip_stats(probs[:, 0], probs[:, 1]), "groups": {}, "pairs": []}
    for group in dict.fromkeys(c.group for c in cases):
        sel = np.array([c.group == group for c in cases])
        out["groups"][group] = flip_stats(probs[sel, 0], probs[sel, 1])
    keys = dict.fromkeys((c.group, c.term_a, c.term_b) for c in cases)
    for group, a, b in keys:
        idx = [i for i, c in enumerate(cases) if (c.group, c.term_a, c.term_b) == (group, a, b)]
        row = {"group": group, "term_a": a, "term_b": b, **flip_stats(probs[idx, 0], probs[idx, 1])}
        row["examples"] = [{"a": cases[i].texts[0], "b": cases[i].texts[1],
                            "label_a": labels[int(probs[i, 0].argmax())],
                            "label_b": labels[int(probs[i, 1].argmax())]}
                           for i in idx if probs[i, 0].argmax() != probs[i, 1].argmax()][:examples]
        out["pairs"].append(row)
    out["pairs"].sort(key=lambda r: (-r["flip_rate"], -r["mean_abs_shift"]))
    return out
