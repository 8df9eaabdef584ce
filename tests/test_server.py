"""The HTTP server answers /health, /ready, /info, /metrics and /predict with the same predictions as the Predictor,
and refuses what it should: bodies, input counts and texts over the limits, blank texts, requests without the API
key, and requests beyond its queue (429 + Retry-After), never losing one it accepted nor echoing a large input."""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from tests.classifier_runs import TEXTS, train_run
from tuneforge.inference.predictor import Predictor
from tuneforge.inference.server_limits import ServerOptions, add_server_args, options_from_args
from tuneforge.inference.server_metrics import metric_value

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from pydantic import BaseModel  # noqa: E402 - after the skip: pydantic comes with the serve extra


class TypedBody(BaseModel):
    n: int


@pytest.fixture(scope="module")
def predictor(tiny_bert_dir, tmp_path_factory) -> Predictor:
    return Predictor.from_run_dir(train_run(tiny_bert_dir, tmp_path_factory.mktemp("served"), "single"))


def client_for(predictor, **options):
    from fastapi.testclient import TestClient

    from tuneforge.inference.server import create_app

    return TestClient(create_app(predictor, ServerOptions(**options)))


class Gated:
    """The predictor with a ``predict`` that records each call's size and holds calls until ``release`` is set."""

    def __init__(self, predictor: Predictor):
        self.inner, self.calls = predictor, []
        self.entered, self.release = threading.Event(), threading.Event()
        self.task, self.cfg, self.precision = predictor.task, predictor.cfg, predictor.precision

    def predict(self, items):
        self.entered.set()
        assert self.release.wait(20)
        self.calls.append(len(items))
        return self.inner.predict(items)


def wait_until(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_server_predicts_like_the_predictor(predictor):
    with client_for(predictor) as client:
        assert client.get("/health").json() == {"status": "ok"}
        info = client.get("/info").json()
        assert info["labels"] == ["negative", "positive"] and info["precision"] in ("fp32", "bf16")
        assert info["limits"]["max_inputs"] == 256 and info["limits"]["api_key_required"] is False
        texts = ["great love film", {"text": "terrible bad movie"}]
        got = client.post("/predict", json={"inputs": texts}).json()["predictions"]
        assert got == predictor.predict(texts)
        assert client.post("/predict", json={"inputs": []}).status_code == 422
        assert client.post("/predict", json={"inputs": [{"label": "x"}]}).status_code == 422


def test_body_over_the_limit_is_refused_before_it_is_read(predictor):
    with client_for(predictor, max_body_bytes=2000) as client:
        r = client.post("/predict", json={"inputs": ["word " * 500]})
        assert r.status_code == 413 and r.json()["limit"] == {"name": "max_body_bytes", "value": 2000}

        def chunks():  # no Content-Length: the streamed bytes are counted
            for _ in range(100):
                yield b'{"inputs": ["' + b"a" * 100

        r = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "max_body_bytes=2000" in r.json()["detail"]
        assert client.post("/predict", json={"inputs": ["fine"]}).status_code == 200


def test_inputs_and_characters_over_their_limits(predictor):
    with client_for(predictor, max_inputs=3, max_chars=50) as client:
        r = client.post("/predict", json={"inputs": ["a"] * 4})
        assert r.status_code == 413 and r.json()["limit"] == {"name": "max_inputs", "value": 3}
        assert "4 inputs" in r.json()["detail"]
        r = client.post("/predict", json={"inputs": ["ok", "x" * 51]})
        assert r.status_code == 413 and r.json()["limit"] == {"name": "max_chars", "value": 50}
        assert r.json()["detail"].startswith("inputs[1]: 51 characters")
        r = client.post("/predict", json={"inputs": [{"text": "y" * 60}]})
        assert r.status_code == 413 and r.json()["limit"]["name"] == "max_chars"
        assert client.post("/predict", json={"inputs": ["ok", "x" * 50]}).status_code == 200


@pytest.mark.parametrize("inputs, where", [
    ([""], "inputs[0]: empty text"), (["ok", "   \n"], "inputs[1]: empty text"),
    ([{"text": " "}], "inputs[0].text: empty text"), ("a text", "expected a list"), ([3], "inputs[0]: expected"),
])
def test_blank_or_malformed_inputs_get_422(predictor, inputs, where):
    with client_for(predictor) as client:
        r = client.post("/predict", json={"inputs": inputs})
        assert r.status_code == 422 and where in r.json()["detail"]


def test_errors_quote_only_an_excerpt_of_the_input(predictor):
    big = "z" * 200_000
    with client_for(predictor, max_body_bytes=1_000_000, max_chars=500_000) as client:
        for body in (b'{"inputs": ["' + big.encode() + b'"', b"\xff" + big.encode(),
                     ('{"inputs": [[1, "' + big + '"]]}').encode(), ('{"inputs": {"x": "' + big + '"}}').encode()):
            r = client.post("/predict", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422 and len(r.content) < 500, r.content[:300]


def test_api_key_from_flag_or_environment(predictor, monkeypatch):
    with client_for(predictor, api_key="s3cret") as client:
        body = {"inputs": ["great film"]}
        r = client.post("/predict", json=body)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "s3cret" not in r.text
        assert client.post("/predict", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/predict", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.post("/predict", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/metrics").status_code == 401 and client.get("/info").status_code == 401
        assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
        assert client.get("/info", headers={"X-API-Key": "s3cret"}).json()["limits"]["api_key_required"] is True

    p = argparse.ArgumentParser()
    add_server_args(p)
    monkeypatch.setenv("TUNEFORGE_API_KEY", "from-env")
    assert options_from_args(p.parse_args([])).api_key == "from-env"
    assert options_from_args(p.parse_args(["--api-key", "flag", "--max-inputs", "8"])) == ServerOptions(
        max_inputs=8, api_key="flag")
    monkeypatch.delenv("TUNEFORGE_API_KEY")
    assert options_from_args(p.parse_args([])).api_key is None


def test_options_are_checked():
    with pytest.raises(ValueError, match="max_batch_size: must be >= 1"):
        ServerOptions(max_batch_size=0)
    with pytest.raises(ValueError, match="max_inputs .* above max_queue"):
        ServerOptions(max_inputs=100, max_queue=10)


def test_metrics_in_prometheus_text(predictor):
    with client_for(predictor, max_inputs=2) as client:
        client.post("/predict", json={"inputs": ["great film", "bad"]})
        client.post("/predict", json={"inputs": ["a", "b", "c"]})
        client.get("/no-such-path")
        r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert metric_value(text, "tuneforge_requests_total", {"endpoint": "/predict", "status": 200}) == 1
    assert metric_value(text, "tuneforge_requests_total", {"endpoint": "/predict", "status": 413}) == 1
    assert metric_value(text, "tuneforge_requests_total", {"endpoint": "other", "status": 404}) == 1
    assert metric_value(text, "tuneforge_request_duration_seconds_count", {"endpoint": "/predict"}) == 2
    assert metric_value(text, "tuneforge_batch_size_count") == 1
    assert metric_value(text, "tuneforge_batch_size_sum") == 2
    assert "tuneforge_queue_depth 0.0" in text and "tuneforge_forward_seconds_bucket" in text


def test_concurrent_requests_are_batched_into_few_forwards(predictor):
    gated = Gated(predictor)
    with client_for(gated, max_batch_size=64, max_wait_ms=2) as client, ThreadPoolExecutor(40) as pool:
        texts = [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(40)]
        first = pool.submit(client.post, "/predict", json={"inputs": [texts[0]]})
        assert gated.entered.wait(10)
        rest = [pool.submit(client.post, "/predict", json={"inputs": [t]}) for t in texts[1:]]
        wait_until(lambda: client.app.state.batcher.queued == 39)
        gated.release.set()
        answers = [f.result(timeout=30) for f in [first, *rest]]
    assert gated.calls == [1, 39]  # 40 requests, 2 forwards
    expected = predictor.predict(texts)
    for r, want in zip(answers, expected):
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] == want["label"]


def test_overload_gets_429_with_retry_after_and_every_accepted_request_completes(predictor):
    gated = Gated(predictor)
    with client_for(gated, max_queue=4, max_inputs=2, max_batch_size=8) as client, ThreadPoolExecutor(8) as pool:
        accepted = [pool.submit(client.post, "/predict", json={"inputs": ["great film"]})]
        assert gated.entered.wait(10)
        accepted += [pool.submit(client.post, "/predict", json={"inputs": ["bad", "love"]}) for _ in range(2)]
        wait_until(lambda: client.app.state.batcher.queued == 4)
        r = client.post("/predict", json={"inputs": ["one too many"]})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["limit"] == {"name": "max_queue", "value": 4}
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "saturated" and "retry-after" in ready.headers
        gated.release.set()
        answers = [f.result(timeout=30) for f in accepted]
        assert all(a.status_code == 200 for a in answers)
        assert [len(a.json()["predictions"]) for a in answers] == [1, 2, 2]
        assert client.get("/ready").json() == {"status": "ready", "queued": 0}
        text = client.get("/metrics").text
    assert metric_value(text, "tuneforge_requests_total", {"endpoint": "/predict", "status": 429}) == 1
    assert metric_value(text, "tuneforge_requests_total", {"endpoint": "/predict", "status": 200}) == 3


def test_predictor_wrapper_is_what_the_app_calls():
    # the app needs only predict, task, cfg.model and precision: a stand-in with those serves
    from fastapi.testclient import TestClient

    from tuneforge.inference.server import create_app

    task = SimpleNamespace(name="echo", parse_input=lambda item: {"text": item})
    fake = SimpleNamespace(predict=lambda items: [{"label": s[::-1]} for s in items], task=task,
                           cfg=SimpleNamespace(model="none"), precision="fp32")
    with TestClient(create_app(fake)) as client:
        assert client.post("/predict", json={"inputs": ["abc"]}).json() == {"predictions": [{"label": "cba"}]}


def test_a_validated_route_does_not_echo_its_body(predictor):
    # FastAPI's own 422 repeats the whole input; the app's handler quotes an excerpt (for any route it gains)
    with client_for(predictor) as client:
        @client.app.post("/typed")
        def typed(body: TypedBody) -> dict:
            return {"n": body.n}

        r = client.post("/typed", json={"n": "q" * 100_000})
        assert r.status_code == 422 and len(r.content) < 600 and "100000 chars" in r.text
        assert r.json()["detail"][0]["loc"] == ["body", "n"]
        # a route added after the app was built is counted under its own path
        text = client.get("/metrics").text
    assert metric_value(text, "tuneforge_requests_total", {"endpoint": "/typed", "status": 422}) == 1
