"""A thin HTTP server over ``Predictor`` (FastAPI; the optional ``serve`` extra)."""

# no `from __future__ import annotations`: FastAPI must see the request model class itself

from typing import Any

from tuneforge.inference.predictor import Predictor

MAX_INPUTS = 1024


def create_app(predictor: Predictor) -> Any:
    """``GET /health``, ``GET /info``, ``POST /predict`` with ``{"inputs": [str | object, ...]}``."""
    try:
        from fastapi import FastAPI, HTTPException
        from pydantic import BaseModel
    except ImportError as e:  # pragma: no cover - depends on the extra
        raise RuntimeError("the server needs the serve extra: pip install 'tuneforge[serve]'") from e

    class PredictRequest(BaseModel):
        inputs: list[str | dict[str, Any]]

    app = FastAPI(title="TuneForge", version="0.1.0")
    info = {"task": predictor.task.name, "model": predictor.cfg.model, "precision": predictor.precision,
            **_labels(predictor)}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    def get_info() -> dict[str, Any]:
        return info

    @app.post("/predict")
    def predict(req: PredictRequest) -> dict[str, Any]:
        if not req.inputs:
            raise HTTPException(status_code=422, detail="inputs is empty")
        if len(req.inputs) > MAX_INPUTS:
            raise HTTPException(status_code=413, detail=f"at most {MAX_INPUTS} inputs per request")
        try:
            return {"predictions": predictor.predict(req.inputs)}
        except (ValueError, KeyError) as e:
            raise HTTPException(status_code=422, detail=str(e)) from None

    return app


def _labels(predictor: Predictor) -> dict[str, Any]:
    labels = getattr(predictor.task, "labels", None)
    return {"labels": list(labels)} if labels else {}


def serve(run_dir: str, host: str = "127.0.0.1", port: int = 8000, backend: str = "torch",
          precision: str = "auto") -> None:
    import uvicorn

    predictor = Predictor.from_run_dir(run_dir, precision=precision, backend=backend)
    uvicorn.run(create_app(predictor), host=host, port=port, log_level="info")
