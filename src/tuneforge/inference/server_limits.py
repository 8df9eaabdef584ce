"""What the HTTP server refuses and how: its options (limits, batching, API key) with CLI flags, the ASGI middlewares
for body size and API key, and the checks on a /predict body. Errors quote at most a short excerpt of the input."""

from __future__ import annotations

import argparse
import dataclasses
import hmac
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

API_KEY_ENV = "TUNEFORGE_API_KEY"
OPEN_PATHS = frozenset({"/health", "/ready"})  # probes answer without a key
EXCERPT_CHARS = 60
DETAIL_CHARS = 300

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ServerOptions:
    """Limits, batching and access of ``tuneforge serve``; each field is also a ``--flag``."""

    max_body_bytes: int = _f(1_048_576, "largest request body in bytes; a larger one gets 413 before it is read "
                                        "or parsed")
    max_inputs: int = _f(256, "most inputs in one /predict request (413 above)")
    max_chars: int = _f(20_000, "most characters in one input: a text, or all strings of an object input "
                                "together (413 above)")
    max_batch_size: int = _f(64, "most inputs from concurrent requests run as one forward; 1 runs each request "
                                 "alone")
    max_wait_ms: float = _f(5.0, "how long the oldest waiting request is held for others to join its forward")
    max_queue: int = _f(1024, "most inputs waiting for a forward; a request that does not fit gets 429 with "
                              "Retry-After")
    api_key: str | None = _f(None, f"require 'Authorization: Bearer KEY' or 'X-API-Key: KEY' (401 otherwise) on "
                                   f"every path but /health and /ready; default ${API_KEY_ENV}. The flag shows in "
                                   f"the process list: prefer the variable")

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_inputs", "max_chars", "max_batch_size", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"server option {name}: must be >= 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"server option max_wait_ms: must be >= 0, got {self.max_wait_ms}")
        if self.max_inputs > self.max_queue:
            raise ValueError(f"server option max_inputs ({self.max_inputs}) is above max_queue ({self.max_queue}): "
                             "a full-size request could never be queued")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("server option api_key: empty")

    def public(self) -> dict[str, Any]:
        """The options a client may see (``/info``): everything but the key."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "api_key"} | {
            "api_key_required": self.api_key is not None}


def add_server_args(p: argparse.ArgumentParser) -> None:
    """One ``--flag`` per ``ServerOptions`` field, with its default and help."""
    for f in dataclasses.fields(ServerOptions):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "api_key":
            p.add_argument(flag, default=None, metavar="KEY", help=f.metadata["help"])
        else:
            p.add_argument(flag, type=type(f.default), default=f.default,
                           help=f"{f.metadata['help']}; default {f.default}")


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ServerOptions)}
    values["api_key"] = values["api_key"] or os.environ.get(API_KEY_ENV) or None
    return ServerOptions(**values)


class Rejected(Exception):
    """A request refused with ``status``; ``limit`` names the option and its value when a limit was hit."""

    def __init__(self, status: int, detail: str, limit: tuple[str, int] | None = None,
                 headers: dict[str, str] | None = None):
        self.status, self.detail, self.limit, self.headers = status, detail[:DETAIL_CHARS], limit, headers or {}
        super().__init__(self.detail)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"detail": self.detail}
        if self.limit:
            out["limit"] = {"name": self.limit[0], "value": self.limit[1]}
        return out


def excerpt(value: Any, chars: int = EXCERPT_CHARS) -> str:
    """A short quote of ``value`` for an error message, never the whole of a large input.

    >>> excerpt("x" * 1000, 5)
    "'xxxxx'... (1000 chars)"
    """
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) <= chars:
        return repr(text)
    return f"{text[:chars]!r}... ({len(text)} chars)"


def text_chars(item: Any) -> int:
    """Characters in every string of ``item`` (a text, or an object's values, nested lists included)."""
    if isinstance(item, str):
        return len(item)
    if isinstance(item, dict):
        return sum(text_chars(v) for v in item.values())
    if isinstance(item, list):
        return sum(text_chars(v) for v in item)
    return 0


def parse_predict_body(body: bytes, opts: ServerOptions, text_fields: tuple[str, ...]) -> list[Any]:
    """The ``inputs`` of a ``/predict`` body, checked against the limits; raises ``Rejected``."""
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise Rejected(422, "the body is not UTF-8") from None
    except json.JSONDecodeError as e:
        raise Rejected(422, f"the body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(data, dict) or "inputs" not in data:
        raise Rejected(422, 'expected a JSON object {"inputs": [text or object, ...]}')
    inputs = data["inputs"]
    if not isinstance(inputs, list):
        raise Rejected(422, f"inputs: expected a list, got {type(inputs).__name__}")
    if not inputs:
        raise Rejected(422, "inputs is empty")
    if len(inputs) > opts.max_inputs:
        raise Rejected(413, f"inputs: {len(inputs)} inputs, at most max_inputs={opts.max_inputs} per request",
                       ("max_inputs", opts.max_inputs))
    for i, item in enumerate(inputs):
        check_item(i, item, opts.max_chars, text_fields)
    return inputs


def check_item(i: int, item: Any, max_chars: int, text_fields: tuple[str, ...]) -> None:
    """One input: a non-blank text, or an object whose text fields are non-blank; within ``max_chars``."""
    if not isinstance(item, (str, dict)):
        raise Rejected(422, f"inputs[{i}]: expected a text or an object, got {type(item).__name__} {excerpt(item)}")
    n = text_chars(item)
    if n > max_chars:
        raise Rejected(413, f"inputs[{i}]: {n} characters, at most max_chars={max_chars} per input",
                       ("max_chars", max_chars))
    if isinstance(item, str) and not item.strip():
        raise Rejected(422, f"inputs[{i}]: empty text")
    if isinstance(item, dict):
        for name in text_fields:
            value = item.get(name)
            if isinstance(value, str) and not value.strip():
                raise Rejected(422, f"inputs[{i}].{name}: empty text")


async def send_json(send: Send, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    """A whole JSON response from a middleware (before the app has started one)."""
    body = json.dumps(payload).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """Raised from ``receive`` once the streamed body passes the limit."""


class BodyLimit:
    """413 for a body over ``max_bytes``: at once from ``Content-Length``, else as soon as the streamed bytes pass it
    (chunked uploads, or a client that lies about its length). Nothing over the limit is buffered or parsed."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _reject(self, send: Send) -> Awaitable[None]:
        return send_json(send, 413, {"detail": f"the body is over max_body_bytes={self.max_bytes}",
                                     "limit": {"name": "max_body_bytes", "value": self.max_bytes}},
                         {"connection": "close"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                return await send_json(send, 400, {"detail": "Content-Length is not a number"})
            if length > self.max_bytes:
                return await self._reject(send)
        seen, started = 0, False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            if not started:
                await self._reject(send)


class ApiKeyAuth:
    """401 unless ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` matches; ``OPEN_PATHS`` need no key."""

    def __init__(self, app: Callable[..., Awaitable[None]], key: str):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-key", b"")
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer":
            given = token.strip()
        if given and hmac.compare_digest(given, self.key):  # constant time: no timing hint at the key
            return await self.app(scope, receive, send)
        await send_json(send, 401, {"detail": "missing or wrong API key: send 'Authorization: Bearer KEY'"},
                        {"www-authenticate": "Bearer"})
