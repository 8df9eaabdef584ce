"""The cross-encoder re-ranker of the recommendation task: hard-negative pairs, re-ordering only inside the top-K,
save/load, and a tiny run fitted, evaluated and served with re-ranking on (tiny random BERT from conftest)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.test_recommend import toy_config, write_toy
from tuneforge.tasks.recommendation import cross_encoder as ce


def test_pair_groups_exclude_positives_and_are_seeded():
    top = list(range(10))
    positives = {1, 4, 7}
    draws = [ce.pair_group(top, 2, positives, 3, np.random.default_rng(5)) for _ in range(2)]
    assert draws[0] == draws[1] and draws[0][0] == 2 and len(draws[0]) == 4
    rng = np.random.default_rng(0)
    for _ in range(200):
        g = ce.pair_group(top, 2, positives, 3, rng)
        assert g[0] == 2 and not set(g[1:]) & (positives | {2}) and set(g[1:]) <= set(top) and len(set(g)) == 4
    assert ce.pair_group([1, 2], 2, {1}, 3, rng) == [2]  # nothing left to draw: the target alone
    assert ce.pair_group([5, 6], 2, set(), 3, rng)[1:] == [5, 6]  # fewer candidates than asked: all of them


def test_training_groups_draw_from_the_bi_encoders_top_k():
    index = {f"i{r}": r for r in range(8)}
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]])
    ex = {"history": ["i0"], "targets": ["i5"], "seen": ["i0", "i1", "i5"]}
    for seed in range(20):
        (g,) = ce.training_groups([ex], scores, index, 4, 2, np.random.default_rng(seed))
        # top 4 without the history (i0): rows 1, 2, 3, 4; row 1 is a positive (seen), row 5 the target
        assert g[0] == 5 and set(g[1:]) <= {2, 3, 4} and len(g) == 3


def test_reorder_and_group_loss():
    assert ce.reorder_top([7, 3, 9, 4], [0.1, 0.5, 0.1, 0.9]) == [4, 3, 7, 9]
    task = ce.PairTask(tokenizer=None, max_length=8)
    scores = torch.tensor([2.0, 0.0, 0.0, 1.0, 3.0])  # groups of 3 and 2; targets first
    loss, n = task.loss({"scores": scores}, {"group_sizes": torch.tensor([3, 2])})
    expected = -torch.log_softmax(torch.tensor([2.0, 0, 0]), 0)[0] - torch.log_softmax(torch.tensor([1.0, 3]), 0)[0]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and n.item() == 2
    preds = task.predict({"scores": scores}, {"group_sizes": torch.tensor([3, 2])})
    assert task.metrics(preds, [{}, {}]) == {"mrr": pytest.approx(0.75), "top1": 0.5, "n": 2}


def test_rankers_learn_only_from_users_whose_target_is_a_candidate():
    from tuneforge.tasks.recommendation.hybrid import fit_on_listed_targets

    x = np.array([[3.0], [2.0], [1.0]])
    targets = [{0}, {1}, {5}]  # the third user's target is not listed
    contexts = [([0, 2, 3], x), ([2, 1, 3], x), ([0, 1, 2], x)]
    ranker, users = fit_on_listed_targets(contexts, targets, seed=0)
    assert users == 2 and ranker[-1].coef_[0][0] > 0  # higher text score, more likely the target
    with pytest.raises(ValueError, match="no validation user"):
        fit_on_listed_targets(contexts[2:], targets[2:], seed=0)


def _reranker(tiny_bert_dir):
    from transformers import AutoModel

    from tuneforge.models import load_tokenizer

    torch.manual_seed(0)
    model = ce.CrossEncoder(AutoModel.from_pretrained(tiny_bert_dir))
    return ce.CrossReranker(model, load_tokenizer(str(tiny_bert_dir)), 24, {"precision": "fp32"})


def test_save_load_round_trip(tiny_bert_dir, tmp_path):
    rr = _reranker(tiny_bert_dir)
    items = ["love film 1. Love, Drama", "money film 2", "city film 3. City"]
    before = rr.score("love film 4; love film 7", items)
    rr.save(tmp_path / "ce")
    back = ce.CrossReranker.load(tmp_path / "ce")
    assert np.allclose(back.score("love film 4; love film 7", items), before, atol=1e-6)
    assert back.pairs.max_length == 24 and back.info["precision"] == "fp32"
    with pytest.raises(FileNotFoundError, match="--fit-reranker"):
        ce.CrossReranker.load(tmp_path / "missing")


def test_pairs_fit_max_length_even_with_a_long_item(tiny_bert_dir):
    rr = _reranker(tiny_bert_dir)
    f = rr.pairs.encode_group("love film 4; money film 7; " * 6, ["city film 3", "love film 1 great " * 20])
    assert [len(p) for p in f["pairs"]] == [24, 24] and f["length"] == 24
    assert len(f["types"][0]) == 24 and rr.score("love film 4", ["love film 1 great " * 20]).shape == (1,)


def test_unknown_reranker_is_named(tiny_bert_dir, tmp_path):
    from tuneforge.run import prepare

    write_toy(tmp_path)
    cfg = toy_config(tmp_path, tiny_bert_dir)
    cfg.recommend.rerank = "colbert"
    with pytest.raises(KeyError, match="unknown re-ranker 'colbert'; known: cross_encoder, none"):
        prepare(cfg, encode=False)


def test_item_matrix_is_embedded_once_per_weights(tiny_bert_dir, tmp_path, monkeypatch):
    from tuneforge.run import prepare
    from tuneforge.tasks.recommendation import task as rtask

    write_toy(tmp_path)
    p = prepare(toy_config(tmp_path, tiny_bert_dir))
    model = p.build_model().model
    calls = []
    real = rtask._pad
    monkeypatch.setattr(rtask, "_pad", lambda *a: calls.append(1) or real(*a))
    first = p.task.item_matrix()
    n = len(calls)
    assert n > 0 and p.task.item_matrix() is first and len(calls) == n  # same weights: no second pass
    with torch.no_grad():
        next(model.parameters()).add_(0.1 * torch.randn_like(next(model.parameters())))
    again = p.task.item_matrix()
    assert len(calls) == 2 * n and not np.allclose(again, first)


def test_fit_evaluate_and_serve_with_reranking(tiny_bert_dir, tmp_path):
    from fastapi.testclient import TestClient

    from tuneforge.apps.recommend import Recommender
    from tuneforge.apps.recommend.rerank_eval import evaluate_rerankers
    from tuneforge.apps.routes import add_run_routes
    from tuneforge.inference.predictor import Predictor
    from tuneforge.inference.server import create_app
    from tuneforge.runner import train

    write_toy(tmp_path)
    cfg = toy_config(tmp_path, tiny_bert_dir)
    cfg.recommend.rerank_k, cfg.recommend.rerank_examples, cfg.recommend.rerank_max_length = 6, 20, 40
    result = train(cfg)
    assert "NDCG@10 % [95% CI]" in (result.run_dir / "report.html").read_text()  # the ranking tables
    report = json.loads((result.run_dir / "report.json").read_text())

    out = evaluate_rerankers(result.run_dir)
    assert out["text"]["ndcg@10"] == pytest.approx(report["metrics"]["test"]["ndcg@10"], abs=1e-6)
    for name in ("hybrid", "cross_encoder", "hybrid_over_cross"):
        assert out[name]["n"] == 12 and 0 <= out[name]["ndcg@10"] <= 1 and "cold_start" in out[name]
    assert out["cross_encoder_fit"]["targets"] == 20 and out["timing"]["cross_encoder_ms_per_user"] > 0
    assert (result.run_dir / "recommend" / "rerank.json").is_file()
    assert not (result.run_dir / "recommend" / ".cross_encoder_training").exists()  # the loop's checkpoints
    from tuneforge.evaluation.html_report import write_html_report

    page = write_html_report(result.run_dir).read_text()
    assert "NDCG@10 % [95% CI]" in page and "fine-tuned bi-encoder" in page and "macro F1" not in page
    assert "Re-ranking the bi-encoder&#x27;s top 6" in page or "Re-ranking the bi-encoder's top 6" in page

    rec = Recommender.from_run_dir(result.run_dir)
    assert rec.reranker is not None and not rec.rerank_default
    plain = [i["item"] for i in rec.recommend("1", k=10, rerank=False)["items"]]
    ranked = rec.recommend("1", k=10, rerank=True)
    items = [i["item"] for i in ranked["items"]]
    assert ranked["reranked"] and sorted(items[:6]) == sorted(plain[:6]) and items[6:] == plain[6:]
    cross = [i["rerank_score"] for i in ranked["items"][:6]]
    assert cross == sorted(cross, reverse=True) and all("rerank_score" not in i for i in ranked["items"][6:])

    cfg.recommend.rerank = "cross_encoder"  # served with re-ranking on by default
    (result.run_dir / "config.yaml").write_text(
        (result.run_dir / "config.yaml").read_text().replace("rerank: none", "rerank: cross_encoder"))
    predictor = Predictor.from_run_dir(result.run_dir)
    app = create_app(predictor)
    assert add_run_routes(app, predictor) == ["/v1/recommend"]
    with TestClient(app) as client:
        body = client.post("/v1/recommend", json={"user": "1", "k": 10}).json()
        assert body["reranked"] and [i["item"] for i in body["items"]] == items
        off = client.post("/v1/recommend", json={"user": "1", "k": 10, "rerank": False}).json()
        assert not off["reranked"] and [i["item"] for i in off["items"]] == plain
