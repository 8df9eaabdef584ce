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
                        "train.eval_every=4", "eval.baselines=[]", "train.trackers=[]"])


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
        return {"audit": audit, "command": command, "state": state, "yaml": yaml_text, "row": row,
                "report_link": report_link, "prediction": prediction}


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
    report = json.loads((root / "toy" / "report.json").read_text())
    assert f"{report['metrics']['test']['accuracy']:.4f}" in out["row"]
