"""Assembling a monitor from its config: classifiers, sinks, database and input reader; live runs and replays."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tuneforge.apps.monitor.config import MonitorConfig
from tuneforge.apps.monitor.ingest import Fields, Record, Skipped, read_directory, read_file, read_stdin
from tuneforge.apps.monitor.pipeline import Monitor
from tuneforge.apps.monitor.sinks import build_sinks
from tuneforge.apps.monitor.store import Store


def build_monitor(cfg: MonitorConfig, database: str | Path | None = None, classifiers: tuple | None = None,
                  sinks: list[Any] | None = None) -> Monitor:
    """A ``Monitor`` on ``cfg``'s database (or ``database``); ``classifiers`` = (sentiment, topics) overrides the
    models the config names (tests pass small stand-ins)."""
    if classifiers is None:
        from tuneforge.apps.monitor.classify import load_classifiers

        classifiers = load_classifiers(cfg)
    store = Store(database or cfg.resolve(cfg.database))
    return Monitor(cfg, *classifiers, sinks if sinks is not None else build_sinks(cfg.sinks, Path(cfg.base_dir)),
                   store)


def records(cfg: MonitorConfig, store: Store, follow: bool = False, path: str | Path | None = None,
            stop: Callable[[], bool] = lambda: False) -> Iterator[Record | Skipped | str]:
    """The config's input from the offsets ``store`` holds (``path`` overrides ``input.path``)."""
    inp = cfg.input
    fields = Fields(inp.time_field, inp.text_field, inp.source_field)
    if inp.kind == "stdin" and path is None:
        return read_stdin(fields, "csv" if inp.format == "csv" else "jsonl", inp.skip_bad)
    where = Path(path) if path is not None else cfg.resolve(inp.path)
    if where is None:
        raise ValueError("input.path is required for input.kind file or directory")
    if not where.exists():
        raise FileNotFoundError(f"input {where} does not exist")
    if where.is_dir():
        return read_directory(where, store.offsets(), fields, inp.format, follow, inp.skip_bad, inp.poll_seconds,
                              stop)
    key = str(where)
    return read_file(where, store.offset(key), fields, inp.format, follow, inp.skip_bad, inp.poll_seconds, stop,
                     origin=key)


def replay(monitor: Monitor, stream: str | Path) -> dict[str, Any]:
    """Run a whole historical ``stream`` through ``monitor`` as fast as it goes; what fired when, and the rate."""
    t0 = time.perf_counter()
    n = monitor.run(records(monitor.cfg, monitor.store, path=stream))
    seconds = time.perf_counter() - t0
    return {"records": n, "seconds": round(seconds, 3), "texts_per_second": round(n / max(seconds, 1e-9), 1),
            "stage_seconds": {k: round(v, 3) for k, v in monitor.seconds.items()},
            "counters": monitor.store.counters(), "alerts": monitor.store.alerts()}
