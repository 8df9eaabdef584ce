"""Loopback load tests: a real uvicorn server on 127.0.0.1 (a free port) under hundreds of concurrent requests
answers every one, batches them into far fewer forwards, and under overload refuses with 429 + Retry-After while
answering everything it accepted. Bounded in count and time; the heavier variant is marked slow."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from tests.classifier_runs import TEXTS, train_run
from tuneforge.inference.load_client import drive
from tuneforge.inference.predictor import Predictor
from tuneforge.inference.server_limits import ServerOptions
from tuneforge.inference.server_metrics import metric_value

pytest.importorskip("uvicorn")
pytest.importorskip("httpx")
pytest.importorskip("aiohttp")
pytest.importorskip("prometheus_client")


@pytest.fixture(scope="module")
def predictor(tiny_bert_dir, tmp_path_factory) -> Predictor:
    return Predictor.from_run_dir(train_run(tiny_bert_dir, tmp_path_factory.mktemp("load"), "single"))


@contextmanager
def serving(predictor, options: ServerOptions) -> Iterator[tuple[str, object]]:
    """uvicorn in a thread on a socket bound to 127.0.0.1:0; yields the base URL and the uvicorn server, stops on
    exit."""
    import uvicorn

    from tuneforge.inference.server import create_app

    app = create_app(predictor, options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    end = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < end and thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", server
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def bodies(n: int) -> list[dict]:
    return [{"inputs": [f"{TEXTS[i % len(TEXTS)]} {i % 7}"]} for i in range(n)]


def metrics_text(url: str) -> str:
    import httpx

    return httpx.get(url + "/metrics", timeout=10).text


def check_answers(predictor, sent: list[dict], result) -> None:
    unique = sorted({b["inputs"][0] for b in sent})
    want = dict(zip(unique, (p["label"] for p in predictor.predict(unique))))
    for body, answer in zip(sent, result.answers):
        assert answer is not None and answer[0]["label"] == want[body["inputs"][0]]


def run_load(predictor, n: int, concurrency: int) -> None:
    sent = bodies(n)
    start = time.perf_counter()
    with serving(predictor, ServerOptions()) as (url, _):
        result = drive(url, sent, concurrency, timeout=60)
        text = metrics_text(url)
    summary = result.summary()
    assert summary["errors"] == 0 and summary["ok"] == n, summary
    check_answers(predictor, sent, result)
    forwards = metric_value(text, "tuneforge_batch_size_count")
    assert metric_value(text, "tuneforge_batch_size_sum") == n
    assert metric_value(text, "tuneforge_requests_total", {"endpoint": "/predict", "status": 200}) == n
    assert forwards < n / 2, f"{forwards} forwards for {n} concurrent single-text requests"
    assert time.perf_counter() - start < 60


def test_loopback_load_answers_every_request_and_batches(predictor):
    run_load(predictor, n=300, concurrency=32)


@pytest.mark.slow
def test_loopback_load_heavy(predictor):
    run_load(predictor, n=5000, concurrency=200)


class Slow:
    """The predictor at a fixed cost per forward, so a small queue overflows whatever the host's speed."""

    def __init__(self, predictor: Predictor, seconds: float):
        self.inner, self.seconds = predictor, seconds
        self.task, self.cfg, self.precision = predictor.task, predictor.cfg, predictor.precision

    def predict(self, items):
        time.sleep(self.seconds)
        return self.inner.predict(items)


def test_overload_refuses_with_retry_after_and_answers_every_accepted_request(predictor):
    options = ServerOptions(max_queue=8, max_inputs=8, max_batch_size=4)
    sent = bodies(120)
    with serving(Slow(predictor, 0.01), options) as (url, _):
        refused = drive(url, sent, concurrency=40, timeout=60)
        text = metrics_text(url)
        retried = drive(url, sent, concurrency=40, retry_429=True, max_retry_wait=0.05, max_tries=400, timeout=60)
    statuses = refused.statuses
    assert set(statuses) <= {200, 429} and refused.errors == [], refused.errors[:3]
    assert statuses.count(429) > 0 and statuses.count(200) > 0
    assert all(w >= 1 for w in refused.retry_after)
    assert all((a is not None) == (s == 200) for s, a in zip(statuses, refused.answers))
    served = metric_value(text, "tuneforge_requests_total", {"endpoint": "/predict", "status": 200})
    assert served == statuses.count(200)  # nothing the server accepted went unanswered
    assert metric_value(text, "tuneforge_batch_size_sum") == statuses.count(200)
    # clients that wait Retry-After and send again all get their answers
    assert retried.errors == [] and retried.statuses == [200] * len(sent) and retried.retries > 0
    check_answers(predictor, sent, retried)


class Gated:
    """The predictor with a ``predict`` that holds every call until ``release`` is set."""

    def __init__(self, predictor: Predictor):
        self.inner, self.entered, self.release = predictor, threading.Event(), threading.Event()
        self.task, self.cfg, self.precision = predictor.task, predictor.cfg, predictor.precision

    def predict(self, items):
        self.entered.set()
        assert self.release.wait(20)
        return self.inner.predict(items)


def test_shutdown_answers_every_queued_request(predictor):
    import httpx

    gated = Gated(predictor)
    with serving(gated, ServerOptions()) as (url, server), ThreadPoolExecutor(4) as pool:
        post = lambda text: httpx.post(url + "/predict", json={"inputs": [text]}, timeout=30)  # noqa: E731
        futures = [pool.submit(post, TEXTS[0])]
        assert gated.entered.wait(10)
        futures += [pool.submit(post, t) for t in TEXTS[1:4]]
        end = time.monotonic() + 10
        while httpx.get(url + "/ready", timeout=5).json()["queued"] < 3:
            assert time.monotonic() < end, "the requests did not queue"
            time.sleep(0.01)
        server.should_exit = True  # what SIGTERM sets: stop accepting, finish what was accepted
        time.sleep(0.2)
        gated.release.set()
        answers = [f.result(timeout=30) for f in futures]
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.json()["predictions"][0]["label"] for a in answers] == [
        p["label"] for p in predictor.predict(TEXTS[:4])]
