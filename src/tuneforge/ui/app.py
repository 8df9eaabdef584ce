"""The workbench's HTTP API and page (FastAPI): every action calls the Python API and names its CLI command."""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse
from pydantic import BaseModel

from tuneforge.config import ConfigError, config_from_dict, parse_override
from tuneforge.ui import runs as runs_mod
from tuneforge.ui.jobs import Jobs

FREEZE_METHODS = ("full", "head_only", "top_k", "bitfit")
FEWSHOT_METHODS = ("setfit", "icl", "zero_shot", "prompt")


class TrainForm(BaseModel):
    name: str = "run"
    model: str = "minilm"
    task: str = "classification"
    train: str
    validation: str | None = None
    test: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    method: str = "full"
    lr: float = 5e-5
    epochs: float = 3
    batch_size: int = 32
    overrides: str = ""  # one key=value per line, as on the command line


class PredictForm(BaseModel):
    run: str
    text: str
    explain: bool = False  # word attributions (Integrated Gradients and occlusion) for the prediction


def methods() -> list[str]:
    from tuneforge.peft_methods import PEFT_METHODS

    return [*FREEZE_METHODS, *PEFT_METHODS.names(), *FEWSHOT_METHODS]


def form_to_raw(form: TrainForm, root: Path) -> tuple[dict[str, Any], list[str]]:
    """The form as a config mapping plus its ``key=value`` override lines."""
    if not form.name or "/" in form.name or form.name.startswith("."):
        raise ConfigError(f"name: {form.name!r} must be a plain folder name")
    data = {"train": form.train, "text_column": form.text_column, "label_column": form.label_column}
    data.update({k: v for k, v in (("validation", form.validation), ("test", form.test)) if v})
    raw: dict[str, Any] = {"model": form.model, "task": form.task, "output_dir": str(root / form.name),
                           "data": data, "train": {"lr": form.lr, "epochs": form.epochs,
                                                   "batch_size": form.batch_size}}
    if form.method in FREEZE_METHODS:
        raw["freeze"] = {"policy": form.method}
    elif form.method in FEWSHOT_METHODS:
        raw["fewshot"] = {"method": form.method}
    else:
        raw["peft"] = {"method": form.method}
    return raw, [line.strip() for line in form.overrides.splitlines() if line.strip()]


def build_config(form: TrainForm, root: Path) -> tuple[Any, str]:
    """A checked RunConfig and the YAML text the page shows and saves (overrides folded in)."""
    raw, overrides = form_to_raw(form, root)
    cfg = config_from_dict(raw, overrides)
    for item in overrides:  # fold them into the file, so the YAML alone reproduces the run
        keys, value = parse_override(item)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return cfg, yaml.safe_dump(raw, sort_keys=False)


def create_app(root: str | Path = "runs") -> FastAPI:
    """The workbench over the run folders under ``root``.

    >>> # uvicorn.run(create_app("runs"), host="127.0.0.1", port=7860)
    """
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    jobs = Jobs()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        jobs.stop_all()  # a training launched here stops with the workbench; train.resume=true continues it

    app = FastAPI(title="TuneForge workbench", lifespan=lifespan)
    app.state.jobs = jobs
    predictors: dict[str, Any] = {}

    def run_path(name: str) -> Path:
        path = (root / name).resolve()
        if root not in path.parents or not (path / "config.yaml").is_file():
            raise HTTPException(404, f"no run {name!r} under {root}")
        return path

    def config_path(name: str) -> Path:
        return root / f"{name}.yaml"

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (Path(__file__).parent / "page.html").read_text(encoding="utf-8")

    @app.get("/api/options")
    def options() -> dict[str, Any]:
        from tuneforge.tasks import TASKS

        return {"models": ["minilm", "smollm2"], "tasks": TASKS.names(), "methods": methods(), "root": str(root)}

    @app.post("/api/config")
    def config(form: TrainForm) -> dict[str, Any]:
        try:
            _, text = build_config(form, root)
        except ConfigError as e:
            raise HTTPException(400, str(e)) from None
        path = config_path(form.name)
        from tuneforge.io_utils import atomic_write_text

        atomic_write_text(path, text)
        return {"yaml": text, "path": str(path), "command": f"tuneforge data audit {shlex.quote(str(path))}"}

    @app.post("/api/audit")
    def audit(form: TrainForm) -> dict[str, Any]:
        from tuneforge.data.audit import format_audit
        from tuneforge.runner import audit as run_audit

        try:
            cfg, _ = build_config(form, root)
            report = run_audit(cfg)
        except (ConfigError, OSError, ValueError) as e:
            raise HTTPException(400, str(e)) from None
        return {"text": format_audit(report), "warnings": report.get("warnings", []),
                "command": f"tuneforge data audit {shlex.quote(str(config_path(form.name)))}"}

    @app.get("/api/config/{name}", response_class=PlainTextResponse)
    def download(name: str) -> str:
        path = config_path(name)
        if not path.is_file() or path.parent != root:
            raise HTTPException(404, f"no config {name!r}")
        return path.read_text(encoding="utf-8")

    @app.post("/api/train")
    def train(form: TrainForm, resume: bool = False) -> dict[str, Any]:
        result = config(form)  # the saved file is exactly what trains
        try:
            job = jobs.start(Path(result["path"]), root / form.name, resume=resume)
        except ValueError as e:
            raise HTTPException(409, str(e)) from None
        return job.describe()

    @app.get("/api/jobs")
    def list_jobs() -> list[dict[str, Any]]:
        return [j.describe() for j in jobs.jobs.values()]

    @app.post("/api/jobs/{job_id}/stop")
    def stop(job_id: int) -> dict[str, Any]:
        if job_id not in jobs.jobs:
            raise HTTPException(404, f"no job {job_id}")
        return {**jobs.stop(job_id).describe(), "command": "Ctrl-C in the terminal running tuneforge train"}

    @app.get("/api/runs")
    def list_runs() -> list[dict[str, Any]]:
        return [runs_mod.run_row(r, root) for r in runs_mod.run_dirs(root)]

    @app.get("/api/runs/{name:path}/curves")
    def curves(name: str) -> dict[str, Any]:
        return runs_mod.curves(run_path(name))

    @app.get("/api/compare")
    def compare(runs: str) -> dict[str, Any]:
        names = [n for n in runs.split(",") if n]
        if len(names) < 2:
            raise HTTPException(400, "select two or more runs")
        out = runs_mod.compare([run_path(n) for n in names], root)
        out["command"] = "tuneforge report " + " ".join(shlex.quote(str(root / n)) for n in names)
        return out

    @app.get("/runs/{name:path}/report.html")
    def report(name: str) -> FileResponse:
        path = run_path(name) / "report.html"
        if not path.is_file():
            raise HTTPException(404, f"{name} has no report.html yet")
        return FileResponse(path)

    @app.post("/api/predict")
    def predict(form: PredictForm) -> dict[str, Any]:
        run = run_path(form.run)
        if form.run not in predictors:
            from tuneforge.inference.predictor import Predictor

            predictors[form.run] = Predictor.from_run_dir(run)
        predictor = predictors[form.run]
        if getattr(predictor.task, "name", "") == "generation":
            from tuneforge.commands.chat import ChatSession

            session = predictors.setdefault(f"{form.run}#chat", ChatSession(predictor))
            answer = session.reply(form.text, on_text=lambda _: None)
            return {"result": {"answer": answer}, "command": f"tuneforge chat {shlex.quote(str(run))}"}
        if form.explain:
            from tuneforge.explain import ExplainError

            try:
                result = predictor.explain([form.text])[0]
            except ExplainError as e:
                raise HTTPException(422, str(e)) from None
            return {"result": result, "command": f"tuneforge explain {shlex.quote(str(run))} "
                                                  f"--input {shlex.quote(form.text)}"}
        result = predictor.predict([form.text])[0]
        return {"result": result,
                "command": f"echo {shlex.quote(form.text)} | tuneforge predict {shlex.quote(str(run))} --input -"}

    return app
