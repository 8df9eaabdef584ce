"""The workbench end to end in headless Chromium: load the page, audit and launch a tiny training, watch it finish,
find the run in the table, and predict with it."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, Browser, free_port
from tests.test_smoke_pipeline import write_toy_csv

pytest.importorskip("fastapi")
pytest.importorskip("aiohttp")
uvicorn = pytest.importorskip("uvicorn")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

OVERRIDES = "\\n".join(["seed=3", "data.split.validation=0.2", "data.split.test=0.2", "train.precision=fp32",
                        "train.eval_every=4", "train.log_every=2", "eval.baselines=[]", "train.trackers=[]"])


def serve(root: Path) -> tuple[str, uvicorn.Server]:
    from tuneforge.ui.app import create_app

    port = free_port()
    app = create_app(root)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    server.workbench = app  # type: ignore[attr-defined]
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/", server


async def drive(url: str, model: Path, data: Path, profile: Path, shots: Path | None) -> dict:
    async with Browser(url, profile) as b:
        await b.wait_for("document.querySelectorAll('#f-task option').length > 0")
        await b.js(f"""(() => {{
            const set = (id, v) => document.getElementById(id).value = v;
            set('f-name', 'toy'); set('f-model', {json.dumps(str(model))}); set('f-train', {json.dumps(str(data))});
            set('f-lr', '3e-3'); set('f-epochs', '2'); set('f-batch_size', '8'); set('f-overrides', "{OVERRIDES}");
        }})()""")
        await b.js("document.getElementById('b-audit').click()")
        audit = await b.wait_for("(t => t.includes('split') && t)(document.getElementById('t-audit').textContent)")
        await b.js("document.getElementById('b-train').click()")
        command = await b.wait_for("document.getElementById('t-cmd').textContent.startsWith('tuneforge train') && "
                                   "document.getElementById('t-cmd').textContent")
        state = await b.wait_for("(s => s !== 'running' && s !== 'none' && s)"
                                 "(document.getElementById('t-state').textContent)", timeout=240)
        await b.wait_for("document.querySelectorAll('#c-metric circle').length > 0")
        yaml_text = await b.js("document.getElementById('t-yaml').textContent")
        if shots:
            await b.screenshot(shots / "train.png")
        await b.js("document.querySelector('nav button[data-tab=runs]').click()")
        row = await b.wait_for("(r => r && r.textContent)(document.querySelector('#r-table tr[data-run=toy]'))")
        report_link = await b.js("!!document.querySelector('#r-table tr[data-run=toy] a[href$=\"report.html\"]')")
        if shots:
            await b.screenshot(shots / "runs.png")
        await b.js("document.querySelector('nav button[data-tab=try]').click()")
        await b.wait_for("document.getElementById('p-run').value === 'toy'")
        await b.js("document.getElementById('p-text').value = 'great love film'; "
                   "document.getElementById('b-predict').click()")
        prediction = await b.wait_for("(t => t.includes('label') && t)(document.getElementById('p-out').textContent)")
        await b.js("document.getElementById('b-explain').click()")
        words = await b.wait_for("(n => n.length === 3 && [...n].map(w => w.textContent + '|' + w.title))"
                                 "(document.querySelectorAll('#p-words .w'))")
        explain_cmd = await b.js("document.getElementById('p-cmd').textContent")
        return {"audit": audit, "command": command, "state": state, "yaml": yaml_text, "row": row,
                "report_link": report_link, "prediction": prediction, "words": words, "explain_cmd": explain_cmd}


def test_workbench_trains_lists_and_predicts(tiny_bert_dir, tmp_path):
    data = tmp_path / "toy.csv"
    write_toy_csv(data)
    root = tmp_path / "runs"
    url, server = serve(root)
    shots = Path(os.environ["TUNEFORGE_UI_SHOTS"]) if os.environ.get("TUNEFORGE_UI_SHOTS") else None
    try:
        out = asyncio.run(drive(url, tiny_bert_dir, data, tmp_path / "profile", shots))
    finally:
        server.workbench.state.jobs.stop_all()
        server.should_exit = True
    assert out["state"] == "finished", (root / "toy.log").read_text()
    assert out["command"] == f"tuneforge train {root.resolve() / 'toy.yaml'}"
    assert "train.precision" not in out["yaml"] and "precision: fp32" in out["yaml"]  # overrides folded into the file
    assert "train" in out["audit"] and "validation" in out["audit"]
    assert "toy" in out["row"] and "classification" in out["row"] and out["report_link"]
    assert json.loads(out["prediction"])["label"] in ("positive", "negative")
    assert [w.split("|")[0] for w in out["words"]] == ["great", "love", "film"]  # each word highlighted
    assert all(w.split("|")[1].startswith("IG ") for w in out["words"])
    assert out["explain_cmd"] == f"tuneforge explain {root.resolve() / 'toy'} --input 'great love film'"
    report = json.loads((root / "toy" / "report.json").read_text())
    assert f"{report['metrics']['test']['accuracy']:.4f}" in out["row"]


def fake_run(root: Path, name: str, lr: float, acc: float) -> None:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"model: minilm\ntask: classification\noutput_dir: {run}\n"
                                     f"train:\n  lr: {lr}\n  epochs: 3\npeft:\n  method: lora\n")
    (run / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 0.9}\n'
                                       f'{{"step": 2, "split": "validation", "accuracy": {acc}}}\n{{"step": 3, "spl')
    (run / "report.json").write_text(json.dumps({"main_metric": "accuracy", "metrics": {
        "test": {"accuracy": acc}, "validation": {"accuracy": acc}}, "training": {"train_seconds": 2.5}}))


def test_runs_table_compare_and_paths(tmp_path):
    from fastapi.testclient import TestClient

    from tuneforge.ui.app import create_app

    fake_run(tmp_path, "a", 1e-4, 0.8)
    fake_run(tmp_path, "b", 3e-4, 0.9)
    client = TestClient(create_app(tmp_path))
    rows = {r["name"]: r for r in client.get("/api/runs").json()}
    assert rows["a"]["method"] == "lora" and rows["b"]["test"] == 0.9 and rows["a"]["train_seconds"] == 2.5
    got = client.get("/api/compare?runs=a,b").json()
    assert got["config_diff"] == {"train.lr": [1e-4, 3e-4]}  # output_dir differs too, but never matters
    assert [len(c["validation"]) for c in got["curves"]] == [1, 1]  # the half-written last line is skipped
    assert got["command"] == f"tuneforge report {tmp_path / 'a'} {tmp_path / 'b'}"
    assert client.get("/api/compare?runs=a").status_code == 400
    assert client.get("/runs/../a/report.html").status_code == 404
    assert client.get("/api/runs/nope/curves").status_code == 404
    bad = client.post("/api/config", json={"name": "../x", "train": "t.csv"})
    assert bad.status_code == 400 and "plain folder name" in bad.json()["detail"]
    wrong = client.post("/api/config", json={"name": "x", "train": "t.csv", "method": "full", "lr": 1e-4,
                                             "overrides": "train.optimizer=adam"})
    assert wrong.status_code == 400 and "train.optimizer" in wrong.json()["detail"]
