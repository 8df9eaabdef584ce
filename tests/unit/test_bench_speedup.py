"""bench_train's speed-up to target: exact ratios, one-sided bounds from runs that never got there, and a check that
passes only when the median is known to clear the bar (a repeat where TuneForge missed the target is not dropped)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_train.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train_under_test", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(side, repeat, to_target, train_seconds=600.0, accuracy=0.9):
    return {"side": side, "repeat": repeat, "seed": 42 + repeat, "seconds_to_target": to_target,
            "train_seconds": train_seconds, "samples_per_second": 300.0, "final_accuracy": accuracy}


def test_speedup_intervals(bench):
    tf, hf = run("tuneforge", 0, 300.0), run("hf_tuned", 0, 600.0)
    assert bench.speedup(hf, tf) == (2.0, 2.0)
    assert bench.speedup(run("hf_tuned", 0, None, 700.0), tf) == (700.0 / 300.0, math.inf)  # HF never got there
    assert bench.speedup(hf, run("tuneforge", 0, None, 500.0)) == (0.0, 600.0 / 500.0)  # TuneForge never did
    assert bench.speedup(run("hf_tuned", 0, None), run("tuneforge", 0, None)) is None
    assert bench.show_speedup(2.0, 2.0) == "2.00x"
    assert bench.show_speedup(1.5, math.inf) == ">=1.50x"
    assert bench.show_speedup(0.0, 1.1) == "<=1.10x"


def summary_and_checks(bench, results):
    args = bench.parse_args(["--contenders", "tuneforge", "hf_tuned", "--repeats", str(len(results) // 2)])
    rows = bench.summarise(args, results)
    lines = bench.report(args, rows, results)
    return {r["side"]: r for r in rows}["hf_tuned"], next(x for x in lines if "vs hf_tuned >= 1.2x" in x)


def test_a_missed_target_makes_the_median_inconclusive_not_a_pass(bench):
    results = [run("tuneforge", 0, None, 607.0), run("hf_tuned", 0, 666.0),  # seed 42: only HF got there
               run("tuneforge", 1, 549.0), run("hf_tuned", 1, None, 695.0)]  # seed 43: only TuneForge did
    row, line = summary_and_checks(bench, results)
    assert row["tf_speedup_per_repeat"] == ["<=1.10x", ">=1.27x"]
    assert row["tf_speedup_interval"][1] is None and row["tf_speedup_to_target"] is None
    assert line.startswith("[FAIL]") and "inconclusive" in line


def test_bounds_that_clear_the_bar_pass(bench):
    results = [run("tuneforge", 0, 300.0), run("hf_tuned", 0, 700.0),
               run("tuneforge", 1, 300.0), run("hf_tuned", 1, None, 650.0),
               run("tuneforge", 2, 400.0), run("hf_tuned", 2, 360.0)]
    row, line = summary_and_checks(bench, results)
    assert row["tf_speedup_interval"] == [pytest.approx(650 / 300), pytest.approx(700 / 300)]
    assert line.startswith("[PASS]")


def saved(path, seeds, results, **setup):
    import json

    base = {"contenders": ["tuneforge", "hf_tuned"], "epochs": 3, "lr": 3e-05, "seed": seeds[0],
            "repeats": len(seeds), "vary_seed": True}
    path.write_text(json.dumps({"setup": {**base, **setup}, "results": results, "code": {"commit": "abc"}}))
    return str(path)


def test_pooling_renumbers_repeats_and_refuses_mismatches(bench, tmp_path):
    first = saved(tmp_path / "a.json", [42, 43], [run("tuneforge", 0, 300.0, accuracy=0.89),
                                                  run("hf_tuned", 0, 700.0, accuracy=0.91),
                                                  run("tuneforge", 1, 300.0, accuracy=0.90),
                                                  run("hf_tuned", 1, None, accuracy=0.895)])
    later = [{**r, "seed": r["seed"] + 2} for r in (run("tuneforge", 0, 310.0, accuracy=0.897),
                                                    run("hf_tuned", 0, 500.0, accuracy=0.898),
                                                    run("tuneforge", 1, 320.0, accuracy=0.899),
                                                    run("hf_tuned", 1, 650.0, accuracy=0.894))]
    second = saved(tmp_path / "b.json", [44, 45], later, seed=44)
    setup, results, provenance = bench.pool_results([first, second])
    assert setup["repeats"] == 4 and [p["seeds"] for p in provenance] == [[42, 43], [44, 45]]
    assert sorted({(r["repeat"], r["seed"]) for r in results}) == [(0, 42), (1, 43), (2, 44), (3, 45)]
    args = bench.parse_args(["--contenders", "tuneforge", "hf_tuned"])
    vars(args).update(setup)
    rows = {r["side"]: r for r in bench.summarise(args, results)}
    assert rows["tuneforge"]["final_accuracy"] == pytest.approx(0.898)  # median of 0.89, 0.90, 0.897, 0.899
    assert rows["hf_tuned"]["final_accuracy"] == pytest.approx(0.8965)
    assert len(rows["hf_tuned"]["tf_speedup_per_repeat"]) == 4
    with pytest.raises(SystemExit, match="lr"):
        bench.pool_results([first, saved(tmp_path / "c.json", [44], later[:2], seed=44, lr=5e-5)])
    with pytest.raises(SystemExit, match="seed 42"):
        bench.pool_results([first, saved(tmp_path / "d.json", [42], [run("tuneforge", 0, 1.0)])])
