"""Evaluation statistics against hand-computed and textbook values."""

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tuneforge.evaluation import stats


def test_mcnemar_exact_and_mid_p_by_hand():
    # 7 rows only A gets right, 4 only B: P(X <= 4 | n=11) = (1 + 11 + 55 + 165 + 330) / 2048
    a = [1] * 7 + [0] * 4 + [1] * 5 + [0] * 3
    b = [0] * 7 + [1] * 4 + [1] * 5 + [0] * 3
    r = stats.mcnemar(a, b)
    assert (r["b"], r["c"]) == (7, 4)
    assert r["p_exact"] == pytest.approx(2 * 562 / 2048)
    assert r["p_mid"] == pytest.approx(2 * 562 / 2048 - 330 / 2048)


def test_mcnemar_fagerland_example():
    # Fagerland, Lydersen & Laake (2013), BMC Med Res Methodol 13:91, Table 1: b = 1, c = 7 discordant pairs;
    # exact conditional p = 0.070, mid-p = 0.039
    r = stats.mcnemar([1] + [0] * 7 + [1] * 10, [0] + [1] * 7 + [1] * 10)
    assert round(r["p_exact"], 3) == 0.070
    assert round(r["p_mid"], 3) == 0.039


def test_mcnemar_no_disagreement_and_ties():
    assert stats.mcnemar([1, 0, 1], [1, 0, 1])["p_exact"] == 1.0
    r = stats.mcnemar([1, 0], [0, 1])  # b = c = 1: nothing to tell them apart
    assert r["p_exact"] == 1.0 and r["p_mid"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="equal lengths"):
        stats.mcnemar([1, 0], [1])


def test_wilson_interval_known_value():
    # Wilson (1927) interval for 8/10 at 95%: 0.4902 to 0.9433 (Newcombe 1998, method 3)
    lo, hi = stats.wilson_ci(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert all(math.isnan(x) for x in stats.wilson_ci(0, 0))


def test_bootstrap_ci_matches_normal_approximation_and_is_seeded():
    gold = np.zeros(400, dtype=int)
    pred = np.r_[np.zeros(320, dtype=int), np.ones(80, dtype=int)]  # accuracy 0.8
    lo, hi = stats.bootstrap_ci(stats.accuracy, gold, pred, n_resamples=2000, seed=1)
    half = 1.96 * math.sqrt(0.8 * 0.2 / 400)  # 0.0392
    assert lo == pytest.approx(0.8 - half, abs=0.01) and hi == pytest.approx(0.8 + half, abs=0.01)
    assert stats.bootstrap_ci(stats.accuracy, gold, pred, n_resamples=2000, seed=1) == (lo, hi)


def test_macro_f1_matches_scikit_learn():
    rng = np.random.default_rng(0)
    gold, pred = rng.integers(0, 5, 200), rng.integers(0, 4, 200)
    assert stats.macro_f1(gold, pred) == pytest.approx(f1_score(gold, pred, average="macro"))


def test_approximate_randomisation():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 300)
    same = stats.approximate_randomisation(stats.macro_f1, gold, gold, gold, n_rounds=200)
    assert same["p_value"] == 1.0 and same["difference"] == 0.0
    noisy = np.where(rng.random(300) < 0.5, rng.integers(0, 3, 300), gold)  # ~67% accurate
    far = stats.approximate_randomisation(stats.macro_f1, gold, gold, noisy, n_rounds=200)
    assert far["difference"] > 0.2 and far["p_value"] == pytest.approx(1 / 201)
    slightly = np.where(np.arange(300) < 3, (gold + 1) % 3, gold)  # 3 rows differ: no evidence
    assert stats.approximate_randomisation(stats.macro_f1, gold, gold, slightly, n_rounds=200)["p_value"] > 0.05


def test_benjamini_hochberg_and_fisher():
    assert stats.benjamini_hochberg([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.04, 0.04])
    assert stats.fisher_gap(5, 10, 50, 100) == pytest.approx(1.0)
    assert stats.fisher_gap(0, 20, 90, 100) < 1e-6


def test_reliability_bins_edges():
    bins = stats.reliability_bins([0.1, 0.5, 1.0, 0.55], [True, False, True, True], bins=2)
    assert [b["count"] for b in bins] == [2, 2]  # 0.5 is the first bin's upper edge
    assert bins[1]["accuracy"] == 1.0 and bins[0]["confidence"] == pytest.approx(0.3)
