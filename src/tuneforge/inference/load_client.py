"""A bounded load generator for the HTTP server: N /predict bodies from C concurrent clients (aiohttp, asyncio),
with per-request latency, status counts and the predictions; used by the load test and bench/bench_server.py.

aiohttp, not httpx: on loopback the client shares the server's CPU, and httpx spent ~2.8 ms of CPU per request
against aiohttp's ~0.13 ms (1,000 requests at 50 concurrent, 2-core Xeon): with httpx the bench measured mostly
its own client."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_TRIES = 100  # per body with retry_429, by default: the run stays bounded against a server that never frees up


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0-100) of ``values``; None when empty.

    >>> percentile([1, 2, 3, 4], 50), percentile([1, 2, 3, 4], 99)
    (2, 4)
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class LoadResult:
    """What ``drive`` saw: one entry per body in ``statuses`` / ``answers`` (None where no answer came)."""

    seconds: float
    statuses: list[int | None]
    answers: list[list[dict[str, Any]] | None]
    latencies: list[float] = field(default_factory=list)  # of the 200s, in seconds
    errors: list[str] = field(default_factory=list)  # transport errors and non-200/429 answers
    retries: int = 0  # 429s answered by waiting Retry-After and sending again (retry_429=True)
    retry_after: list[int] = field(default_factory=list)  # the Retry-After values seen on 429s

    def summary(self, inputs_per_request: int = 1) -> dict[str, Any]:
        ok = sum(s == 200 for s in self.statuses)
        p50, p99 = percentile(self.latencies, 50), percentile(self.latencies, 99)
        return {"requests": len(self.statuses), "ok": ok, "status_counts": dict(Counter(map(str, self.statuses))),
                "errors": len(self.errors), "error_examples": self.errors[:3], "retries": self.retries,
                "seconds": round(self.seconds, 3), "requests_per_s": round(ok / self.seconds, 2),
                "texts_per_s": round(ok * inputs_per_request / self.seconds, 2),
                "p50_ms": None if p50 is None else round(p50 * 1000, 2),
                "p99_ms": None if p99 is None else round(p99 * 1000, 2),
                "max_retry_after_s": max(self.retry_after, default=None)}


async def _drive(base_url: str, bodies: Sequence[dict[str, Any]], concurrency: int, headers: dict[str, str],
                 retry_429: bool, max_retry_wait: float, timeout: float, max_tries: int) -> LoadResult:
    import aiohttp

    n = len(bodies)
    result = LoadResult(0.0, [None] * n, [None] * n)
    next_index = iter(range(n))

    async def one(client: Any, i: int) -> None:
        for _ in range(max_tries):
            start = time.perf_counter()
            try:
                async with client.post("/predict", json=bodies[i]) as r:
                    status, retry_after, body = r.status, r.headers.get("retry-after", "1"), await r.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                result.errors.append(f"request {i}: {type(e).__name__}: {e}")
                return
            result.statuses[i] = status
            if status == 429:
                result.retry_after.append(int(retry_after))
                if retry_429:
                    result.retries += 1
                    await asyncio.sleep(min(int(retry_after), max_retry_wait))
                    continue
                return
            if status != 200:
                result.errors.append(f"request {i}: HTTP {status}: {body[:200]!r}")
                return
            result.latencies.append(time.perf_counter() - start)
            result.answers[i] = json.loads(body)["predictions"]
            return
        result.errors.append(f"request {i}: still refused after {max_tries} tries")

    async def client_loop(client: Any) -> None:
        for i in next_index:  # a shared iterator: each client takes the next body when it is free
            await one(client, i)

    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url, headers=headers, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    result.seconds = time.perf_counter() - start
    return result


def drive(base_url: str, bodies: Sequence[dict[str, Any]], concurrency: int, headers: dict[str, str] | None = None,
          retry_429: bool = False, max_retry_wait: float = 1.0, timeout: float = 120.0,
          max_tries: int = MAX_TRIES) -> LoadResult:
    """POST each body to ``base_url/predict`` from ``concurrency`` clients, each sending its next body as soon as
    its previous answer came. With ``retry_429`` a refused request waits its Retry-After (at most
    ``max_retry_wait`` s) and is sent again until it is answered.

    >>> # r = drive("http://127.0.0.1:8000", [{"inputs": ["hello"]}] * 1000, 50); r.summary()["p99_ms"]
    """
    return asyncio.run(_drive(base_url, bodies, concurrency, headers or {}, retry_429, max_retry_wait, timeout,
                              max_tries))
