"""An OpenAI-compatible chat endpoint for generative runs: ``POST /v1/chat/completions`` (whole answers and
server-sent-event streams) and ``GET /v1/models``, so existing OpenAI clients talk to a TuneForge run."""

# no `from __future__ import annotations`: FastAPI must see the request model classes themselves

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any


class ChatGenerator:
    """Chat completions from a loaded generation run (a ``Predictor`` of task ``generation``).

    >>> # gen = ChatGenerator(Predictor.from_run_dir("runs/alpaca")); gen.complete([{"role": "user", "content": "Hi"}])
    """

    def __init__(self, predictor: Any, model_name: str | None = None):
        task, model = predictor.task, predictor.model
        if getattr(task, "name", None) != "generation" or not hasattr(model, "generate"):
            raise ValueError(f"/v1/chat/completions needs a run of task 'generation', not "
                             f"{getattr(task, 'name', '?')!r}")
        self.task, self.model = task, model
        run_dir = getattr(predictor, "run_dir", None)
        self.model_name = model_name or (run_dir.name if run_dir else getattr(predictor.cfg, "model", "tuneforge"))
        self._lock = threading.Lock()  # one generation at a time: CPU-bound, and generate() is not reentrant

    def _prompt(self, messages: list[dict[str, str]]) -> tuple[Any, Any]:
        feature = self.task.encode({"messages": messages})  # keeps the last data.max_length prompt tokens
        batch = self.task.collate([feature])
        device = next(self.model.parameters()).device
        return batch["prompt_ids"].to(device), batch["prompt_mask"].to(device)

    @staticmethod
    def decoding(max_tokens: int | None, temperature: float | None, top_p: float | None) -> dict[str, Any]:
        """OpenAI sampling fields → generate() arguments; temperature 0 (or none given) decodes greedily."""
        out: dict[str, Any] = {"num_beams": 1}  # streaming works token by token
        if max_tokens is not None:
            out["max_new_tokens"] = max_tokens
        if temperature:
            out.update(do_sample=True, temperature=temperature)
            if top_p is not None:
                out["top_p"] = top_p
        else:
            out["do_sample"] = False
        return out

    def _finish(self, new: Any) -> tuple[int, str]:
        """(completion tokens, finish reason) of one row of new tokens (padded after the stop token)."""
        tokens = new.tolist()
        n = next((i for i, t in enumerate(tokens) if t in self.task.stop_ids), None)
        return (len(tokens), "length") if n is None else (n, "stop")

    def complete(self, messages: list[dict[str, str]], **decoding: Any) -> dict[str, Any]:
        """``{"text", "prompt_tokens", "completion_tokens", "finish_reason"}`` for one answer."""
        import torch

        ids, mask = self._prompt(messages)
        with self._lock, torch.inference_mode():
            new = self.model.generate(ids, mask, **decoding)[0]  # (N,) new tokens
        n, finish = self._finish(new)
        return {"text": self.task.decode(new[None])[0], "prompt_tokens": int(ids.shape[1]), "completion_tokens": n,
                "finish_reason": finish}

    def stream(self, messages: list[dict[str, str]], **decoding: Any) -> Iterator[tuple[str, str]]:
        """``("text", piece)`` as the model produces text, then one ``("finish", reason)``."""
        from tuneforge.inference.streaming import WholeTextStreamer

        ids, mask = self._prompt(messages)
        streamer = WholeTextStreamer(self.task.tokenizer, timeout=600)
        errors: list[BaseException] = []
        result: list[Any] = []

        def work() -> None:
            import torch

            try:
                with self._lock, torch.inference_mode():
                    result.append(self.model.generate(ids, mask, streamer=streamer, **decoding)[0])
            except BaseException as e:  # re-raised in the reader; end() keeps it from waiting forever
                errors.append(e)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        for piece in streamer:
            if piece:
                yield "text", piece
        thread.join()
        if errors:
            raise errors[0]
        yield "finish", self._finish(result[0])[1]


def message_text(content: Any) -> str:
    """An OpenAI message's content: a string, or a list of parts whose ``text`` parts are joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise ValueError("message content must be a string or a list of text parts")


def add_openai_routes(app: Any, generator: ChatGenerator) -> Any:
    """Add ``POST /v1/chat/completions`` and ``GET /v1/models`` to ``app`` (a FastAPI app) and return it."""
    from fastapi.responses import JSONResponse, StreamingResponse
    from pydantic import BaseModel, ConfigDict, Field

    class Message(BaseModel):
        model_config = ConfigDict(extra="allow")
        role: str
        content: Any = ""

    class ChatRequest(BaseModel):
        model_config = ConfigDict(extra="allow")  # OpenAI fields this server does not use are accepted
        model: str | None = None
        messages: list[Message] = Field(min_length=1)
        max_tokens: int | None = Field(default=None, ge=1, le=4096)
        max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)
        temperature: float | None = Field(default=None, ge=0, le=2)
        top_p: float | None = Field(default=None, gt=0, le=1)
        n: int = 1
        stream: bool = False

    def _error(message: str, param: str) -> Any:
        """A 400 in OpenAI's error shape, so clients show the message."""
        return JSONResponse(status_code=400, content={"error": {"message": message, "type": "invalid_request_error",
                                                                "param": param, "code": None}})

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": generator.model_name, "object": "model", "created": 0,
                                            "owned_by": "tuneforge"}]}

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest) -> Any:
        if req.n != 1:
            return _error("only n=1 is supported", "n")
        try:
            messages = [{"role": m.role, "content": message_text(m.content)} for m in req.messages]
        except ValueError as e:
            return _error(str(e), "messages")
        bad = [m["role"] for m in messages if m["role"] not in ("system", "user", "assistant")]
        if bad:
            return _error(f"unsupported role {bad[0]!r}; known: system, user, assistant", "messages")
        decoding = ChatGenerator.decoding(req.max_completion_tokens or req.max_tokens, req.temperature, req.top_p)
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if req.stream:
            return StreamingResponse(_sse(generator, messages, decoding, cid, created), media_type="text/event-stream")
        out = generator.complete(messages, **decoding)
        return {"id": cid, "object": "chat.completion", "created": created, "model": generator.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out["text"]},
                             "finish_reason": out["finish_reason"], "logprobs": None}],
                "usage": {"prompt_tokens": out["prompt_tokens"], "completion_tokens": out["completion_tokens"],
                          "total_tokens": out["prompt_tokens"] + out["completion_tokens"]}}

    return app


def _sse(generator: ChatGenerator, messages: list[dict[str, str]], decoding: dict[str, Any], cid: str,
         created: int) -> Iterator[str]:
    """``chat.completion.chunk`` events: the role, then one delta per text piece, then the finish reason."""
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": generator.model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for kind, value in generator.stream(messages, **decoding):
        yield chunk({"content": value}) if kind == "text" else chunk({}, value)
    yield "data: [DONE]\n\n"
