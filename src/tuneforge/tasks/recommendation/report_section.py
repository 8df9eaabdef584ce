"""The recommendation run's part of report.html: ranking metrics with intervals for the tuned bi-encoder and each
baseline (all test users and the cold-start slice), and the re-rankers' comparison when ``recommend/rerank.json``
(``tuneforge recommend RUN --fit-reranker``) is there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneforge.evaluation.report_sections import esc, pct, table

RERANKED = {"text": "bi-encoder alone", "hybrid": "+ hybrid ranker", "cross_encoder": "+ cross-encoder",
            "hybrid_over_cross": "+ hybrid over the cross-encoder's score"}


def _cell(m: dict[str, Any], key: str) -> str:
    if key not in m:
        return "–"
    lo_hi = m.get(f"{key}_ci")  # two decimals of a percent: NDCG@10 differences here are tenths of a point
    band = f' <span class="ci">[{pct(lo_hi[0], 2)}, {pct(lo_hi[1], 2)}]</span>' if lo_hi else ""
    return pct(m[key], 2) + band


def _row(name: str, m: dict[str, Any], k: int, bold: bool = False) -> list[str]:
    cold = m.get("cold_start") or {}
    label = f"<b>{esc(name)}</b>" if bold else esc(name)
    cov = m.get(f"coverage@{k}")
    return [label, str(m.get("n", "–")), _cell(m, f"hr@{k}"), _cell(m, f"ndcg@{k}"), _cell(m, "mrr"),
            f"{100 * cov:.1f}%" if cov is not None else "–", str(cold.get("n", "–")), _cell(cold, f"ndcg@{k}")]


def _head(k: int) -> list[str]:
    return ["model", "users", f"HR@{k} % [95% CI]", f"NDCG@{k} % [95% CI]", "MRR % [95% CI]",
            f"coverage@{k}", "cold-start users", f"cold-start NDCG@{k} % [95% CI]"]


def ranking_section(report: dict[str, Any], run_dir: str | Path) -> str:
    """HTML tables of the run's ranking metrics; empty when the report holds none."""
    test = report["metrics"].get(report.get("test_split", "test"), {})
    k = next((int(key.split("@")[1]) for key in test if key.startswith("ndcg@")), None)
    if k is None:
        return ""
    rows = [_row(name, m, k) for name, m in report.get("baselines", {}).items()]
    rows.append(_row("fine-tuned bi-encoder", test, k, bold=True))
    out = table(_head(k), rows) + f"<p class=note>{esc(test.get('protocol', ''))}. Intervals: percentile " \
        "bootstrap over users. Cold start: the test item had few " \
        "training interactions (recommend.cold_start_max).</p>"
    path = Path(run_dir) / "recommend" / "rerank.json"
    if path.is_file():
        rr = json.loads(path.read_text())
        fit = rr.get("cross_encoder_fit", {})
        rows = [_row(label, rr[key], k, bold=key == "text") for key, label in RERANKED.items() if key in rr]
        out += f"<h3>Re-ranking the bi-encoder's top {rr.get('rerank_k')}</h3>" + table(_head(k), rows) + \
            f"<p class=note>Cross-encoder: {fit.get('targets')} training targets with {fit.get('negatives')} hard " \
            f"negatives each from the bi-encoder's top {fit.get('rerank_k')}, tuned in {fit.get('fit_seconds')} s; " \
            f"{rr.get('timing', {}).get('cross_encoder_ms_per_user')} ms per user to re-rank in evaluation.</p>"
    return out
