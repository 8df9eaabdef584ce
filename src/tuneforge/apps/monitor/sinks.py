"""Alert sinks: stdout, Python logging, an appended JSONL file, and a webhook that POSTs from a background thread
with retries and exponential back-off, so a slow or failing endpoint never blocks ingestion."""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneforge.io_utils import append_jsonl
from tuneforge.registry import Registry

log = logging.getLogger("tuneforge.monitor")
SINKS: Registry[Callable[..., Any]] = Registry("alert sink")


def describe(alert: dict[str, Any]) -> str:
    """One line per alert, for humans."""
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(alert["window_start"]))
    example = alert["examples"][0]["text"][:90] if alert["examples"] else ""
    return (f"ALERT {alert['detector']} topic={alert['topic']} window={when}Z/{alert['window_seconds']}s "
            f"stat={alert['statistic']:.2f} ({alert['detail']}) e.g. {example!r}")


class StdoutSink:
    def __init__(self, cfg: Any, base: Path):
        pass

    def send(self, alert: dict[str, Any]) -> None:
        print(describe(alert), file=sys.stdout, flush=True)

    def close(self) -> None:
        pass


class LogSink(StdoutSink):
    def send(self, alert: dict[str, Any]) -> None:
        log.warning(describe(alert))


class JsonlSink:
    def __init__(self, cfg: Any, base: Path):
        self.path = base / cfg.path
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def send(self, alert: dict[str, Any]) -> None:
        append_jsonl(self.path, alert)

    def close(self) -> None:
        pass


def post_json(url: str, payload: dict[str, Any], timeout: float) -> None:
    req = urllib.request.Request(url, data=json.dumps(payload, ensure_ascii=False).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the URL comes from the user's config
        resp.read()


class WebhookSink:
    """``send`` only queues; a daemon thread POSTs, retrying ``retries`` times with delays backoff, 2·backoff, …"""

    def __init__(self, cfg: Any, base: Path, post: Callable[[str, dict[str, Any], float], None] = post_json):
        self.url, self.retries, self.backoff, self.timeout = cfg.url, cfg.retries, cfg.backoff, cfg.timeout
        self.post = post
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.delivered = 0
        self.failed = 0
        self.thread = threading.Thread(target=self._run, name="monitor-webhook", daemon=True)
        self.thread.start()

    def send(self, alert: dict[str, Any]) -> None:
        self.queue.put(alert)

    def _run(self) -> None:
        while (alert := self.queue.get()) is not None:
            self._deliver(alert)
            self.queue.task_done()
        self.queue.task_done()

    def _deliver(self, alert: dict[str, Any]) -> None:
        for attempt in range(self.retries + 1):
            try:
                self.post(self.url, alert, self.timeout)
                self.delivered += 1
                return
            except (OSError, urllib.error.URLError) as e:  # HTTPError is a URLError; timeouts are OSErrors
                if attempt == self.retries:
                    self.failed += 1
                    log.error("webhook %s: alert %s/%s dropped after %d attempts: %s", self.url, alert["topic"],
                              alert["detector"], attempt + 1, e)
                    return
                time.sleep(self.backoff * 2 ** attempt)

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued (up to ``timeout`` seconds), then stop the thread."""
        self.queue.put(None)
        self.thread.join(timeout)


for _name, _cls in (("stdout", StdoutSink), ("log", LogSink), ("jsonl", JsonlSink), ("webhook", WebhookSink)):
    SINKS.register(_name, _cls)


def build_sinks(cfgs: list[Any], base: Path) -> list[Any]:
    return [SINKS.get(c.type)(c, base) for c in cfgs]
