"""A thin HTTP server over ``Predictor`` (FastAPI; the optional ``serve`` extra): routes and wiring only. Limits and
the API key live in server_limits.py, micro-batching in batcher.py, metrics in server_metrics.py."""

# no `from __future__ import annotations`: FastAPI must see the endpoint's parameter classes themselves

import asyncio
import contextlib
import logging
from typing import Any

from tuneforge.inference.batcher import BatcherClosed, MicroBatcher, QueueFull
from tuneforge.inference.predictor import Predictor
from tuneforge.inference.server_limits import (
    DETAIL_CHARS,
    ApiKeyAuth,
    BodyLimit,
    Rejected,
    ServerOptions,
    excerpt,
    parse_predict_body,
)
from tuneforge.inference.server_metrics import MetricsMiddleware, ServerMetrics

log = logging.getLogger(__name__)
PREDICT_ERRORS = (ValueError, KeyError, TypeError, IndexError)  # what a bad input makes parse/encode raise


def create_app(predictor: Predictor, options: ServerOptions | None = None) -> Any:
    """``GET /health`` (liveness), ``GET /ready`` (503 while the queue is full), ``GET /info``, ``GET /metrics``
    (Prometheus text) and ``POST /predict`` with ``{"inputs": [str | object, ...]}``.

    Concurrent /predict requests share forwards on one worker thread (``app.state.batcher``); the worker drains
    its queue when the app shuts down.
    """
    try:
        from fastapi import FastAPI
    except ImportError as e:  # pragma: no cover - depends on the extra
        raise RuntimeError("the server needs the serve extra: pip install 'tuneforge[serve]'") from e

    opts = options or ServerOptions()
    batcher = MicroBatcher(predictor.predict, opts.max_batch_size, opts.max_wait_ms / 1000, opts.max_queue)
    metrics = ServerMetrics(lambda: batcher.queued, lambda: {getattr(r, "path", None) for r in app.routes})
    batcher.on_batch = metrics.observe_batch

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        yield
        await asyncio.to_thread(batcher.close)  # answer every accepted request before the process ends

    app = FastAPI(title="TuneForge", version="0.1.0", lifespan=lifespan)
    app.state.batcher, app.state.metrics, app.state.options = batcher, metrics, opts
    _add_error_handlers(app)
    info = {"task": predictor.task.name, "model": predictor.cfg.model, "precision": predictor.precision,
            **_labels(predictor), "limits": opts.public()}
    _add_status_routes(app, batcher, metrics, info)
    _add_predict_route(app, predictor, batcher, opts)
    # added last = outermost: metrics see every response, the key is checked before any body is read
    app.add_middleware(BodyLimit, max_bytes=opts.max_body_bytes)
    if opts.api_key:
        app.add_middleware(ApiKeyAuth, key=opts.api_key)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _add_error_handlers(app: Any) -> None:
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    @app.exception_handler(Rejected)
    async def rejected(request: Request, exc: Rejected) -> Any:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Any:
        # FastAPI's own handler echoes the whole input back; this one says where and what, quoting a short excerpt
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))[:DETAIL_CHARS],
                   **({"input": excerpt(e["input"])} if "input" in e else {})} for e in exc.errors()[:10]]
        return JSONResponse({"detail": errors}, status_code=422)


def _add_status_routes(app: Any, batcher: MicroBatcher, metrics: ServerMetrics, info: dict[str, Any]) -> None:
    from fastapi.responses import JSONResponse, Response

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> Any:
        if not batcher.alive:
            return JSONResponse({"status": "stopping"}, status_code=503)
        if batcher.saturated:
            return JSONResponse({"status": "saturated", "queued": batcher.queued}, status_code=503,
                                headers={"Retry-After": str(batcher.retry_after())})
        return {"status": "ready", "queued": batcher.queued}

    @app.get("/info")
    def get_info() -> dict[str, Any]:
        return info

    @app.get("/metrics")
    def get_metrics() -> Any:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)


def _add_predict_route(app: Any, predictor: Predictor, batcher: MicroBatcher, opts: ServerOptions) -> None:
    from fastapi import Request

    text_fields = _text_fields(predictor.task)

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        items = parse_predict_body(await request.body(), opts, text_fields)
        for i, item in enumerate(items):  # refuse a bad input here, before it can share a forward
            try:
                predictor.task.parse_input(item)
            except PREDICT_ERRORS as e:
                raise Rejected(422, f"inputs[{i}]: {e}") from None
        try:
            return {"predictions": await batcher.run(items)}
        except QueueFull as e:
            raise Rejected(429, str(e), ("max_queue", opts.max_queue),
                           {"Retry-After": str(e.retry_after)}) from None
        except BatcherClosed as e:
            raise Rejected(503, str(e), None, {"Retry-After": "5"}) from None
        except PREDICT_ERRORS as e:
            raise Rejected(422, str(e)) from None


def _labels(predictor: Predictor) -> dict[str, Any]:
    labels = getattr(predictor.task, "labels", None)
    return {"labels": list(labels)} if labels else {}


def _text_fields(task: Any) -> tuple[str, ...]:
    """The object fields that hold text to predict on; a blank one is refused (422)."""
    names = ["text", getattr(task, "text_col", None), getattr(task, "pair_col", None)]
    return tuple(dict.fromkeys(n for n in names if isinstance(n, str)))


def serve(run_dir: str, host: str = "127.0.0.1", port: int = 8000, backend: str = "torch",
          precision: str = "auto", options: ServerOptions | None = None, log_level: str = "info") -> None:
    import uvicorn

    from tuneforge.apps.routes import add_run_routes

    predictor = Predictor.from_run_dir(run_dir, precision=precision, backend=backend)
    app = create_app(predictor, options)
    add_run_routes(app, predictor)  # /v1/assist + /v1/feedback, or /v1/chat/completions (apps/routes.py)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
