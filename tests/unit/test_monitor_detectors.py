"""The monitor's pure parts against hand-computed values: detectors, window aggregation, dedup, durations, input."""

from __future__ import annotations

import json
import math

import pytest

from tuneforge.apps.monitor import detectors as det
from tuneforge.apps.monitor.config import MonitorConfigError, monitor_from_dict, parse_duration
from tuneforge.apps.monitor.dedup import Deduplicator, normalise
from tuneforge.apps.monitor.ingest import BadRecord, Fields, Record, Skipped, read_file
from tuneforge.apps.monitor.store import ALL, Store


def test_median_mad_and_robust_z():
    assert det.median_mad([1, 2, 3, 4, 100]) == (3, 1.4826)
    # flat history: MAD 0, so the binomial standard error of 20 texts at 0.1 sets the spread: sqrt(.09/20)
    se = math.sqrt(0.1 * 0.9 / 20)
    assert det.robust_z([0.1, 0.1, 0.2, 0.1, 0.1], 0.5, 20, 0.05) == pytest.approx(0.4 / se)
    assert det.share_scale(0.0, 0.1, 20, 0.2) == 0.2  # the floor wins when it is larger
    assert det.share_scale(0.3, 0.1, 20, 0.05) == 0.3  # a wide baseline wins over the standard error


def test_cusum_accumulates_and_resets_at_zero():
    assert det.cusum([0.5, 2.0, 2.0, 3.0], 1.0) == 4.0  # 0 → 1 → 2 → 4
    assert det.cusum([3.0, -5.0, 1.5], 1.0) == 0.5  # 2 → 0 (floored) → 0.5


def test_negative_surge_z_fires_and_respects_volume_and_history():
    hist = [0.1] * 12
    f = det.negative_surge_z(hist, 0.6, 20, z=3.5, min_volume=8, min_history=12, min_scale=0.05)
    assert f.fired and f.statistic == pytest.approx(0.5 / math.sqrt(0.09 / 20))
    assert not det.negative_surge_z(hist, 1.0, 3, z=3.5, min_volume=8, min_history=12, min_scale=0.05).fired
    assert not det.negative_surge_z(hist[:5], 1.0, 30, z=3.5, min_volume=8, min_history=12, min_scale=0.05).fired
    assert not det.negative_surge_z(hist, 0.2, 20, z=3.5, min_volume=8, min_history=12, min_scale=0.05).fired


def test_negative_cusum_needs_the_newest_window_to_push():
    hist = [0.1] * 12  # MAD 0; n = 100 → se 0.03, floor 0.1 wins → z = (x - 0.1) / 0.1
    kw = dict(h=4.0, drift=1.0, min_volume=8, min_history=12, min_scale=0.1)
    rising = [(0.3, 100), (0.35, 100), (0.4, 100)]  # z 2, 2.5, 3 → S 1, 2.5, 4.5
    f = det.negative_cusum(hist, rising, **kw)
    assert f.fired and f.statistic == pytest.approx(4.5)
    ended = [*rising, (0.1, 100)]  # S stays 3.5 after the surge; the newest window does not push: no alert
    assert not det.negative_cusum(hist, ended, **kw).fired


def test_volume_spike():
    hist = [10, 12, 11, 9, 10]  # median 10, MAD 1.4826 * 1
    f = det.volume_spike(hist, 30, z=5, ratio=2.5, min_volume=8, min_history=5)
    assert f.fired and f.statistic == pytest.approx(20 / 1.4826)
    assert not det.volume_spike(hist, 14, z=5, ratio=2.5, min_volume=8, min_history=5).fired


def test_sentiment_reversal():
    net, counts = [0.3, 0.3, 0.3, -0.3, -0.3, -0.3], [10] * 6
    f = det.sentiment_reversal(net, counts, span=3, delta=0.5, min_volume=8)
    assert f.fired and f.statistic == pytest.approx(-0.6)
    assert not det.sentiment_reversal([0.3, 0.3, 0.3, 0.1, 0.1, 0.1], counts, span=3, delta=0.1, min_volume=8).fired
    assert not det.sentiment_reversal(net, [1] * 6, span=3, delta=0.5, min_volume=8).fired


def test_window_aggregation_counts_and_confidence_weights(tmp_path):
    s = Store(tmp_path / "m.sqlite")
    s.begin()
    p_neg = {"negative": 0.8, "neutral": 0.1, "positive": 0.1}
    p_pos = {"negative": 0.1, "neutral": 0.2, "positive": 0.7}
    assert s.add(3600, 100.0, "jobs", "negative", p_neg) == 0
    s.add(3600, 200.0, "jobs", "positive", p_pos)
    s.add(3600, 7300.0, "jobs", "negative", p_neg)  # window 2 (7200): window 1 stays empty
    s.commit()
    series = s.series(3600, "jobs", 7200, 3)
    assert [w["start"] for w in series] == [0, 3600, 7200]
    assert [w["n"] for w in series] == [2, 0, 1]
    w0 = series[0]
    assert (w0["neg"], w0["neu"], w0["pos"]) == (1, 0, 1)
    assert w0["wneg"] == pytest.approx(0.9) and w0["wpos"] == pytest.approx(0.8)
    assert s.series(3600, ALL, 7200, 1)[0]["n"] == 0  # only what was added under `all` counts there
    s.close()


def test_dedup_reposts_edits_and_horizon():
    d = Deduplicator(horizon=3600, threshold=0.8)
    text = "Nokia will cut 1,000 jobs at its Finnish plants by the end of next year, the company said on Monday"
    assert not d.seen(text, 0)
    assert d.seen(f"RT @desk: {text.upper()} https://t.co/abc", 10)  # same after normalisation
    assert d.seen(text.replace("Monday", "Monday afternoon"), 20)  # near copy: one word added
    assert not d.seen("Stora Enso raised its dividend and reported record quarterly profit", 30)
    assert not d.seen(text, 5000)  # the first copy is older than the horizon
    assert normalise("Fwd: A  B!") == "a b"


def test_parse_duration_and_config_errors():
    assert parse_duration("15m", "w") == 900 and parse_duration("1d", "w") == 86400 and parse_duration(60, "w") == 60
    with pytest.raises(MonitorConfigError, match="w: '5 weeks' is not a duration"):
        parse_duration("5 weeks", "w")
    base = {"sentiment_run": "r", "topics": {"descriptions": {"a": "b"}}}
    with pytest.raises(MonitorConfigError, match="detect.: unknown field 'zz'; known:"):
        monitor_from_dict({**base, "detect": {"zz": 1}})
    with pytest.raises(MonitorConfigError, match="detect.window '2h' is not one of windows"):
        monitor_from_dict({**base, "detect": {"window": "2h"}})
    with pytest.raises(MonitorConfigError, match=r"sinks\[0\] \(webhook\) needs url"):
        monitor_from_dict({**base, "sinks": [{"type": "webhook"}]})


def test_bad_records_name_file_and_line_or_are_skipped(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text(json.dumps({"time": 1, "text": "a"}) + "\n\n{not json\n" + json.dumps({"time": "x", "text": "b"})
                 + "\n" + json.dumps({"time": 5, "text": "c"}) + "\n")
    with pytest.raises(BadRecord, match=r"s.jsonl:3: invalid JSON"):
        list(read_file(f, 0, Fields()))
    items = list(read_file(f, 0, Fields(), skip_bad=True))
    assert [type(i) for i in items] == [Record, Skipped, Skipped, Record]
    assert "s.jsonl:4: field 'time'" in items[2].reason
    resumed = list(read_file(f, items[1].end, Fields(), skip_bad=True))  # from a stored offset: the same lines
    assert [getattr(i, "text", None) for i in resumed] == [None, "c"]
    with pytest.raises(BadRecord, match=r"s.jsonl:4: field 'time'"):  # line numbers still right after a resume
        list(read_file(f, items[1].end, Fields()))


def test_csv_stream(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text('time,text,source\n2026-01-01T00:00:00Z,"Profit fell, sharply",wire\n60,ok,\n')
    recs = list(read_file(f, 0, Fields()))
    assert [(r.t, r.text, r.source) for r in recs] == [(1767225600.0, "Profit fell, sharply", "wire"), (60.0, "ok", "")]


def test_zero_shot_topics_and_sentiment_adapter(tiny_bert_dir):
    from tuneforge.apps.monitor.classify import OTHER, Sentiment, ZeroShotTopics

    z = ZeroShotTopics.load(str(tiny_bert_dir), {"films": "great film", "hate": "bad movie hate"})
    got = z(["great film", "bad movie hate", "love the film"])
    assert set(got) <= {"films", "hate"} and got[:2] == ["films", "hate"]  # a description is nearest to itself
    assert ZeroShotTopics.load(str(tiny_bert_dir), {"a": "film"}, min_similarity=1.01)(["film"]) == [OTHER]

    class Stars:
        def predict(self, texts):
            return [{"label": "5 stars", "score": 1.0} for _ in texts]

    with pytest.raises(ValueError, match="label '5 stars'; the monitor needs negative, neutral, positive"):
        Sentiment(Stars())(["x"])


def test_follow_waits_for_complete_lines(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text(json.dumps({"time": 1, "text": "a"}) + "\n" + '{"time": 2, "te')  # a writer mid-line
    stop = []
    it = read_file(f, 0, Fields(), follow=True, poll=0.01, stop=lambda: bool(stop))
    assert next(it).text == "a"
    assert next(it) == "flush"  # the half line is not read yet
    with open(f, "a") as fh:
        fh.write('xt": "b"}\n')
    rec = next(it)
    assert isinstance(rec, Record) and rec.text == "b" and rec.end == f.stat().st_size
    stop.append(True)
    assert [i for i in it if i != "flush"] == []


def test_directory_reads_new_files_from_stored_offsets(tmp_path):
    from tuneforge.apps.monitor.ingest import read_directory

    (tmp_path / "a.jsonl").write_text(json.dumps({"time": 1, "text": "a"}) + "\n")
    (tmp_path / "b.csv").write_text("time,text\n2,b\n")
    offsets: dict[str, int] = {}
    assert [r.text for r in read_directory(tmp_path, offsets, Fields())] == ["a", "b"]
    (tmp_path / "c.jsonl").write_text(json.dumps({"time": 3, "text": "c"}) + "\n")
    assert [r.text for r in read_directory(tmp_path, offsets, Fields())] == ["c"]  # done files are not reread
    (tmp_path / "d.jsonl").write_text(json.dumps({"time": 4, "text": "d"}) + "\n" + '{"time": 5, "te')
    got = list(read_directory(tmp_path, offsets, Fields(), follow=True, stop=lambda: True))
    assert [r.text for r in got] == ["d"]  # the newest file's half-written line waits for its newline
