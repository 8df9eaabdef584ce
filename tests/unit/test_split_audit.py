"""Stratified splits and the split audit (distribution divergence, lengths, duplicates, leakage)."""

from __future__ import annotations

from collections import Counter

from tuneforge.data.audit import audit_splits, divergence, near_duplicates
from tuneforge.data.split import stratified_split


def recs(n_a: int, n_b: int):
    return [{"y": "a", "i": i} for i in range(n_a)] + [{"y": "b", "i": i} for i in range(n_b)]


def test_stratified_split_keeps_proportions_and_is_seeded():
    data = recs(800, 200)
    parts = stratified_split(data, {"validation": 0.1, "test": 0.1}, seed=42, key=lambda r: r["y"])
    assert {k: len(v) for k, v in parts.items()} == {"train": 800, "validation": 100, "test": 100}
    for name in ("validation", "test"):
        assert Counter(r["y"] for r in parts[name]) == {"a": 80, "b": 20}
    again = stratified_split(data, {"validation": 0.1, "test": 0.1}, seed=42, key=lambda r: r["y"])
    assert again == parts
    other = stratified_split(data, {"validation": 0.1, "test": 0.1}, seed=7, key=lambda r: r["y"])
    assert other["test"] != parts["test"]
    ids = [id(r) for p in parts.values() for r in p]
    assert len(ids) == len(set(ids)) == 1000  # a partition: nothing lost, nothing twice


def test_singleton_class_stays_in_train():
    data = recs(10, 1)
    parts = stratified_split(data, {"test": 0.2}, seed=0, key=lambda r: r["y"])
    assert [r["y"] for r in parts["train"]].count("b") == 1


def test_divergence_figures():
    same = divergence({"a": 50, "b": 50}, {"a": 10, "b": 10})
    assert same["js_divergence"] == 0 and same["chi2_p_value"] > 0.99
    diff = divergence({"a": 90, "b": 10}, {"a": 10, "b": 90})
    assert diff["js_divergence"] > 0.3 and diff["chi2_p_value"] < 1e-6
    disjoint = divergence({"a": 10}, {"b": 10})
    assert abs(disjoint["js_divergence"] - 1.0) < 1e-9


def test_near_duplicates_finds_edits_not_exact_copies():
    train = ["the quick brown fox jumps over the lazy dog today", "completely different sentence about money"]
    other = ["the quick brown fox jumps over the lazy dog today!", "the quick brown fox jumps over the lazy dog",
             "nothing alike here at all"]
    hits = near_duplicates(train, other, threshold=0.8)
    assert [(j, i) for j, i, _ in hits] == [(1, 0)]  # (0) is an exact copy after normalising; (2) unrelated


def test_audit_report_counts_leakage_unseen_labels_imbalance_and_truncation():
    ex = lambda t, y: {"text": t, "labels": [y]}  # noqa: E731
    splits = {
        "train": [ex("good movie", "pos")] * 3 + [ex("bad film very bad", "neg"), ex("word " * 20, "pos")],
        "validation": [ex("good movie", "pos"), ex("fine", "neutral")],
        "test": [ex("awful", "neg")],
    }
    rep = audit_splits(splits, lambda e: e["text"], lambda e: e["labels"], None, max_length=10,
                       bad_rows=[{"file": "f", "line": 3, "field": "text", "reason": "f:3: empty text"}])
    v = rep["splits"]["validation"]
    assert v["leakage"]["exact_in_train"] == 1
    assert v["labels_unseen_in_train"] == ["neutral"]
    assert rep["splits"]["train"]["duplicates_within"] == 2
    assert rep["splits"]["train"]["truncated"]["count"] == 1
    assert rep["imbalance_ratio"] == 4.0
    assert rep["bad_rows"]["count"] == 1
    assert rep["splits"]["train"]["length_tokens"]["max"] == 20
    assert any("never seen in train" in w for w in rep["warnings"])
