"""report.html end to end on a tiny trained run: saved predictions, the page's sections, `tuneforge report`
(rebuild and compare), `tuneforge explain` / Predictor.explain, and the page rendered in headless Chromium."""

import json
import shutil
import subprocess
import time

import pytest

from tests.test_smoke_pipeline import write_toy_csv
from tuneforge.cli import main
from tuneforge.config import config_from_dict
from tuneforge.runner import train

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run_dir(tiny_bert_dir, tmp_path_factory):  # bf16: the analysis must run the fp32 forward for IG
    tmp = tmp_path_factory.mktemp("html_report")
    data = tmp / "toy.csv"
    write_toy_csv(data)
    cf = tmp / "cf.yaml"
    cf.write_text("pairs:\n  name: [[john, mary]]\n  place: [[paris, london]]\n"
                  "templates:\n  name: ['{term} love this film', '{term} hate the movie']\n"
                  "  place: ['it was bad in {term}', 'great film in {term}']\n")
    cfg = config_from_dict({
        "model": str(tiny_bert_dir), "output_dir": str(tmp / "run"), "seed": 3,
        "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.25}},
        "train": {"epochs": 2, "batch_size": 8, "lr": 3e-3, "progress": False, "precision": "bf16",
                  "trackers": []},
        "eval": {"baselines": ["majority"], "slices": ["length", "source"], "counterfactuals": str(cf)},
    })
    return train(cfg).run_dir


def test_run_saves_predictions_and_writes_the_page(run_dir):
    rows = [json.loads(line) for line in (run_dir / "predictions" / "test.jsonl").read_text().splitlines()]
    base = (run_dir / "predictions" / "baseline_majority.jsonl").read_text().splitlines()
    report = json.loads((run_dir / "report.json").read_text())
    assert len(rows) == len(base) == report["metrics"]["test"]["count"] == 30
    accuracy = sum(r["gold"] == r["predicted"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(report["metrics"]["test"]["accuracy"])
    assert {"text", "gold", "predicted", "confidence", "scores", "loc"} <= set(rows[0])
    from tuneforge.inference.predictor import Predictor

    fp32 = Predictor.from_run_dir(run_dir, precision="fp32").predict([r["text"] for r in rows[:8]])
    for r, p in zip(rows, fp32):  # saved confidences are the fp32 model's (calibrated), not bf16 autocast's
        assert r["confidence"] == pytest.approx(p["scores"][r["predicted"]], abs=1e-4)
    cf = json.loads((run_dir / "counterfactuals.json").read_text())
    assert cf["overall"]["n"] == 4 and {p["term_b"] for p in cf["pairs"]} == {"mary", "london"}
    explained = json.loads((run_dir / "predictions" / "explanations.json").read_text())
    assert explained and all(e["integrated_gradients"]["relative_completeness_error"] < 0.01
                             for e in explained.values())
    page = (run_dir / "report.html").read_text()
    for anchor in ("before-after", "curves", "classes", "calibration", "errors", "slices", "bias", "data", "card"):
        assert f'<section id="{anchor}">' in page, anchor
    assert "McNemar" in page and "[95% CI]" in page and "by length" in page and "sha256" in page
    assert page.count("<svg") >= 5 and "<script" not in page and "<link" not in page and " src=" not in page


def test_report_command_rebuilds_and_compares(run_dir, tmp_path, capsys):
    (run_dir / "report.html").unlink()
    start = time.perf_counter()
    assert main(["report", str(run_dir)]) == 0
    assert time.perf_counter() - start < 5 and (run_dir / "report.html").is_file()
    out = tmp_path / "cmp.html"
    assert main(["report", str(run_dir), str(run_dir), "--out", str(out)]) == 0
    page = out.read_text()
    assert page.count("<tr>") == 3 and "0 vs 0: p <span>1.000</span>" in page
    saved = (run_dir / "predictions" / "test.jsonl").read_text()
    shutil.rmtree(run_dir / "predictions")
    assert main(["report", str(run_dir), "--recompute"]) == 0  # the analysis again from the saved model
    assert (run_dir / "predictions" / "test.jsonl").read_text() == saved
    assert (run_dir / "predictions" / "baseline_majority.jsonl").is_file()
    assert main(["report", str(tmp_path)]) == 2
    assert "no report.json" in capsys.readouterr().err


def test_explain_command_and_predictor(run_dir, tmp_path, capsys):
    from tuneforge.inference.predictor import Predictor

    got = Predictor.from_run_dir(run_dir, precision="fp32").explain(["great love film"], label="positive")
    assert got[0]["target"] == "positive" and [w["text"] for w in got[0]["words"]] == ["great", "love", "film"]
    html = tmp_path / "e.html"
    assert main(["explain", str(run_dir), "--input", "bad movie", "--steps", "20", "--html", str(html)]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert line["integrated_gradients"]["steps"] == 20 and 'class="w"' in html.read_text()
    assert main(["explain", str(run_dir), "--input", "bad", "--label", "nope"]) == 2
    assert "unknown label 'nope'" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make setup-browser)")
def test_page_renders_in_chromium_without_errors(run_dir, tmp_path):
    url = (run_dir / "report.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path}/p"]
    dom = subprocess.run([CHROMIUM, *flags, "--enable-logging=stderr", "--v=0", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    assert dom.stdout.count("<svg") >= 5 and "Confusion matrix" in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1280,1600", url],
                   capture_output=True, timeout=120, check=True)
    image = pytest.importorskip("PIL.Image").open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    blue = sum(n for n, (r, g, b) in colours if b > 180 and r < 90 and g < 140)  # the plots' lines, cells, bars
    assert image.size == (1280, 1600) and blue > 2000


def test_error_explanations_stop_at_the_time_budget(tmp_path, monkeypatch):
    """A large body explains a few error examples, not all of them: new ones stop starting after the budget."""
    import tuneforge.explain as explain
    from tuneforge.evaluation import analysis

    calls = []

    def fake_explain(model, task, items):
        calls.append(items)
        return [{"words": [], "item": items[0]}]

    monkeypatch.setattr(explain, "explain_inputs", fake_explain)
    monkeypatch.setattr(analysis, "EXPLAIN_BUDGET_S", 0.0)
    rows = [{"id": i, "text": f"t{i}", "gold": "a", "predicted": "b" if i % 2 else "a", "confidence": 0.5 + i / 100}
            for i in range(8)]
    (tmp_path / "predictions").mkdir()
    message = analysis._explain_errors(tmp_path, None, None, rows)
    assert len(calls) == 1 and message.startswith("1 of 7 examples explained")
    assert len(json.loads((tmp_path / "predictions" / "explanations.json").read_text())) == 1
    monkeypatch.setattr(analysis, "EXPLAIN_BUDGET_S", 60.0)
    assert analysis._explain_errors(tmp_path, None, None, rows) == "7 examples explained"
