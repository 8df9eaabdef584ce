"""Calibration maths: temperature scaling, ECE, reliability bins, thresholds, abstention and the curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tuneforge.evaluation import calibration as cal


def test_temperature_matches_the_hand_computed_nll_minimum():
    # two classes, every row with margin d = 4; a share p = 0.75 is right. NLL(β) = p·log(1 + e^{-βd}) +
    # (1 - p)·log(1 + e^{βd}) is stationary where σ(βd) = p, so T = 1/β = d / ln(p / (1 - p)) = 4 / ln 3.
    logits = np.array([[4.0, 0.0]] * 3 + [[0.0, 4.0]])
    t = cal.fit_temperature(logits, [0, 0, 0, 0])
    assert t == pytest.approx(4 / math.log(3), rel=1e-4)
    assert cal.nll(logits, np.zeros(4, int), t) < min(cal.nll(logits, np.zeros(4, int), t * f) for f in (0.98, 1.02))


def test_temperature_of_three_classes_is_a_minimum_and_shrinks_overconfidence():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3))
    logits[np.arange(300), labels] += 1.0
    logits *= 5.0  # far too confident
    t = cal.fit_temperature(logits, labels)
    assert t > 2.0
    grid = np.exp(np.linspace(np.log(0.5), np.log(50), 400))
    assert t == pytest.approx(grid[np.argmin([cal.nll(logits, labels, g) for g in grid])], rel=0.02)


def test_ece_on_a_hand_made_example():
    # 3 bins. Bin 0 (0, 1/3]: conf 0.2 right -> |1 - 0.2| = 0.8. Bin 1 (1/3, 2/3]: confs 0.5, 0.6, one right ->
    # |0.5 - 0.55| = 0.05. Bin 2 (2/3, 1]: confs 0.9, 1.0, both right -> |1 - 0.95| = 0.05.
    conf = [0.2, 0.5, 0.6, 0.9, 1.0]
    ok = [True, True, False, True, True]
    assert cal.ece(conf, ok, bins=3) == pytest.approx((0.8 * 1 + 0.05 * 2 + 0.05 * 2) / 5)
    bins = cal.reliability_bins(conf, ok, bins=3)
    assert [b["count"] for b in bins] == [1, 2, 2]
    assert bins[1]["accuracy"] == 0.5 and bins[1]["confidence"] == pytest.approx(0.55)
    assert cal.ece([0.8] * 5, [True] * 4 + [False], bins=10) == pytest.approx(0.0)


def test_a_bin_edge_belongs_to_the_lower_bin():
    bins = cal.reliability_bins([0.5, 0.0, 1.0], [True, True, True], bins=2)
    assert [b["count"] for b in bins] == [2, 1]


def test_thresholds_for_coverage_precision_and_oos_recall():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    correct = np.array([True, True, False, True, False])
    assert cal.threshold_for_coverage(scores, 0.6) == 0.7  # answers 3 of 5
    assert cal.threshold_for_coverage(scores, 0.61) == 0.6
    # cumulative precision 1, 1, 2/3, 3/4, 3/5: the widest coverage at >= 0.75 stops at 0.6
    assert cal.threshold_for_precision(scores, correct, 0.75) == 0.6
    assert cal.threshold_for_precision(scores, correct, 1.0) == 0.8
    assert cal.threshold_for_precision(scores, np.zeros(5, bool), 0.5) == math.inf
    # ties are answered together: the tie at 0.8 holds a wrong row, so 100% precision means only 0.9
    assert cal.threshold_for_precision(np.array([0.9, 0.8, 0.8]), np.array([True, True, False]), 1.0) == 0.9
    oos = np.array([0.1, 0.3, 0.2, 0.95])
    t = cal.threshold_for_oos_recall(oos, 0.7)  # reject 3 of 4 -> just above 0.3
    assert 0.3 < t < 0.3001
    assert (oos < t).mean() == 0.75


def test_select_threshold_rules_and_abstention_metrics():
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.4, 0.85])
    correct = np.array([True, True, False, False, False, False])
    is_oos = np.array([False, False, False, False, True, True])
    t, rule, target = cal.select_threshold("auto", 0.5, scores, correct, is_oos)
    assert rule == "oos_recall" and target == 0.5 and 0.4 < t < 0.41
    m = cal.abstention_metrics(scores, correct, is_oos, t)
    assert m == {"in_scope_coverage": 0.75, "in_scope_accuracy": 0.5, "answered_accuracy": pytest.approx(2 / 3),
                 "oos_recall": 0.5}
    t, rule, _ = cal.select_threshold("auto", None, scores, correct, np.zeros(6, bool))
    assert rule == "coverage" and t == cal.threshold_for_coverage(scores, 0.9)
    with pytest.raises(ValueError, match="known: auto, oos_recall"):
        cal.select_threshold("magic", None, scores, correct, is_oos)


def test_scores_curves_and_auroc():
    logits = np.array([[5.0, 0.0], [1.0, 0.5], [0.2, 0.1]])
    msp = cal.oos_score(logits, "max_softmax")
    assert msp[0] > msp[1] > msp[2]
    energy = cal.oos_score(logits, "energy", 2.0)
    assert energy[0] == pytest.approx(2.0 * np.log(np.exp(2.5) + 1.0))
    assert cal.auroc([0.9, 0.8], [0.1, 0.85]) == pytest.approx(0.75)
    assert cal.auroc([0.9], []) is None
    curve = cal.coverage_risk_curve(np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, False, True, True]), points=4)
    assert curve["coverage"] == [0.25, 0.5, 0.75, 1.0] and curve["risk"] == [0.0, 0.5, 0.3333, 0.25]
    assert curve["aurc"] == pytest.approx((0 + 0.5 + 1 / 3 + 0.25) / 4)
    d = cal.distance_score(np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[2.0, 0.0], [0.0, 3.0]]))
    assert d == pytest.approx([1.0, 1 / np.sqrt(2)])
