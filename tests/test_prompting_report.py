"""report.html for runs that train nothing (zero-shot, in-context) and for SetFit runs: the same page as a trained
run, built from the prompted model's saved test predictions, rendered without errors in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.test_smoke_pipeline import write_toy_csv
from tuneforge.cli import main
from tuneforge.config import config_from_dict
from tuneforge.runner import train

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DESCRIPTIONS = {"positive": ["good great love"], "negative": ["bad terrible hate"]}


def _cfg(model, tmp, out, n=60, **sections):
    data = tmp / "toy.csv"
    write_toy_csv(data, n=n)
    raw = {"model": str(model), "output_dir": str(out), "seed": 5,
           "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.25}},
           "train": {"epochs": 1, "batch_size": 8, "lr": 3e-3, "progress": False, "precision": "fp32",
                     "trackers": []},
           "eval": {"baselines": ["majority"]}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return config_from_dict(raw)


def _rows(run_dir, name="test"):
    return [json.loads(line) for line in (run_dir / "predictions" / f"{name}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def zero_shot_run(tiny_bert_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zero_shot_report")
    cf = tmp / "cf.yaml"
    cf.write_text("pairs:\n  name: [[john, mary]]\ntemplates:\n  name: ['{term} love this film', "
                  "'{term} hate the movie']\n")
    cfg = _cfg(tiny_bert_dir, tmp, tmp / "run", fewshot={"method": "zero_shot", "descriptions": DESCRIPTIONS},
               eval={"baselines": ["majority", "zero_shot"], "slices": ["length"], "counterfactuals": str(cf)})
    return train(cfg)


def test_zero_shot_run_gets_the_report_page(zero_shot_run):
    run_dir, report = zero_shot_run.run_dir, zero_shot_run.report
    rows = _rows(run_dir)
    assert len(rows) == report["metrics"]["test"]["count"] == 18
    accuracy = sum(r["gold"] == r["predicted"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(report["metrics"]["test"]["accuracy"])
    assert sorted(json.loads((run_dir / "predictions.json").read_text())["test"]) == sorted(
        r["predicted"] for r in rows)
    majority = _rows(run_dir, "baseline_majority")
    assert len(majority) == 18 and len({r["predicted"] for r in majority}) == 1
    assert json.loads((run_dir / "counterfactuals.json").read_text())["overall"]["n"] == 2
    page = (run_dir / "report.html").read_text()
    for anchor in ("before-after", "prompting", "classes", "calibration", "errors", "slices", "bias", "data",
                   "card"):
        assert f'<section id="{anchor}">' in page, anchor
    assert '<section id="curves">' not in page  # nothing was trained
    assert "<b>zero-shot (no training)</b>" in page and "McNemar vs zero-shot (no training)" in page
    assert "description_similarity" in page and "[95% CI]" in page
    assert page.count("<svg") >= 3 and "<script" not in page and " src=" not in page
    card = page[page.index('<section id="card">'):]
    assert re.search(r"<td>method</td><td>zero-shot \(no training\)</td>", card)


def test_report_command_rebuilds_a_zero_shot_page(zero_shot_run):
    run_dir = zero_shot_run.run_dir
    before = (run_dir / "report.html").read_text()
    (run_dir / "report.html").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.html").read_text() == before
    saved = (run_dir / "predictions" / "test.jsonl").read_text()
    shutil.rmtree(run_dir / "predictions")
    assert main(["report", str(run_dir), "--recompute"]) == 0  # no weights: the prompted model scores again
    assert (run_dir / "predictions" / "test.jsonl").read_text() == saved
    assert (run_dir / "predictions" / "baseline_majority.jsonl").is_file()
    again = (run_dir / "report.html").read_text()
    assert again[:again.index('<section id="card">')] == before[:before.index('<section id="card">')]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make setup-browser)")
def test_zero_shot_page_renders_in_chromium(zero_shot_run, tmp_path):
    url = (zero_shot_run.run_dir / "report.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}/p"]
    dom = subprocess.run([CHROMIUM, *flags, "--enable-logging=stderr", "--v=0", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert dom.stdout.count("<svg") >= 3 and "Confusion matrix" in dom.stdout and "Reliability" in dom.stdout


def test_icl_run_page_lists_the_prompting(tiny_llama_dir, tmp_path):
    cfg = _cfg(tiny_llama_dir, tmp_path, tmp_path / "run", n=40, task="classification_generative",
               data={"shots_per_class": 3}, fewshot={"method": "icl", "k": 1, "max_prompt_tokens": 50})
    run_dir = train(cfg).run_dir
    page = (run_dir / "report.html").read_text()
    assert "<b>in-context (no training)</b>" in page and '<section id="prompting">' in page
    assert "Queries that lost demonstrations" in page  # a 50-token budget cannot hold the demonstrations
    assert len(_rows(run_dir)) == json.loads((run_dir / "report.json").read_text())["metrics"]["test"]["count"]


def test_setfit_run_page_names_the_method(tiny_bert_dir, tmp_path):
    pytest.importorskip("setfit")
    cfg = _cfg(tiny_bert_dir, tmp_path, tmp_path / "run", data={"shots_per_class": 4},
               fewshot={"method": "setfit", "setfit_iterations": 1, "setfit_batch_size": 8})
    page = (train(cfg).run_dir / "report.html").read_text()
    assert "<b>SetFit</b>" in page and "McNemar vs SetFit" in page and '<section id="errors">' in page


# ---------------------------------------------------------------- tuneforge predict --zero-shot
def _write_config(path, raw):
    import yaml

    path.write_text(yaml.safe_dump(raw))
    return path


def test_predict_zero_shot_matches_the_zero_shot_run(zero_shot_run, tmp_path, capsys):
    """The same untuned scoring as the run's test split: same probabilities for the same texts."""
    from tuneforge.config import load_config
    from tuneforge.prompting.runs import predict_untrained

    rows = _rows(zero_shot_run.run_dir)[:4]
    got = predict_untrained(load_config(zero_shot_run.run_dir / "config.yaml"), [r["text"] for r in rows])
    for r, g in zip(rows, got):
        assert g["label"] == r["predicted"] and g["score"] == pytest.approx(r["confidence"], abs=1e-5)
        assert g["scores"] == pytest.approx(r["scores"], abs=1e-5)
    inputs = tmp_path / "in.txt"
    inputs.write_text("good great film\n\nterrible movie\n")
    capsys.readouterr()
    assert main(["predict", "--zero-shot", str(zero_shot_run.run_dir / "config.yaml"), "--input", str(inputs)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["input"] for o in out] == ["good great film", "", "terrible movie"] and out[1]["error"] == "empty input"
    assert {"label", "score", "scores"} <= set(out[0]) and set(out[0]["scores"]) == {"negative", "positive"}


def test_predict_zero_shot_without_data(tiny_bert_dir, tiny_llama_dir, tmp_path, capsys):
    """No data at all: the labels come from the prompt (descriptions for an encoder, verbaliser for a decoder)."""
    enc = _write_config(tmp_path / "enc.yaml", {"model": str(tiny_bert_dir), "fewshot": {
        "descriptions": DESCRIPTIONS}})
    dec = _write_config(tmp_path / "dec.yaml", {"model": str(tiny_llama_dir), "task": "classification_generative",
                                                "fewshot": {"verbaliser": {"yes": ["good"], "no": ["bad"]}}})
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('good great film\n{"text": "bad movie"}\n')
    capsys.readouterr()
    assert main(["predict", "--zero-shot", str(dec), "--input", str(inputs)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(out) == 2 and out[1]["input"] == {"text": "bad movie"} and set(out[1]["scores"]) == {"yes", "no"}
    from tuneforge.config import load_config
    from tuneforge.prompting.runs import predict_untrained

    for config, labels in ((enc, {"positive", "negative"}), (dec, {"yes", "no"})):
        got = predict_untrained(load_config(config), ["good great film", {"text": "bad movie"}])
        assert len(got) == 2 and all(set(g["scores"]) == labels for g in got)
        assert all(g["label"] == max(g["scores"], key=g["scores"].get) for g in got)
        assert all(sum(g["scores"].values()) == pytest.approx(1.0, abs=1e-4) for g in got)
    bare = _write_config(tmp_path / "bare.yaml", {"model": str(tiny_bert_dir)})
    assert main(["predict", "--zero-shot", str(bare), "--input", str(enc)]) == 2
    assert "needs the label set" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), "--zero-shot", str(enc), "--input", str(enc)]) == 2
    assert "not both" in capsys.readouterr().err


# ---------------------------------------------------------------- k-shot draws from records in memory
def test_shots_per_class_applies_to_records_in_memory(tiny_bert_dir, tmp_path):
    """data.shots_per_class draws K per class from in-memory train records exactly as from the same rows in a
    file (same seed, same rows), and the run records the draw."""
    import csv

    from tuneforge.run import prepare

    splits = {}
    for name, n, seed in (("train", 40, 0), ("validation", 10, 1), ("test", 10, 2)):
        write_toy_csv(tmp_path / f"{name}.csv", n=n, seed=seed)
        with open(tmp_path / f"{name}.csv", newline="") as fh:
            splits[name] = list(csv.DictReader(fh))
    raw = {"model": str(tiny_bert_dir), "output_dir": str(tmp_path / "run"), "seed": 7,
           "data": {"train": str(tmp_path / "train.csv"), "validation": str(tmp_path / "validation.csv"),
                    "test": str(tmp_path / "test.csv"), "shots_per_class": 3},
           "train": {"epochs": 1, "batch_size": 8, "progress": False, "precision": "fp32", "trackers": []},
           "eval": {"baselines": []}}
    from_file = prepare(config_from_dict(raw), encode=False).data
    in_memory = prepare(config_from_dict(raw), records=splits, encode=False).data
    assert in_memory.shots is not None and in_memory.shots.per_class == {"negative": 3, "positive": 3}
    assert [ex["text"] for ex in in_memory.splits["train"]] == [ex["text"] for ex in from_file.splits["train"]]
    assert all(i.startswith("<train>:") for i in in_memory.shots.ids)
    assert len(in_memory.splits["validation"]) == len(in_memory.splits["test"]) == 10  # held-out splits stay whole
    other_seed = prepare(config_from_dict({**raw, "seed": 8}), records=splits, encode=False).data
    assert other_seed.shots.ids != in_memory.shots.ids  # another seed, another draw

    result = train(config_from_dict(raw), records=splits)
    shots = json.loads((result.run_dir / "shots.json").read_text())
    assert shots["per_class"] == {"negative": 3, "positive": 3} and shots["ids"] == in_memory.shots.ids
