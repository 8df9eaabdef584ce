"""The OpenAI-compatible chat endpoint, driven by the real ``openai`` client against a local server (127.0.0.1),
whole answers and streamed ones, on a tiny generation run."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.tasks.test_generation_pipeline import generation_config
from tuneforge.inference.openai_api import ChatGenerator, add_openai_routes
from tuneforge.inference.predictor import Predictor
from tuneforge.runner import train

openai = pytest.importorskip("openai")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_llama_dir, tmp_path_factory):
    import uvicorn
    from fastapi import FastAPI

    folder = tmp_path_factory.mktemp("openai")
    cfg = generation_config(tiny_llama_dir, folder, train={"epochs": 2}, eval={"baselines": []})
    run_dir = train(cfg).run_dir
    generator = ChatGenerator(Predictor.from_run_dir(run_dir, precision="fp32"), model_name="tiny")
    app = add_openai_routes(FastAPI(), generator)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1", generator
    srv.should_exit = True
    thread.join(timeout=10)


def _client(base_url: str):
    # trust_env=False: a proxy set in the environment must not see loopback traffic
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0,
                         http_client=openai.DefaultHttpxClient(trust_env=False))


MESSAGES = [{"role": "system", "content": "be short"}, {"role": "user", "content": "where is my card"}]


def test_whole_answer_with_the_openai_client(server):
    base_url, generator = server
    client = _client(base_url)
    out = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0)
    choice = out.choices[0]
    assert out.object == "chat.completion" and out.model == "tiny"
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    expected = generator.complete(MESSAGES, **ChatGenerator.decoding(6, 0, None))
    assert choice.message.content == expected["text"]
    assert out.usage.completion_tokens == expected["completion_tokens"] <= 6
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_streamed_answer_with_the_openai_client(server):
    base_url, generator = server
    client = _client(base_url)
    stream = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0,
                                            stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    whole = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0)
    assert text.strip() == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_bad_requests_are_refused(server):
    base_url, _ = server
    client = _client(base_url)
    with pytest.raises(openai.BadRequestError, match="only n=1"):
        client.chat.completions.create(model="tiny", messages=MESSAGES, n=2)
    with pytest.raises(openai.BadRequestError, match="unsupported role"):
        client.chat.completions.create(model="tiny", messages=[{"role": "tool", "content": "x",
                                                                "tool_call_id": "1"}])
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="tiny", messages=[])


def test_serve_adds_the_chat_route_for_generative_runs(server):
    from fastapi import FastAPI

    from tuneforge.apps.routes import add_run_routes

    _, generator = server
    predictor = type("P", (), {"task": generator.task, "model": generator.model, "run_dir": None,
                               "cfg": None})()
    assert add_run_routes(FastAPI(), predictor) == ["/v1/chat/completions", "/v1/models"]
