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


def test_grouped_split_keeps_duplicates_together_and_moves_nothing_else():
    data = recs(800, 200)
    for j, r in enumerate(data):  # every 10th record of each class repeats a text (also across classes)
        r["text"] = f"t{j // 2}" if j % 10 < 2 else f"u{j}"
    plain = stratified_split(data, {"validation": 0.1, "test": 0.1}, seed=42, key=lambda r: r["y"])
    grouped = stratified_split(data, {"validation": 0.1, "test": 0.1}, seed=42, key=lambda r: r["y"],
                               group=lambda r: r["text"])
    where = {id(r): name for name, part in grouped.items() for r in part}
    assert len(where) == 1000  # still a partition
    by_text: dict[str, set[str]] = {}
    for r in data:
        by_text.setdefault(r["text"], set()).add(where[id(r)])
    assert all(len(parts) == 1 for parts in by_text.values())  # no text in two splits
    was = {id(r): name for name, part in plain.items() for r in part}
    singles = [r for r in data if r["text"].startswith("u")]
    assert all(where[id(r)] == was[id(r)] for r in singles)  # records without a duplicate do not move
    assert any(len(set(was[id(r)] for r in data if r["text"] == t)) > 1 for t in by_text)  # plain split leaked
    assert abs(len(grouped["validation"]) - 100) <= 15 and abs(len(grouped["test"]) - 100) <= 15


def test_carved_validation_has_no_exact_leak(tmp_path):
    from tuneforge.config import config_from_dict
    from tuneforge.data.load import load_splits
    from tuneforge.models import ResolvedModel
    from tuneforge.run import make_task

    rows = ["text,label"] + [f"phrase {i % 40},{'pos' if i % 40 < 20 else 'neg'}" for i in range(400)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    for grouped in (True, False):
        cfg = config_from_dict({"model": "unused", "task": "classification", "output_dir": str(tmp_path / "run"),
                                "data": {"train": str(tmp_path / "train.csv"),
                                         "split": {"validation": 0.1, "test": 0.1, "group_duplicates": grouped}}})
        task = make_task(cfg, ResolvedModel(name="tiny", path=str(tmp_path), kind="encoder"))
        data = load_splits(cfg.data, task, cfg.seed)
        train = {ex["text"] for ex in data.splits["train"]}
        leaked = [ex["text"] for name in ("validation", "test") for ex in data.splits[name] if ex["text"] in train]
        assert (leaked == []) == grouped
        assert sum(len(v) for v in data.splits.values()) == 400  # nothing dropped


def test_carved_qa_validation_keeps_each_passage_in_one_split(tmp_path):
    import json

    from tuneforge.config import config_from_dict
    from tuneforge.data.load import load_splits
    from tuneforge.models import ResolvedModel
    from tuneforge.run import make_task

    passages = [f"Passage {p} says the answer is word{p} and more." for p in range(30)]
    squad = {"data": [{"paragraphs": [{"context": c, "qas": [
        {"id": f"{p}-{q}", "question": f"Question {q} about passage {p}?",
         "answers": [{"text": f"word{p}", "answer_start": c.index(f"word{p}")}]} for q in range(4)]}]}
        for p, c in enumerate(passages)]}
    (tmp_path / "train.json").write_text(json.dumps(squad))
    cfg = config_from_dict({"model": "unused", "task": "qa", "output_dir": str(tmp_path / "run"),
                            "data": {"train": str(tmp_path / "train.json"), "format": "squad", "max_length": 384,
                                     "split": {"validation": 0.2, "stratify": False}}})
    task = make_task(cfg, ResolvedModel(name="tiny", path=str(tmp_path), kind="encoder"))
    splits = load_splits(cfg.data, task, cfg.seed).splits
    seen = {name: {ex["context"] for ex in exs} for name, exs in splits.items()}
    assert seen["validation"] and not seen["validation"] & seen["train"]
    assert sum(len(v) for v in splits.values()) == 120  # nothing dropped


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


def test_grouping_that_empties_a_split_is_a_clear_error(tmp_path):
    import pytest

    from tuneforge.config import config_from_dict
    from tuneforge.data.load import load_splits
    from tuneforge.data.readers import DataError
    from tuneforge.models import ResolvedModel
    from tuneforge.run import make_task

    (tmp_path / "train.csv").write_text("text,label\n" + "same text,pos\n" * 30 + "other,neg\n" * 30)
    cfg = config_from_dict({"model": "unused", "task": "classification", "output_dir": str(tmp_path / "run"),
                            "data": {"train": str(tmp_path / "train.csv"), "split": {"validation": 0.1, "test": 0.1}}})
    task = make_task(cfg, ResolvedModel(name="tiny", path=str(tmp_path), kind="encoder"))
    with pytest.raises(DataError, match=r"train\.csv.*group_duplicates"):
        load_splits(cfg.data, task, cfg.seed)


def _load(tmp_path, rows: str, **data):
    from tuneforge.config import config_from_dict
    from tuneforge.data.load import load_splits
    from tuneforge.models import ResolvedModel
    from tuneforge.run import make_task

    (tmp_path / "train.csv").write_text("text,label\n" + rows)
    cfg = config_from_dict({"model": "unused", "task": "classification",
                            "data": {"train": str(tmp_path / "train.csv"), **data}})
    task = make_task(cfg, ResolvedModel(name="tiny", path=str(tmp_path), kind="encoder"))
    return load_splits(cfg.data, task, cfg.seed)


def test_a_train_split_with_one_class_is_an_error(tmp_path):
    import pytest

    from tuneforge.data.readers import DataError

    with pytest.raises(DataError, match=r"train.csv \[field 'label'\]: the train split has a single class 'pos' "
                                        r"\(24 examples\): .*check data.label_column"):
        _load(tmp_path, "".join(f"text {i},pos\n" for i in range(30)))
    sorted_rows = "".join(f"text {i},{'neg' if i < 50 else 'pos'}\n" for i in range(100))
    with pytest.raises(DataError, match=r"single class 'neg' \(20 examples\): data.limit=20 kept the first 20 rows"):
        _load(tmp_path, sorted_rows, limit=20, split={"validation": 0.1, "test": 0.1, "stratify": False})
    loaded = _load(tmp_path, sorted_rows, limit=1000)  # a limit above the split's size cuts nothing
    assert len({ex["labels"][0] for ex in loaded.splits["train"]}) == 2 and loaded.limited == {}


def test_audit_warns_when_a_limit_leaves_a_held_out_split_with_one_class(tmp_path):
    from tuneforge.data.audit import audit_splits

    sorted_rows = "".join(f"text {i},{'neg' if i < 50 else 'pos'}\n" for i in range(100))
    (tmp_path / "val.csv").write_text("text,label\n" + sorted_rows.replace("text", "other"))
    loaded = _load(tmp_path, sorted_rows, validation=str(tmp_path / "val.csv"), validation_limit=10)
    assert loaded.limited == {"validation": 10}
    rep = audit_splits(loaded.splits, lambda e: e["text"], lambda e: e["labels"], None, limited=loaded.limited)
    assert ("validation: every example has the label 'neg' while train has 2: data.validation_limit=10 kept the "
            "first rows of a file that looks sorted by label; shuffle it or raise the limit") in rep["warnings"]


def test_audit_warns_when_the_tokenizer_does_not_cover_the_text(tmp_path):
    from tests.conftest import build_word_tokenizer
    from tuneforge.data.audit import audit_splits

    tok = build_word_tokenizer(tmp_path / "tok")
    ex = lambda t, y: {"text": t, "labels": [y]}  # noqa: E731
    splits = {"train": [ex("good movie", "pos"), ex("bad film", "neg")],
              "test": [ex("这部电影很好看", "pos"), ex("太糟糕了", "neg")]}
    rep = audit_splits(splits, lambda e: e["text"], lambda e: e["labels"], None, tokenizer=tok)
    assert rep["splits"]["train"]["unknown_tokens"]["share"] == 0
    test = rep["splits"]["test"]["unknown_tokens"]
    assert test["share"] > 0.5 and test["token"] == "[UNK]" and test["texts_sampled"] == 2
    warned = [w for w in rep["warnings"] if "unknown token" in w]
    assert len(warned) == 1 and warned[0].startswith("test: ")
