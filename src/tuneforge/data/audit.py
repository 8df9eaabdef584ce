"""Split audit: do train/validation/test share one distribution? Labels, lengths, duplicates, leakage."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency

Example = dict[str, Any]
_WORD = re.compile(r"\w+", re.UNICODE)


def normalise(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def shingles(text: str, n: int = 3) -> set[str]:
    words = normalise(text).split()
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def label_distribution(labels: Sequence[Any]) -> dict[str, int]:
    return dict(sorted(Counter(str(lab) for lab in labels).items()))


def divergence(train: dict[str, int], other: dict[str, int]) -> dict[str, float | None]:
    """Jensen-Shannon divergence (base 2, 0 = same, 1 = disjoint) and a chi-square homogeneity p-value."""
    labels = sorted(set(train) | set(other))
    a = np.array([train.get(lab, 0) for lab in labels], dtype=float)
    b = np.array([other.get(lab, 0) for lab in labels], dtype=float)
    if a.sum() == 0 or b.sum() == 0:
        return {"js_divergence": None, "chi2_p_value": None}
    js = float(jensenshannon(a / a.sum(), b / b.sum(), base=2) ** 2)
    keep = (a + b) > 0
    p = None
    if keep.sum() > 1:
        p = float(chi2_contingency(np.stack([a[keep], b[keep]]))[1])
    return {"js_divergence": round(js, 6), "chi2_p_value": p}


def percentiles(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values)
    return {"min": int(arr.min()), "p50": float(np.percentile(arr, 50)), "p90": float(np.percentile(arr, 90)),
            "p99": float(np.percentile(arr, 99)), "max": int(arr.max()), "mean": round(float(arr.mean()), 2)}


def near_duplicates(train_texts: Sequence[str], other_texts: Sequence[str], threshold: float,
                    max_candidates: int = 20) -> list[tuple[int, int, float]]:
    """Pairs (other_idx, train_idx, jaccard) whose word 3-shingle Jaccard ≥ threshold, exact copies excluded.

    Candidates come from an inverted index over shingles, so this is fast for tens of thousands of texts.
    """
    train_sh = [shingles(t) for t in train_texts]
    df: Counter[str] = Counter()
    for s in train_sh:
        df.update(s)
    index: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(train_sh):
        for g in s:
            if df[g] <= 50:  # very common shingles say nothing about duplication
                index[g].append(i)
    out = []
    for j, text in enumerate(other_texts):
        s = shingles(text)
        if not s:
            continue
        hits: Counter[int] = Counter()
        for g in s:
            hits.update(index.get(g, ()))
        best = (0.0, -1)
        for i, _ in hits.most_common(max_candidates):
            t = train_sh[i]
            jac = len(s & t) / len(s | t)
            if jac > best[0]:
                best = (jac, i)
        if best[0] >= threshold and normalise(text) != normalise(train_texts[best[1]]):
            out.append((j, best[1], round(best[0], 4)))
    return out


UNKNOWN_SHARE_WARN = 0.05  # above this share of [UNK] tokens the model reads little of the text
UNKNOWN_SAMPLE = 2000  # texts per split tokenized for the unknown-token share


def unknown_token_share(texts: Sequence[str], tokenizer: Any, sample: int = UNKNOWN_SAMPLE) -> dict[str, Any] | None:
    """Share of the tokens of the first ``sample`` texts that the tokenizer maps to its unknown token (a Chinese
    text through an English WordPiece vocabulary is mostly ``[UNK]``). None for tokenizers without one (byte-level
    BPE never needs it)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or not texts:
        return None
    ids = tokenizer(list(texts[:sample]), add_special_tokens=False, truncation=False)["input_ids"]
    total = sum(len(x) for x in ids)
    unknown = sum(x.count(unk) for x in ids)
    return {"share": round(unknown / max(1, total), 4), "unknown": unknown, "tokens": total,
            "texts_sampled": len(ids), "token": getattr(tokenizer, "unk_token", None)}


def one_class_warning(name: str, dist: dict[str, int], train_labels: dict[str, int],
                      limited: dict[str, int]) -> str | None:
    """A held-out split with one class while train has several scores one class only; with a limit, the cause is
    usually a file sorted by label."""
    if name == "train" or len(dist) != 1 or len(train_labels) < 2:
        return None
    only = next(iter(dist))
    key = {"validation": "data.validation_limit", "test": "data.test_limit"}.get(name, "the limit")
    cause = (f": {key}={limited[name]} kept the first rows of a file that looks sorted by label; shuffle it or "
             "raise the limit") if name in limited else ""
    return f"{name}: every example has the label {only!r} while train has {len(train_labels)}{cause}"


def audit_splits(splits: dict[str, list[Example]], text_of: Callable[[Example], str],
                 labels_of: Callable[[Example], list[str]], count_tokens: Callable[[list[str]], list[int]] | None,
                 max_length: int | None = None, near_dup_threshold: float = 0.9,
                 bad_rows: list[dict[str, Any]] | None = None, examples_shown: int = 5,
                 tokenizer: Any = None, limited: dict[str, int] | None = None) -> dict[str, Any]:
    """Audit report for a dict of splits. ``labels_of`` returns a list (one item for single-label tasks).

    ``tokenizer`` adds each split's unknown-token share; ``limited`` (split → data.*limit that cut it) explains a
    split left with one class.
    """
    report: dict[str, Any] = {"splits": {}, "warnings": []}
    warnings: list[str] = report["warnings"]
    train = splits.get("train", [])
    train_labels = label_distribution([lab for ex in train for lab in labels_of(ex)])
    train_texts = [text_of(ex) for ex in train]
    train_norm = {normalise(t): i for i, t in enumerate(train_texts)}
    for name, exs in splits.items():
        texts = [text_of(ex) for ex in exs]
        dist = label_distribution([lab for ex in exs for lab in labels_of(ex)])
        lengths = count_tokens(texts) if count_tokens else [len(t.split()) for t in texts]
        norm = [normalise(t) for t in texts]
        within = len(norm) - len(set(norm))
        info: dict[str, Any] = {
            "count": len(exs),
            "label_distribution": dist,
            "length_tokens": percentiles(lengths),
            "duplicates_within": within,
        }
        if max_length:
            over = sum(1 for n in lengths if n > max_length)
            info["truncated"] = {"count": over, "share": round(over / max(1, len(lengths)), 4),
                                 "max_length": max_length}
            if over:
                warnings.append(f"{name}: {over} of {len(exs)} examples exceed max_length={max_length} "
                                f"tokens and will be truncated")
        if within:
            warnings.append(f"{name}: {within} exact duplicate texts within the split")
        if tokenizer is not None:
            info["unknown_tokens"] = unk = unknown_token_share(texts, tokenizer)
            if unk and unk["share"] > UNKNOWN_SHARE_WARN:
                warnings.append(f"{name}: {unk['share']:.0%} of the tokens are the unknown token {unk['token']!r}: "
                                "the tokenizer's vocabulary does not cover this text (another language or script?)")
        one_class = one_class_warning(name, dist, train_labels, limited or {})
        if one_class:
            warnings.append(one_class)
        if name != "train":
            info["divergence_from_train"] = divergence(train_labels, dist)
            unseen = sorted(set(dist) - set(train_labels))
            info["labels_unseen_in_train"] = unseen
            if unseen:
                warnings.append(f"{name}: {len(unseen)} labels never seen in train: {unseen[:10]}")
            exact = [(j, train_norm[n]) for j, n in enumerate(norm) if n in train_norm]
            near = near_duplicates(train_texts, texts, near_dup_threshold)
            info["leakage"] = {
                "exact_in_train": len(exact),
                "near_in_train": len(near),
                "near_threshold": near_dup_threshold,
                "examples": [{"text": texts[j], "train_text": train_texts[i]} for j, i in exact[:examples_shown]]
                + [{"text": texts[j], "train_text": train_texts[i], "jaccard": s}
                   for j, i, s in near[:examples_shown]],
            }
            if exact:
                warnings.append(f"{name}: {len(exact)} texts also appear in train (exact, after normalising)")
            if near:
                warnings.append(f"{name}: {len(near)} near-duplicates of train texts (Jaccard ≥ {near_dup_threshold})")
            js = info["divergence_from_train"]["js_divergence"]
            if js is not None and js > 0.05:
                warnings.append(f"{name}: label distribution differs from train (JS divergence {js:.3f})")
        report["splits"][name] = info
    if train_labels:
        counts = list(train_labels.values())
        report["imbalance_ratio"] = round(max(counts) / max(1, min(counts)), 3)
        report["num_labels"] = len(train_labels)
    report["bad_rows"] = {"count": len(bad_rows or []), "rows": (bad_rows or [])[:100]}
    if bad_rows:
        warnings.append(f"{len(bad_rows)} malformed rows were skipped (data.skip_bad_rows=true); see bad_rows")
    repairs = [r for exs in splits.values() for ex in exs for r in ex.get("repairs", [])]
    report["repairs"] = {"count": len(repairs), "rows": repairs[:100]}
    if repairs:
        warnings.append(f"{len(repairs)} parts of kept rows were repaired (e.g. an answer offset that did not match "
                        "its context); see repairs")
    return report


def format_audit(report: dict[str, Any]) -> str:
    """A short human-readable summary of an audit report."""
    lines = ["split        count  labels  tok p50/p90/max  JS-div   chi2-p   exact-leak  near-leak"]
    for name, info in report["splits"].items():
        ln = info["length_tokens"] or {}
        div = info.get("divergence_from_train", {})
        leak = info.get("leakage", {})
        js = div.get("js_divergence")
        p = div.get("chi2_p_value")
        lines.append(
            f"{name:<11} {info['count']:>6}  {len(info['label_distribution']):>6}  "
            f"{ln.get('p50', 0):>5.0f}/{ln.get('p90', 0):>4.0f}/{ln.get('max', 0):>4}  "
            f"{'-' if js is None else f'{js:.4f}':>7}  {'-' if p is None else f'{p:.3f}':>7}  "
            f"{leak.get('exact_in_train', '-'):>10}  {leak.get('near_in_train', '-'):>9}")
    if "imbalance_ratio" in report:
        lines.append(f"labels: {report['num_labels']}, imbalance ratio (max/min train count): {report['imbalance_ratio']}")
    lines.append(f"bad rows skipped: {report['bad_rows']['count']}")
    for row in report["bad_rows"]["rows"][:5]:
        lines.append(f"  skipped: {row['reason']}")
    lines.append(f"repairs: {report.get('repairs', {}).get('count', 0)}")
    for row in report.get("repairs", {}).get("rows", [])[:5]:
        lines.append(f"  repaired: {row['reason']} -> {row['action']}")
    for w in report["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
