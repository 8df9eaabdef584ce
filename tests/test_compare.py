"""``tuneforge compare``: real subprocess runs per method, a table from their files, a plot, failed rows kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.tiny_tasks import TINY_TASKS
from tuneforge.cli import main
from tuneforge.compare import method_overrides


def test_method_overrides():
    assert method_overrides("lora") == ["peft.method=lora", "freeze.policy=full", "freeze.embeddings=false",
                                        "train.lr=0.001"]
    assert method_overrides("full") == ["peft.method=null", "freeze.policy=full"]
    try:
        method_overrides("qlora")
    except ValueError as e:
        assert "known: full, head_only" in str(e)


@pytest.mark.slow  # three subprocesses
def test_compare_two_methods_and_a_failure(tmp_path, tiny_bert_dir, capsys):
    spec = TINY_TASKS["classification"](tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(tiny_bert_dir), "task": "classification", "output_dir": str(tmp_path / "run"), "seed": 1,
        "data": spec.data, "train": {"epochs": 2, "batch_size": 8, "precision": "fp32", "num_threads": 1},
        "peft": {"r": 4, "adapter_size": 8}}))
    out = tmp_path / "cmp"
    rc = main(["compare", str(config), "--methods", "lora,head_only,ia3", "--out", str(out),
               "--set", "ia3:train.batch_size=0"])
    assert rc == 1  # one method failed, and says so
    rows = {r["method"]: r for r in json.loads((out / "compare.json").read_text())["rows"]}
    assert rows["ia3"]["status"].startswith("failed") and "batch_size" in rows["ia3"]["status"]
    for m in ("lora", "head_only"):
        r = rows[m]
        assert r["status"] == "ok", r["status"]
        assert 0 < r["trainable"] < r["total"] and 0 < r["trainable_pct"] < 100
        assert r["peak_rss_mb"] > 50 and r["seconds_per_epoch"] >= 0 and r["checkpoint_mb"] > 0
        assert 0 <= r["test_metric"] <= 1 and r["metric"] == "test accuracy"
    assert rows["lora"]["lr"] == 1e-3 and rows["head_only"]["lr"] == 1e-3
    assert rows["head_only"]["trainable"] < rows["lora"]["trainable"]  # the head alone vs head + adapter
    table = (out / "compare.md").read_text()
    assert "| lora | 0.001 |" in table and "failed" in table
    assert (out / "compare.png").stat().st_size > 10_000
    snapshot = yaml.safe_load((out / "config.yaml").read_text())  # what every method read, whatever the file says now
    assert snapshot["train"]["epochs"] == 2 and Path(snapshot["data"]["train"]).is_absolute()
    assert "| lora |" in capsys.readouterr().out


def test_unknown_method_is_refused(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "x.yaml"), "--methods", "lora,qlora"]) == 2
    assert "unknown method(s) qlora" in capsys.readouterr().err
