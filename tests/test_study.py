"""``tuneforge study``: statistics helpers, the study file, and a tiny grid that resumes without redoing cells."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from tests.test_smoke_pipeline import write_toy_csv
from tuneforge.config_typing import ConfigError
from tuneforge.study.spec import Cell, budget_overrides, cell_overrides, cells, load_study, restrict
from tuneforge.study.stats import bootstrap_ci, mean_sd, paired_bootstrap


def test_mean_sd_and_bootstrap_interval():
    assert mean_sd([0.8, 0.9, 1.0]) == (0.9, 0.1)
    assert mean_sd([0.5]) == (0.5, 0.0)
    correct = np.array([[1, 1, 0, 1] * 25, [1, 0, 0, 1] * 25], dtype=float)  # seed means 0.75 and 0.5
    lo, hi = bootstrap_ci(correct, iters=500)
    assert lo < correct.mean() < hi and lo > 0.4 and hi < 0.85
    assert bootstrap_ci(np.ones((3, 10))) == (1.0, 1.0)


def test_paired_bootstrap_sees_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(0)
    a = (rng.random((3, 400)) < 0.9).astype(float)
    b = (rng.random((3, 400)) < 0.6).astype(float)
    strong = paired_bootstrap(a, b, iters=1000)
    assert strong["difference"] > 0.2 and strong["p_value"] < 0.01 and strong["ci_low"] > 0
    same = paired_bootstrap(a, a.copy(), iters=1000)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    with pytest.raises(ValueError, match="same test examples"):
        paired_bootstrap(a, b[:, :10])


def test_study_file_budgets_and_cells(tmp_path):
    (tmp_path / "base.yaml").write_text("seed: 3\n")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "methods": {"zero": {"fewshot.method": "zero_shot"},
                                                                   "full": {"train.epochs": 2}},
                                    "budgets": [4, "10%", "100%"], "seeds": [1, 2], "split_seed": 7}))
    spec = load_study(path)
    grid = cells(spec)
    assert grid[0] == Cell("zero", 0, 1) and len(grid) == 1 + 3 * 2
    assert budget_overrides(4, 1000, 3) == {"data.shots_per_class": 4}
    assert budget_overrides("10%", 1000, 3) == {"data.shots_per_class": 34}
    assert budget_overrides("100%", 1000, 3) == {"data.shots_per_class": None}
    ov = cell_overrides(spec, Cell("full", 4, 2), {"data.shots_per_class": 4})
    assert "train.epochs=2" in ov and "seed=2" in ov and "data.split.seed=7" in ov and "eval.baselines=[]" in ov
    path.write_text(yaml.safe_dump({"base": "b.yaml", "methods": {"m": {}}, "budgets": ["lots"], "seeds": [1]}))
    with pytest.raises(ConfigError, match="budgets: 'lots' is neither"):
        load_study(path)
    path.write_text(yaml.safe_dump({"base": "base.yaml", "methods": {"m": {}}, "budgets": [2], "seeds": [1]}))
    assert load_study(path).split_seed == 3  # the base run's seed freezes the split for every cell


def test_study_part_of_the_grid(tmp_path):
    (tmp_path / "base.yaml").write_text("seed: 3\n")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "methods": {"zero": {"fewshot.method": "zero_shot"},
                                                                   "full": {"train.epochs": 2}},
                                    "budgets": [4, "10%"], "seeds": [1, 2, 3]}))
    spec = load_study(path)
    part = restrict(spec, ["full"], ["10%"], ["2", "3"])
    assert cells(part) == [Cell("full", "10%", 2), Cell("full", "10%", 3)]
    assert restrict(spec).methods == spec.methods and restrict(spec, budgets=["4"]).budgets == [4]
    with pytest.raises(ConfigError, match="unknown method 'lora'; known: full, zero"):
        restrict(spec, ["lora"])
    with pytest.raises(ConfigError, match="unknown seed '9'; known: 1, 2, 3"):
        restrict(spec, seeds=["9"])


def test_a_method_can_run_only_some_budgets(tmp_path):
    (tmp_path / "base.yaml").write_text("seed: 3\n")
    path = tmp_path / "s.yaml"
    study = {"base": "base.yaml", "budgets": [8, 32, "100%"], "seeds": [1],
             "methods": {"setfit": {"fewshot.method": "setfit", "budgets": [8, 32]}, "full": {"train.epochs": 2}}}
    path.write_text(yaml.safe_dump(study))
    spec = load_study(path)
    assert [c.key for c in cells(spec)] == ["full/8/seed1", "setfit/8/seed1", "full/32/seed1", "setfit/32/seed1",
                                            "full/100pct/seed1"]
    assert "budgets" not in spec.methods["setfit"]  # not a config override
    assert cells(restrict(spec, budgets=["100%"])) == [Cell("full", "100%", 1)]
    study["methods"]["setfit"]["budgets"] = [16]
    path.write_text(yaml.safe_dump(study))
    with pytest.raises(ConfigError, match="methods.setfit.budgets must be a list of the study's budgets"):
        load_study(path)


@pytest.mark.slow
def test_tiny_study_runs_reports_and_resumes(tiny_bert_dir, tmp_path, monkeypatch):
    import tuneforge.study.grid as grid_mod
    from tuneforge.study import run_study

    data = tmp_path / "toy.csv"
    write_toy_csv(data)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({
        "model": str(tiny_bert_dir), "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.2}},
        "train": {"epochs": 2, "batch_size": 4, "lr": 3e-3, "precision": "fp32"}}))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "base": "base.yaml", "output_dir": str(tmp_path / "study"), "budgets": [3], "seeds": [1, 2],
        "methods": {"zero_shot": {"fewshot.method": "zero_shot"}, "full": {}}}))
    ran = []
    real = grid_mod.run_one
    monkeypatch.setattr(grid_mod, "run_one", lambda spec, cell, *a: ran.append(cell.key) or real(spec, cell, *a))
    out = run_study(load_study(tmp_path / "s.yaml"), progress=False)
    assert ran == ["zero_shot/0/seed1", "full/3/seed1", "full/3/seed2"]
    rows = {(r["method"], r["budget"]): r for r in out["rows"]}
    full = rows[("full", 3)]
    assert full["seeds"] == [1, 2] and full["labels"] == 6 and full["ci95"][0] <= full["mean"] <= full["ci95"][1]
    assert full["peak_rss_mb"] > 0 and full["trainable_parameters"] > 0
    assert out["paired_tests"][0]["budget"] == 3 and {out["paired_tests"][0]["best"],
                                                      out["paired_tests"][0]["second"]} == {"full", "zero_shot"}
    study = tmp_path / "study"
    assert (study / "learning_curve.svg").read_text().lstrip().startswith("<?xml")
    assert "| full | 3 | 6 |" in (study / "study.md").read_text()
    # resume: finished cells are skipped; a cell whose result is missing (killed mid-run) runs again
    (study / "cells" / "full" / "3" / "seed2" / "cell.json").unlink()
    ran.clear()
    again = run_study(load_study(tmp_path / "s.yaml"), progress=False)
    assert ran == ["full/3/seed2"]
    assert json.loads((study / "study.json").read_text())["rows"] == again["rows"]


def test_learning_curve_draws_bands_lines_and_single_budget_error_bars(tmp_path):
    pytest.importorskip("matplotlib")
    from tuneforge.study.report import plot

    def row(method, budget, labels, mean):
        return {"method": method, "budget": budget, "labels": labels, "mean": mean, "ci95": [mean - 0.05, mean + 0.05],
                "metric": "accuracy"}

    summary = {"rows": [row("zero_shot", 0, 0, 0.6), row("full", 8, 24, 0.55), row("full", "100%", 2000, 0.95),
                        row("lora", 128, 384, 0.8), {"method": "icl", "budget": 8, "failed": []}]}
    svg = tmp_path / "curve.svg"
    assert plot(summary, svg, "toy")
    text = svg.read_text()
    # one legend entry per plotted method; the method that never ran is left out
    assert all(name in text for name in ("zero_shot (no labels)", "full", "lora")) and "icl" not in text
    assert not list(tmp_path.glob(".*tmp*"))


def test_eta_uses_each_cells_own_mean_and_the_overall_mean_for_unseen_ones():
    from tuneforge.study.grid import estimate_left

    seconds = {("zero_shot", 0): [10.0], ("full", 8): [60.0, 80.0]}
    left = [Cell("full", 8, 3), Cell("full", "100%", 1), Cell("zero_shot", 0, 2)]
    # full/8: its mean 70; full/100% unseen: the mean over all three finished cells, 50; zero_shot: 10
    assert estimate_left(seconds, left) == pytest.approx(70 + 50 + 10)
    assert estimate_left({}, left) == 0.0
