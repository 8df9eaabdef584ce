"""The recommendation task and application: time split, ranking maths, negative sampling, and a tiny end-to-end
run served over HTTP (synthetic log and item table built here; a tiny random BERT from conftest)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.conftest import SHARED
from tuneforge.data.readers import DataError
from tuneforge.tasks.recommendation import data as rdata
from tuneforge.tasks.recommendation.metrics import per_user, rank_scores, ranking_metrics

GENRES = ["love", "money", "city"]  # three tastes; each user likes one


def write_toy(folder, users=12, per_user=8, seed=0):
    """30 items in 3 genres; each user rates items of one genre over time (plus one off-taste item)."""
    rng = np.random.default_rng(seed)
    items = [(str(100 + i), f"{GENRES[i % 3]} film {i}", GENRES[i % 3].title() + "|Drama") for i in range(30)]
    (folder / "items.csv").write_text("item_id,title,genres\n" + "".join(f"{a},{b},{c}\n" for a, b, c in items))
    (folder / "tags.csv").write_text("user_id,item_id,tag,timestamp\n1,100,great,5\n2,100,Great,6\n3,101,bad,7\n")
    rows = []
    for u in range(users):
        taste = [i for i in range(30) if i % 3 == u % 3]
        picks = list(rng.choice(taste, size=per_user - 1, replace=False)) + [int(rng.integers(30))]
        for t, i in enumerate(picks):
            rows.append(f"{u + 1},{100 + i},{rng.choice([3.0, 4.5])},{1000 + 10 * t + u}\n")
    (folder / "log.csv").write_text("user_id,item_id,rating,timestamp\n" + "".join(rows))
    return folder


def inter(user, item, time):
    return rdata.Interaction(user, item, time, "x")


# ---------------------------------------------------------------- split
def test_leave_last_out_split_has_no_future_leakage():
    log = [inter("a", "i3", 30), inter("a", "i1", 10), inter("a", "i2", 20), inter("a", "i4", 40),
           inter("b", "i1", 5), inter("b", "i2", 6)]  # b: too few interactions, train only
    s = rdata.time_split(log, "leave_last_out")
    assert (s["a"].train, s["a"].validation, s["a"].test) == (["i1", "i2"], ["i3"], ["i4"])
    assert (s["b"].train, s["b"].validation, s["b"].test) == (["i1", "i2"], [], [])
    assert rdata.leakage(s) == {"users_with_future_in_train": 0, "test_items_seen_in_train": 0}


def test_last_fraction_split_and_ties_keep_log_order():
    log = [inter("u", f"i{k}", t) for k, t in enumerate([1, 2, 3, 4, 5, 6, 7, 8, 9, 9])]
    s = rdata.time_split(log, "last_fraction", test_fraction=0.2)
    assert s["u"].test == ["i8", "i9"] and s["u"].validation == ["i7"] and s["u"].train == [f"i{k}" for k in range(7)]
    with pytest.raises(ValueError, match="leave_last_out or last_fraction"):
        rdata.time_split(log, "random")


def test_leakage_counts_a_split_that_leaks():
    bad = rdata.UserSplit("u", ["a", "b", "c", "a"], [5.0, 1.0, 2.0, 9.0], 2, 1)  # validation before train's max
    assert rdata.leakage({"u": bad}) == {"users_with_future_in_train": 1, "test_items_seen_in_train": 1}


def test_examples_see_only_the_past():
    log = [inter("u", f"i{k}", k) for k in range(6)]
    ex = rdata.build_examples(rdata.time_split(log), None, seed=0)
    for e in ex["train"]:  # history strictly before the target
        assert e["history"] == [f"i{k}" for k in range(int(e["targets"][0][1:]))]
    assert ex["validation"][0]["history"] == ["i0", "i1", "i2", "i3"] and ex["validation"][0]["targets"] == ["i4"]
    assert ex["test"][0]["seen"] == ["i0", "i1", "i2", "i3", "i4"] and ex["test"][0]["targets"] == ["i5"]
    a = rdata.build_examples(rdata.time_split(log), 2, seed=3)["train"]
    assert len(a) == 2 and a == rdata.build_examples(rdata.time_split(log), 2, seed=3)["train"]  # seeded sample


# ---------------------------------------------------------------- negatives
def test_negative_sampling_is_seeded_and_excludes_positives():
    w = np.array([100.0, 1, 1, 50, 1, 1, 1, 1])
    draws = [rdata.sample_negatives(3, w, {0, 3}, np.random.default_rng(7)) for _ in range(2)]
    assert draws[0] == draws[1] and len(set(draws[0])) == 3
    rng = np.random.default_rng(0)
    for _ in range(200):
        assert not {0, 3} & set(rdata.sample_negatives(3, w, {0, 3}, rng))
    with pytest.raises(ValueError, match="only 2 items"):
        rdata.sample_negatives(3, np.ones(4), {0, 1}, rng)


# ---------------------------------------------------------------- metrics against hand-computed rankings
def test_rank_scores_ties_and_exclusions():
    scores = np.array([0.2, 0.9, 0.5, 0.9, 0.5, 0.1])
    # item 1 is excluded (seen); order: 3 (0.9), 2 (0.5, earlier row), 4 (0.5), 0, 5
    r = rank_scores(scores, targets=[4, 5], exclude=[1], k=3)
    assert r == {"top": [3, 2, 4], "ranks": [3, 5]}
    assert rank_scores(scores, targets=[1], exclude=[1], k=1) == {"top": [1], "ranks": [1]}  # a target stays


def test_hr_ndcg_mrr_by_hand():
    assert per_user([1], 10) == (1.0, 1.0, 1.0)
    hr, ndcg, rr = per_user([4], 10)
    assert (hr, rr) == (1.0, 0.25) and ndcg == pytest.approx(1 / math.log2(5))
    assert per_user([11], 10) == (0.0, 0.0, 1 / 11)
    hr, ndcg, rr = per_user([2, 12], 10)  # two targets: one hit at 2, ideal DCG of two hits
    assert ndcg == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3))) and rr == 0.5
    m = ranking_metrics([{"top": [0, 1], "ranks": [1]}, {"top": [1, 2], "ranks": [3]}], catalogue_size=8, k=2,
                        cold=[False, True], bootstrap=200)
    assert m["hr@2"] == 0.5 and m["ndcg@2"] == 0.5 and m["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["coverage@2"] == 3 / 8 and m["cold_start"] == {"n": 1, "hr@2": 0.0, "ndcg@2": 0.0, "mrr": 1 / 3}
    assert m["hr@2_ci"][0] <= m["hr@2"] <= m["hr@2_ci"][1]


# ---------------------------------------------------------------- files and their errors
def test_catalogue_tags_and_templates(tmp_path):
    write_toy(tmp_path)
    cat = rdata.read_catalogue(tmp_path / "items.csv", "item_id", tags=tmp_path / "tags.csv")
    assert cat.text("100", "{title}. {genres}. {tags}") == "love film 0. Love, Drama. great"  # tags deduplicated
    assert cat.text("102", "{title}. {genres}. {tags}") == "city film 2. City, Drama"
    with pytest.raises(KeyError, match="year"):
        cat.text("100", "{year}")


def test_bad_files_name_the_line_and_field(tmp_path):
    write_toy(tmp_path)
    cat = rdata.read_catalogue(tmp_path / "items.csv", "item_id")
    (tmp_path / "bad.csv").write_text("user_id,item_id,timestamp\n1,100,5\n1,999,6\n")
    with pytest.raises(DataError, match=r"bad.csv:3 .*999") as e:
        rdata.read_interactions(tmp_path / "bad.csv", "user_id", "item_id", "timestamp", cat)
    assert e.value.field == "item_id"
    (tmp_path / "bad.csv").write_text("user_id,item_id,timestamp\n1,100,soon\n")
    with pytest.raises(DataError, match="bad.csv:2 .*not a number"):
        rdata.read_interactions(tmp_path / "bad.csv", "user_id", "item_id", "timestamp", cat)
    with pytest.raises(DataError, match="no column 'when'"):
        rdata.read_interactions(tmp_path / "bad.csv", "user_id", "item_id", "when", cat)
    kept = rdata.read_interactions(tmp_path / "log.csv", "user_id", "item_id", "timestamp", cat, "rating", 4.0)
    assert 0 < len(kept) < 12 * 8


# ---------------------------------------------------------------- the task, end to end
def toy_config(tmp_path, model_dir, **train):
    from tuneforge.config import config_from_dict

    return config_from_dict({
        "model": str(model_dir), "task": "recommendation", "output_dir": str(tmp_path / "run"), "seed": 3,
        "data": {"train": str(tmp_path / "log.csv"), "max_length": 48},
        "recommend": {"items": str(tmp_path / "items.csv"), "item_tags": str(tmp_path / "tags.csv"),
                      "item_id_column": "item_id", "user_column": "user_id", "history_length": 5,
                      "item_max_length": 16, "hard_negatives": 2, "targets_per_user": 4, "bootstrap": 50},
        "train": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "progress": False, "precision": "fp32", **train},
        "eval": {"baselines": ["popularity", "zero_shot"], "batch_size": 16},
    })


def test_collate_masks_false_negatives(tiny_bert_dir, tmp_path):
    from tuneforge.run import prepare

    write_toy(tmp_path)
    p = prepare(toy_config(tmp_path, tiny_bert_dir))
    train = p.features["train"]
    assert all(set(f["item_rows"][1:]).isdisjoint(f["positive_rows"]) for f in train)  # negatives never positive
    batch = p.task.collate(train[:8])
    b, m = 8, 8 * 3
    assert batch["item_input_ids"].shape[0] == m and batch["false_negatives"].shape == (b, m)
    rows = [f["item_rows"][0] for f in train[:8]] + [r for f in train[:8] for r in f["item_rows"][1:]]
    for i, f in enumerate(train[:8]):
        expected = [j != i and rows[j] in f["positive_rows"] for j in range(m)]
        assert batch["false_negatives"][i].tolist() == expected
    assert p.task.split_audit == {"users_with_future_in_train": 0, "test_items_seen_in_train": 0}


def test_train_evaluate_and_serve(tiny_bert_dir, tmp_path):
    from fastapi.testclient import TestClient

    from tuneforge.apps.recommend import Recommender
    from tuneforge.apps.routes import add_run_routes
    from tuneforge.cli import main
    from tuneforge.inference.predictor import Predictor
    from tuneforge.inference.server import create_app
    from tuneforge.runner import train

    write_toy(tmp_path)
    result = train(toy_config(tmp_path, tiny_bert_dir))
    report = json.loads((result.run_dir / "report.json").read_text())
    test = report["metrics"]["test"]
    assert test["n"] == 12 and 0 <= test["ndcg@10"] <= 1 and "ndcg@10_ci" in test and "cold_start" in test
    assert test["protocol"].startswith("full ranking over 30 items")
    assert {"popularity", "zero_shot"} <= set(report["baselines"])

    predictor = Predictor.from_run_dir(result.run_dir)
    assert len(predictor.predict(["100,103"])[0]["embedding"]) == 32  # tuneforge predict: the user's embedding
    with pytest.raises(ValueError, match="unknown item ids"):
        predictor.predict(["100,999"])
    app = create_app(predictor)
    assert add_run_routes(app, predictor) == ["/v1/recommend"]
    with TestClient(app) as client:
        r = client.post("/v1/recommend", json={"user": "1", "k": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        seen = set(Recommender.from_run_dir(result.run_dir).history["1"])
        assert len(body["items"]) == 5 and not {i["item"] for i in body["items"]} & seen
        assert all(i["because"] and i["because"][0]["item"] in seen for i in body["items"])
        scores = [i["score"] for i in body["items"]]
        assert scores == sorted(scores, reverse=True)
        new = client.post("/v1/recommend", json={"liked": ["100", "103"], "k": 3}).json()
        assert new["history_size"] == 2 and {b["item"] for i in new["items"] for b in i["because"]} <= {"100", "103"}
        assert client.post("/v1/recommend", json={"user": "nobody"}).status_code == 404
        assert client.post("/v1/recommend", json={"liked": ["999"]}).status_code == 422
        assert client.post("/v1/recommend", json={}).status_code == 422
    assert (result.run_dir / "recommend" / "item_index.npy").is_file()  # cached for the next start
    assert main(["recommend", str(result.run_dir), "--user", "2", "-k", "3"]) == 0
    assert main(["recommend", str(result.run_dir)]) == 2

    from tuneforge.apps.recommend.hybrid_eval import evaluate_hybrid

    both = evaluate_hybrid(result.run_dir, top_n=20)
    assert both["text"]["ndcg@10"] == pytest.approx(test["ndcg@10"], abs=1e-6)  # the same ranking as the report
    assert both["hybrid"]["n"] == 12 and len(both["ranker"]["standardised_coefficients"]) == 4
    assert (result.run_dir / "recommend" / "hybrid.json").is_file()


def test_als_baseline_ranks_from_collaborative_signal(tmp_path):
    pytest.importorskip("implicit")
    from tuneforge.config_sections import RecommendConfig
    from tuneforge.tasks.recommendation.baselines import als_scores

    write_toy(tmp_path, users=30, per_user=9)
    cat = rdata.read_catalogue(tmp_path / "items.csv", "item_id")
    taste = {g: [str(100 + i) for i in range(30) if i % 3 == g] for g in range(3)}
    known = {str(u): [taste[u % 3][(u // 3 + j) % 10] for j in range(6)] for u in range(30)}  # 6 of 10 each
    scores = als_scores(known, ["0", "1"], cat, RecommendConfig(als_factors=4, als_iterations=10), seed=0)
    assert scores.shape == (2, 30)
    same = [cat.index[i] for i in taste[0] if i not in known["0"]]  # user 0's taste, items they lack
    other = [cat.index[i] for i in taste[1] + taste[2]]
    assert scores[0, same].mean() > scores[0, other].mean()


@pytest.mark.shared
def test_movielens_small_reads_and_splits_without_leakage():
    folder = SHARED / "movielens_small"
    if not (folder / "ratings.csv").is_file():
        pytest.skip("../shared/datasets/movielens_small is not here")
    cat = rdata.read_catalogue(folder / "movies.csv", "movieId", tags=folder / "tags.csv")
    log = rdata.read_interactions(folder / "ratings.csv", "userId", "movieId", "timestamp", cat)
    assert (len(cat), len(log)) == (9742, 100836)
    splits = rdata.time_split(log)
    assert len(splits) == 610 and sum(len(s.test) for s in splits.values()) == 610
    assert rdata.leakage(splits) == {"users_with_future_in_train": 0, "test_items_seen_in_train": 0}


def test_repeated_interactions_count_once_at_their_first_time():
    log = [inter("u", "a", 1), inter("u", "b", 2), inter("u", "a", 3), inter("u", "c", 4), inter("u", "d", 5)]
    s = rdata.time_split(log)["u"]
    assert (s.train, s.validation, s.test) == (["a", "b"], ["c"], ["d"])


def test_hybrid_features_and_rerank_by_hand():
    from tuneforge.tasks.recommendation import hybrid as hy

    genres = [frozenset({"a"}), frozenset({"b"}), frozenset({"a", "b"}), frozenset()]
    text = np.array([0.5, 0.4, 0.3, 0.2])
    counts = np.array([0.0, 3.0, 1.0, 0.0])
    last = np.array([-np.inf, 86400.0 * 2, 86400.0 * 10, 0.0])
    x = hy.features(text, [0, 1, 2, 3], counts, last, now=86400.0 * 4, history_rows=[0, 1], genres=genres)
    assert x[:, 0].tolist() == [0.5, 0.4, 0.3, 0.2]
    assert x[:, 1] == pytest.approx(np.log1p([0, 3, 1, 0]))
    assert x[:, 2] == pytest.approx(np.log1p([hy.NEVER_DAYS, 2, 0, 4]))  # seen after "now": 0 days
    assert x[:, 3].tolist() == [0.5, 0.5, 1.0, 0.0]
    assert hy.candidates(text, [1], 2) == [0, 2]
    # hybrid order inside the top 3: 2, 0, 1; row 3 stays 4th; a target outside the top keeps its text rank
    r = hy.rerank(text, [0, 1, 2], np.array([0.5, 0.1, 0.9]), [1, 3], [], 2)
    assert r == {"top": [2, 0], "ranks": [3, 4]}
