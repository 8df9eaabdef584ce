"""A study's summary: per (method, budget) statistics and costs, the paired test, study.json, study.md and the
learning-curve plot."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.io_utils import atomic_write_json, atomic_write_text
from tuneforge.study.spec import Cell, StudySpec, labels_used
from tuneforge.study.stats import bootstrap_ci, mean_sd, paired_bootstrap


def summarise(grid: list[Cell], results: dict[Cell, dict[str, Any]], facts: dict[str, Any]) -> dict[str, Any]:
    """Rows per (method, budget) over seeds, and per budget the paired test between the two best methods."""
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
    for cell in grid:
        groups[(cell.method, cell.budget)].append(results.get(cell, {"status": "not run"}) | {"seed": cell.seed})
    rows, correct = [], {}
    for (method, budget), runs in groups.items():
        ok = [r for r in runs if r.get("status") == "ok"]
        row: dict[str, Any] = {"method": method, "budget": budget, "seeds": [r["seed"] for r in ok],
                               "failed": [{"seed": r["seed"], "status": r.get("status"), "log": r.get("log")}
                                          for r in runs if r.get("status") != "ok"]}
        if ok:
            metric = ok[0]["main_metric"]
            values = [r["test"][metric] for r in ok]
            matrix = np.array([[p == g for p, g in zip(r["predicted"], r["gold"])] for r in ok], dtype=float)
            correct[(method, budget)] = matrix
            mean, sd = mean_sd(values)
            lo, hi = bootstrap_ci(matrix)
            row.update({"metric": metric, "values": values, "mean": mean, "sd": sd, "ci95": [lo, hi],
                        "labels": round(float(np.mean([labels_used(budget, r.get("per_class"), facts["train_size"])
                                                       for r in ok]))),
                        **{k: _mean(ok, k) for k in ("train_seconds", "wall_seconds", "peak_rss_mb",
                                                     "trainable_parameters")}})
        rows.append(row)
    return {"rows": rows, "paired_tests": _paired_tests(rows, correct)}


def _mean(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return round(float(np.mean(vals)), 1) if vals else None


def _paired_tests(rows: list[dict[str, Any]], correct: dict[tuple[str, Any], np.ndarray]) -> list[dict[str, Any]]:
    """Per label budget, the best two methods by mean (no-label methods compete at every budget)."""
    free = [r for r in rows if r["budget"] == 0 and "mean" in r]
    out = []
    for budget in dict.fromkeys(r["budget"] for r in rows if r["budget"] != 0):
        ranked = sorted([r for r in rows if r["budget"] == budget and "mean" in r] + free, key=lambda r: -r["mean"])
        if len(ranked) < 2:
            continue
        a, b = ranked[0], ranked[1]
        test = paired_bootstrap(correct[(a["method"], a["budget"])], correct[(b["method"], b["budget"])])
        out.append({"budget": budget, "best": a["method"], "second": b["method"], **test})
    return out


def markdown(summary: dict[str, Any], spec: StudySpec, facts: dict[str, Any]) -> str:
    lines = [f"# Study: {Path(spec.source).name}", "",
             f"Base config `{spec.base.name}`; test split: {facts['test_split']} ({facts['test_size']} examples); "
             f"train pool {facts['train_size']}; seeds {spec.seeds} (each seed is another draw of the labelled "
             "examples).", "",
             "| method | budget | labels | mean ± sd | 95% CI | seeds | train s | peak RSS MB | trainable |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summary["rows"]:
        if "mean" not in r:
            state = "not run yet" if all(f["status"] == "not run" for f in r["failed"]) else "failed"
            lines.append(f"| {r['method']} | {r['budget']} | – | {state} | | 0 | | | |")
            continue
        budget = "none" if r["budget"] == 0 else r["budget"]
        lines.append(f"| {r['method']} | {budget} | {r['labels']} | {r['mean']:.4f} ± {r['sd']:.4f} | "
                     f"{r['ci95'][0]:.3f}–{r['ci95'][1]:.3f} | {len(r['seeds'])} | {_fmt(r['train_seconds'])} | "
                     f"{_fmt(r['peak_rss_mb'])} | {_fmt(r['trainable_parameters'], ',.0f')} |")
    lines += ["", "Paired bootstrap over test examples (per-example accuracy averaged over seeds), best two methods "
              "per budget:", ""]
    for t in summary["paired_tests"]:
        lines.append(f"- budget {t['budget']}: {t['best']} − {t['second']} = {t['difference']:+.4f} "
                     f"(95% CI {t['ci_low']:+.4f}…{t['ci_high']:+.4f}, p = {t['p_value']:.4f})")
    return "\n".join(lines) + "\n"


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "" if v is None else format(v, spec)


def plot(summary: dict[str, Any], path: Path, title: str) -> bool:
    """Accuracy against labelled examples (log scale) per method, with 95% CI bands; methods without labels as
    horizontal lines. False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in summary["rows"]:
        if "mean" in r:
            by_method[r["method"]].append(r)
    xs_all = [r["labels"] for rs in by_method.values() for r in rs if r["labels"]] or [1]
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]  # one colour a method: axhline skips the cycle
    for i, (method, rs) in enumerate(by_method.items()):
        color = palette[i % len(palette)]
        if all(r["budget"] == 0 for r in rs):
            r = rs[0]
            ax.axhline(r["mean"], linestyle="--", color=color, label=f"{method} (no labels)")
            ax.axhspan(r["ci95"][0], r["ci95"][1], color=color, alpha=0.12)
            continue
        rs = sorted(rs, key=lambda r: r["labels"])
        x = [r["labels"] for r in rs]
        ax.plot(x, [r["mean"] for r in rs], marker="o", color=color, label=method)
        if len(rs) == 1:  # a band needs two budgets: one budget's interval is an error bar
            r = rs[0]
            ax.errorbar(x, [r["mean"]], yerr=[[r["mean"] - r["ci95"][0]], [r["ci95"][1] - r["mean"]]],
                        color=color, capsize=4)
        else:
            ax.fill_between(x, [r["ci95"][0] for r in rs], [r["ci95"][1] for r in rs], color=color, alpha=0.18)
    ax.set_xscale("log")
    ax.set_xlim(min(xs_all) / 1.3, max(xs_all) * 1.3)
    ax.set_xlabel("labelled training examples")
    ax.set_ylabel(next((r["metric"] for r in summary["rows"] if "metric" in r), "accuracy"))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    fig.savefig(tmp, metadata={"Date": None} if path.suffix == ".svg" else None)
    plt.close(fig)
    tmp.replace(path)
    return True


def write_outputs(spec: StudySpec, grid: list[Cell], results: dict[Cell, dict[str, Any]],
                  facts: dict[str, Any]) -> dict[str, Any]:
    summary = summarise(grid, results, facts)
    out = {"study": spec.source, "base": str(spec.base), "seeds": spec.seeds, "budgets": spec.budgets,
           "methods": spec.methods, "split_seed": spec.split_seed, **facts, **summary,
           "cells": {c.key: {k: v for k, v in results.get(c, {}).items() if k not in ("predicted", "gold")}
                     for c in grid}}
    atomic_write_json(spec.output_dir / "study.json", out)
    atomic_write_text(spec.output_dir / "study.md", markdown(summary, spec, facts))
    plot(summary, spec.output_dir / "learning_curve.svg", f"{Path(spec.source).stem}: accuracy vs labels")
    return out
