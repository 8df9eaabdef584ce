"""The end of a search: best config YAML, the best trial's test metric, parameter importance and search.html."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import yaml

from tuneforge.io_utils import atomic_write_json, atomic_write_text


def trial_rows(study: Any, metric: str) -> list[dict[str, Any]]:
    """One row per trial: number, state, validation value, values tried, run folder."""
    rows = []
    for t in study.trials:
        rows.append({"number": t.number, "state": t.state.name, "validation": t.value, "params": dict(t.params),
                     "default": bool(t.user_attrs.get("default")), "run_dir": t.user_attrs.get("run_dir"),
                     "last_step": max(t.intermediate_values) if t.intermediate_values else None,
                     "seconds": t.duration.total_seconds() if t.duration else None})
    return rows


def importance(study: Any) -> dict[str, float]:
    """fANOVA-style importance of each searched key over the complete trials; {} with fewer than two."""
    import optuna

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if len(complete) < 2 or len({json.dumps(t.params, sort_keys=True) for t in complete}) < 2:
        return {}
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError):  # e.g. every complete trial scored the same
        return {}


def _test_metric(run_dir: str | None, metric: str) -> float | None:
    if not run_dir or not Path(run_dir, "report.json").is_file():
        return None
    report = json.loads(Path(run_dir, "report.json").read_text(encoding="utf-8"))
    value = report.get("metrics", {}).get("test", {}).get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def write_summary(spec: Any, study: Any, metric: str, direction: str) -> dict[str, Any]:
    """search.json, search.md, best_config.yaml and search.html in the search folder; returns search.json's data."""
    from tuneforge.search.study import trial_config

    rows = trial_rows(study, metric)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    summary: dict[str, Any] = {"metric": metric, "direction": direction, "config": str(spec.config_path),
                               "states": {s: sum(r["state"] == s for r in rows) for s in {r["state"] for r in rows}},
                               "importance": importance(study), "trials": rows, "best": None, "default": None}
    if complete:
        best = study.best_trial
        row = next(r for r in rows if r["number"] == best.number)
        values = {p.key: v for p in spec.params if (v := _param_value(p, best.params)) is not None}
        best_path = spec.folder / "best_config.yaml"
        cfg = trial_config(spec, values, Path(f"{spec.cfg.output_dir.rstrip('/')}-best"))
        data = cfg.to_dict()
        data.pop("search", None)
        atomic_write_text(best_path, f"# best of {len(rows)} trials on validation {metric}: {best.value:.4f}\n"
                                     f"# tuneforge train {best_path}\n" + yaml.safe_dump(data, sort_keys=False))
        # the test split is read for the best trial only, after the search chose it on validation
        summary["best"] = {**row, "values": values, "test": _test_metric(row["run_dir"], metric),
                           "config": str(best_path)}
    default = next((r for r in rows if r["default"] and r["state"] == "COMPLETE"), None)
    if default is not None:
        summary["default"] = {"number": default["number"], "validation": default["validation"],
                              "params": default["params"]}
    atomic_write_json(spec.folder / "search.json", summary)
    atomic_write_text(spec.folder / "search.md", render_markdown(summary))
    atomic_write_text(spec.folder / "search.html", render_html(summary, study))
    return summary


def _param_value(p: Any, params: dict[str, Any]) -> Any:
    if p.key not in params:
        return None
    v = params[p.key]
    simple = all(c is None or isinstance(c, (bool, int, float, str)) for c in p.choices)
    return p.choices[v] if p.kind == "choice" and not simple else v


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def render_markdown(summary: dict[str, Any]) -> str:
    """The trial table, the best trial (with its test metric) and the importance table."""
    metric = summary["metric"]
    keys = sorted({k for r in summary["trials"] for k in r["params"]})
    out = [f"# Search: validation {metric} ({summary['direction']})", ""]
    best = summary["best"]
    if best:
        out += [f"Best trial {best['number']}: validation {metric} {best['validation']:.4f}, test {metric} "
                f"{_cell(best['test'])} (the test split scored for this trial only).", "",
                f"Best config: `{best['config']}` (`tuneforge train {best['config']}`)", ""]
    else:
        out += ["No trial completed.", ""]
    if summary.get("default"):
        out += [f"Default values (trial {summary['default']['number']}): validation {metric} "
                f"{summary['default']['validation']:.4f}", ""]
    out += ["| trial | state | validation | last step | " + " | ".join(keys) + " |",
            "|---|---|---|---|" + "---|" * len(keys)]
    for r in summary["trials"]:
        name = f"{r['number']}{' (default)' if r['default'] else ''}"
        out.append(f"| {name} | {r['state'].lower()} | {_cell(r['validation'])} | {_cell(r['last_step'])} | "
                   + " | ".join(_cell(r["params"].get(k)) for k in keys) + " |")
    if summary["importance"]:
        out += ["", "| key | importance |", "|---|---|"]
        out += [f"| {k} | {v:.3f} |" for k, v in summary["importance"].items()]
    return "\n".join(out) + "\n"


def render_html(summary: dict[str, Any], study: Any) -> str:
    """The markdown tables as preformatted text plus Optuna's plotly figures, with plotly.js inline (offline)."""
    parts = []
    try:
        import optuna.visualization as vis

        figures = [vis.plot_optimization_history(study), vis.plot_intermediate_values(study)]
        if len({k for t in study.trials for k in t.params}) > 1:
            figures.append(vis.plot_parallel_coordinate(study))
        if summary["importance"]:
            figures.append(vis.plot_param_importances(study))
        for i, fig in enumerate(figures):
            parts.append(fig.to_html(full_html=False, include_plotlyjs=i == 0))
    except ImportError:  # plotly is in the search extra; without it the page keeps the tables
        parts.append("<p>Plots need plotly: pip install 'tuneforge[search]'.</p>")
    except (ValueError, RuntimeError) as e:  # too few trials for a figure
        parts.append(f"<p>No plots: {html.escape(str(e))}</p>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Search</title></head><body "
            "style='font-family:sans-serif;max-width:1100px;margin:auto'>"
            f"<pre>{html.escape(render_markdown(summary))}</pre>{''.join(parts)}</body></html>")
