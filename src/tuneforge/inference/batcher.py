"""``MicroBatcher``: a bounded queue whose one worker thread runs the inputs of many concurrent requests as one
``predict`` call, and routes each request's share of the results back to it."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Done = Callable[[list[Any] | None, BaseException | None], None]


class QueueFull(Exception):
    """The queue cannot take these inputs now; ``retry_after`` is a guess in whole seconds for when it can."""

    def __init__(self, queued: int, limit: int, retry_after: int):
        self.queued, self.limit, self.retry_after = queued, limit, retry_after
        super().__init__(f"the queue holds {queued} inputs (max_queue {limit}); retry in {retry_after} s")


class BatcherClosed(RuntimeError):
    """The server is shutting down and takes no new requests."""


@dataclass
class _Job:
    items: list[Any]
    done: Done
    enqueued: float


def retry_after_seconds(waiting: int, inputs_per_second: float | None, cap: int = 60) -> int:
    """Whole seconds until ``waiting`` inputs are worked off at the measured rate, between 1 and ``cap``.

    >>> retry_after_seconds(300, 100.0)
    3
    """
    if not inputs_per_second or inputs_per_second <= 0:
        return 1
    return max(1, min(cap, math.ceil(waiting / inputs_per_second)))


class MicroBatcher:
    """Gathers requests for up to ``max_wait_s`` (counted from the oldest waiting one) or until
    ``max_batch_size`` inputs are waiting, then runs them as one ``predict(items)`` on its own thread, so torch
    work never blocks the event loop and concurrent clients share forwards. At most ``max_queue`` inputs wait;
    beyond that ``submit`` raises ``QueueFull`` at once. A request is never split across forwards.

    Every accepted request gets its answer: ``close()`` stops intake and drains what is queued.

    >>> b = MicroBatcher(lambda xs: [x * 2 for x in xs]); b.submit([1, 2], print); b.close()
    [2, 4] None
    """

    def __init__(self, predict: Callable[[list[Any]], Sequence[Any]], max_batch_size: int = 64,
                 max_wait_s: float = 0.005, max_queue: int = 1024,
                 on_batch: Callable[[int, float], None] | None = None):
        if max_batch_size < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1 and max_wait_s >= 0")
        self._predict, self.on_batch = predict, on_batch
        self.max_batch_size, self.max_wait_s, self.max_queue = max_batch_size, max_wait_s, max_queue
        self._jobs: deque[_Job] = deque()
        self._queued = 0  # inputs waiting, not yet handed to a forward
        self._in_flight = 0  # inputs in the running forward
        self._rate: float | None = None  # inputs per second of recent forwards (EWMA), for Retry-After
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tuneforge-batcher", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Inputs waiting for a forward."""
        return self._queued

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed

    @property
    def saturated(self) -> bool:
        return self._queued >= self.max_queue

    def retry_after(self) -> int:
        return retry_after_seconds(self._queued + self._in_flight, self._rate)

    def submit(self, items: list[Any], done: Done) -> None:
        """Queue ``items`` (one request); ``done(results, None)`` or ``done(None, error)`` is called once, from the
        worker thread. Raises ``QueueFull`` or ``BatcherClosed`` instead of queueing."""
        with self._cond:
            if self._closed:
                raise BatcherClosed("the server is shutting down")
            if self._queued + len(items) > self.max_queue:
                raise QueueFull(self._queued, self.max_queue, self.retry_after())
            self._jobs.append(_Job(list(items), done, time.monotonic()))
            self._queued += len(items)
            self._cond.notify()

    async def run(self, items: list[Any]) -> list[Any]:
        """``submit`` for asyncio code: awaits this request's results (or raises its error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()

        def done(results: list[Any] | None, error: BaseException | None) -> None:
            loop.call_soon_threadsafe(_settle, future, results, error)

        self.submit(items, done)
        return await future

    def close(self, timeout: float | None = None) -> None:
        """Refuse new requests, answer every queued one, stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._forward(batch)
            with self._cond:
                self._in_flight = 0

    def _next_batch(self) -> list[_Job] | None:
        with self._cond:
            while not self._jobs:
                if self._closed:
                    return None
                self._cond.wait()
            # the deadline runs from the oldest job's arrival: jobs that queued during the previous forward
            # have waited already and go at once
            deadline = self._jobs[0].enqueued + self.max_wait_s
            while self._queued < self.max_batch_size and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, n = [], 0
            while self._jobs and (not batch or n + len(self._jobs[0].items) <= self.max_batch_size):
                job = self._jobs.popleft()
                batch.append(job)
                n += len(job.items)
            self._queued -= n
            self._in_flight = n
            return batch

    def _forward(self, batch: list[_Job]) -> None:
        items = [item for job in batch for item in job.items]
        start = time.perf_counter()
        try:
            results = list(self._predict(items))
            if len(results) != len(items):
                raise RuntimeError(f"predict returned {len(results)} results for {len(items)} inputs")
        except Exception as error:  # noqa: BLE001 - every error goes back to the request(s) it belongs to
            if len(batch) > 1:  # one bad request must not fail the others that shared its forward
                for job in batch:
                    self._forward([job])
                return
            _call(batch[0].done, None, error)
            return
        seconds = time.perf_counter() - start
        self._observe(len(items), seconds)
        offset = 0
        for job in batch:
            _call(job.done, results[offset:offset + len(job.items)], None)
            offset += len(job.items)

    def _observe(self, n: int, seconds: float) -> None:
        rate = n / max(seconds, 1e-6)
        self._rate = rate if self._rate is None else 0.8 * self._rate + 0.2 * rate
        if self.on_batch is not None:
            _call(self.on_batch, n, seconds)


def _call(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # a broken callback must not stop the worker that serves everyone else
        log.exception("micro-batcher callback failed")


def _settle(future: asyncio.Future[list[Any]], results: list[Any] | None, error: BaseException | None) -> None:
    if future.done():  # the request was cancelled (client gone); its answer is dropped
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(results or [])
