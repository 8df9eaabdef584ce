"""The monitor's batched classification: read-ahead batches classified in one call give the same database as batch
by batch, a FLUSH never waits for more input, and zero-shot topics keep the input order after length sorting, with
bf16 near ties redone in fp32 (tiny random encoder from tests/conftest.py)."""

from __future__ import annotations

import sqlite3

import pytest
import torch

from tests.monitor_stubs import Words, topics
from tests.test_monitor import make_cfg, write_stream
from tuneforge.apps.monitor.classify import Sentiment, ZeroShotTopics
from tuneforge.apps.monitor.config import MonitorConfigError
from tuneforge.apps.monitor.ingest import FLUSH, Record
from tuneforge.apps.monitor.service import build_monitor, replay

TEXTS = ["profit falls", "the staff of the company rises again after a long and difficult year of cuts",
         "shares", "net sales rise by ten percent in the quarter", "the deal", "a contract with the city"]


class Counting(Words):
    """``Words`` sentiment that records how many texts each call got."""

    def __init__(self):
        super().__init__()
        self.calls: list[int] = []

    def predict(self, texts):
        self.calls.append(len(texts))
        return super().predict(texts)


def dump(db) -> dict[str, list[tuple]]:
    con = sqlite3.connect(db)
    try:
        return {table: con.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                for table in ("windows", "texts", "offsets", "counters")} | {
            "alerts": con.execute("SELECT width, start, topic, detector, statistic, at FROM alerts "
                                  "ORDER BY 1, 2, 3, 4").fetchall()}
    finally:
        con.close()


def test_read_ahead_classification_matches_batch_by_batch(tmp_path):
    write_stream(tmp_path / "stream.jsonl", 12 * 60, surge=(8 * 60, 9 * 60))
    out = {}
    for classify_batch in (10, 35, 256):  # 10 = each commit batch of 10 classified on its own
        cfg = make_cfg(tmp_path, database=f"m{classify_batch}.sqlite", classify_batch=classify_batch)
        sentiment = Counting()
        m = build_monitor(cfg, classifiers=(Sentiment(sentiment), topics), sinks=[])
        result = replay(m, tmp_path / "stream.jsonl")
        m.close()
        assert max(sentiment.calls) == max(10, classify_batch // 10 * 10)  # whole commit batches per call
        assert sum(sentiment.calls) == 12 * 60
        out[classify_batch] = (dump(tmp_path / f"m{classify_batch}.sqlite"), result["alerts"])
    assert out[10][0]["alerts"], "the surge should alert"
    assert out[35] == out[10] and out[256] == out[10]


def test_flush_classifies_what_was_read_without_waiting(tmp_path):
    cfg = make_cfg(tmp_path, classify_batch=256)
    sentiment = Counting()
    m = build_monitor(cfg, classifiers=(Sentiment(sentiment), topics), sinks=[])
    seen = []

    def items():
        for i in range(13):
            yield Record(1767225600 + 60 * i, f"profit rises item {i} code {i * 7919}", "wire", "s", i + 1)
        yield FLUSH
        seen.append(list(sentiment.calls))  # by the time the reader resumes, the 13 records are classified
        yield Record(1767225600 + 60 * 13, "staff falls today", "wire", "s", 14)

    assert m.run(items()) == 14
    assert seen == [[13]] and sentiment.calls == [13, 1]
    assert m.store.counters()["records"] == 14
    m.close()


def test_classify_batch_must_be_positive(tmp_path):
    with pytest.raises(MonitorConfigError, match="classify_batch"):
        make_cfg(tmp_path, classify_batch=0)


@pytest.fixture(scope="module")
def zero_shot(tiny_bert_dir):
    from tuneforge.models import load_backbone, load_tokenizer

    def build(precision="fp32", batch_size=2, min_similarity=-1.0):
        return ZeroShotTopics(load_backbone(str(tiny_bert_dir)), load_tokenizer(str(tiny_bert_dir)),
                              {"jobs": "staff cuts", "results": "profit and net sales", "deals": "a contract deal"},
                              min_similarity, precision=precision, batch_size=batch_size)
    return build


def test_zero_shot_keeps_input_order_after_length_sorting(zero_shot):
    z = zero_shot()
    sims = z.similarities(TEXTS)  # batches of 2, longest first
    one_by_one = torch.cat([z.embed([t]) @ z.centroids.T for t in TEXTS])  # no padding at all
    torch.testing.assert_close(sims, one_by_one, atol=1e-5, rtol=1e-5)
    assert z(TEXTS) == [z.names[int(i)] for i in one_by_one.argmax(1)]
    assert z([]) == []


def test_zero_shot_bf16_redoes_near_ties_in_fp32(zero_shot):
    fp32, bf16 = zero_shot(), zero_shot("bf16")
    exact = fp32.similarities(TEXTS)
    bf16.NEAR_TIE = 10.0  # every row is a near tie: all redone in fp32, so exactly fp32's similarities
    torch.testing.assert_close(bf16.similarities(TEXTS), exact, atol=1e-6, rtol=1e-6)
    assert bf16.rows_rechecked == bf16.rows_predicted == len(TEXTS)
    assert bf16(TEXTS) == fp32(TEXTS)
    bf16.NEAR_TIE = 0.0  # none redone: bf16's own similarities, close to fp32's
    before = bf16.rows_rechecked
    approx = bf16.similarities(TEXTS)
    assert bf16.rows_rechecked == before and not torch.equal(approx, exact)
    torch.testing.assert_close(approx, exact, atol=0.05, rtol=0.0)


def test_near_ties_selects_close_top_two_and_threshold(zero_shot):
    z = zero_shot(min_similarity=0.5)
    sims = torch.tensor([[0.90, 0.10, 0.0],    # clear
                         [0.70, 0.695, 0.0],   # top two within 0.01
                         [0.505, 0.10, 0.0],   # best within 0.01 of min_similarity
                         [0.30, 0.10, 0.0]])   # clearly below the threshold
    assert z.near_ties(sims) == [1, 2]
    with pytest.raises(ValueError, match="precision"):
        zero_shot("int8")
