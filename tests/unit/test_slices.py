"""Slice metrics on hand-made examples: counts, accuracies, intervals, gaps and the significance flag."""

import pytest

from tuneforge.data.readers import DataError, ReadOptions
from tuneforge.evaluation import slices, stats


def test_slice_metrics_by_hand():
    # group a: 40 rows all right; group b: 40 rows, 10 right -> overall 50/80
    gold = [0] * 40 + [1] * 40
    pred = [0] * 40 + [1] * 10 + [0] * 30
    r = slices.slice_metrics(gold, pred, ["a"] * 40 + ["b"] * 40)
    assert r["overall"] == {"n": 80, "accuracy": 50 / 80}
    a, b = r["slices"]["a"], r["slices"]["b"]
    assert (a["n"], a["accuracy"], b["accuracy"]) == (40, 1.0, 0.25)
    assert a["gap"] == pytest.approx(1 - 50 / 80) and b["gap"] == pytest.approx(0.25 - 50 / 80)
    assert b["accuracy_ci"] == pytest.approx(list(stats.wilson_ci(10, 40)))
    assert b["macro_f1"] == pytest.approx(stats.macro_f1([1] * 40, [1] * 10 + [0] * 30))
    assert b["p_value"] == pytest.approx(stats.fisher_gap(10, 40, 40, 40))
    assert a["significant"] and b["significant"]


def test_small_gap_not_flagged():
    gold = [0] * 40
    pred = [0] * 18 + [1] * 2 + [0] * 17 + [1] * 3  # 90% vs 85%
    r = slices.slice_metrics(gold, pred, ["x"] * 20 + ["y"] * 20)
    assert not any(s["significant"] for s in r["slices"].values())
    assert r["slices"]["y"]["accuracy"] == pytest.approx(0.85)


def test_length_buckets_and_sources():
    texts = ["a"] * 4 + ["a b c"] * 4 + ["a b c d e f"] * 4 + [" ".join("w" * 12)] * 4
    buckets = slices.length_buckets(texts)
    assert len(set(buckets)) == 4 and buckets[0] == "1 word" and buckets[-1] == "8-12 words"
    rows = [{"text": t, "loc": f"/d/test.csv:{i + 2}"} for i, t in enumerate(texts)]
    assert set(slices.group_values("source", rows)) == {"test.csv"}
    with pytest.raises(DataError, match="no column 'region'"):
        slices.group_values("region", rows)


def test_read_columns_from_the_data_file(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("text,label,region\nhello,a,north\nbye,b,south\n")
    examples = [{"text": "hello", "_loc": f"{path}:2"}, {"text": "bye", "_loc": f"{path}:3"}]
    assert slices.read_columns(examples, ["region", "length"], ReadOptions()) == [{"region": "north"},
                                                                                  {"region": "south"}]
    with pytest.raises(DataError, match="test.csv.*no column 'group'"):
        slices.read_columns(examples, ["group"], ReadOptions())


def test_run_slices_over_prediction_rows():
    rows = [{"text": "t", "gold": g, "predicted": p, "meta": {"src": s}}
            for g, p, s in [("x", "x", "web"), ("y", "x", "web"), ("y", "y", "app"), ("x", "x", "app")]]
    r = slices.run_slices(["src"], rows, {"x": 0, "y": 1})
    assert r["src"]["slices"]["web"]["accuracy"] == 0.5 and r["src"]["slices"]["app"]["accuracy"] == 1.0
