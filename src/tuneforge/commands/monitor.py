"""``tuneforge monitor run|replay|report``: the financial sentiment monitor on a stream, a fast replay of a
historical stream, and the HTML dashboard."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path


def _args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="monitor_command", required=True)
    r = sub.add_parser("run", help="classify and aggregate the configured input, raising alerts")
    r.add_argument("config", help="monitor YAML")
    r.add_argument("--follow", action="store_true", help="keep reading new lines / files as they arrive (tail -f)")
    rp = sub.add_parser("replay", help="run a historical stream fast into a fresh database; print what fired when")
    rp.add_argument("config")
    rp.add_argument("stream", help="JSONL or CSV stream (or a folder of them)")
    rp.add_argument("--db", help="database for the replay (replaced); default: replay.sqlite next to the config")
    rp.add_argument("--out", help="write the replay's alerts and timings as JSON here")
    rep = sub.add_parser("report", help="write the HTML dashboard")
    rep.add_argument("config")
    rep.add_argument("--db", help="database to read (default: the config's)")
    rep.add_argument("--out", default="monitor.html", help="HTML file to write (default: monitor.html)")


def _run(args: argparse.Namespace) -> int:
    from tuneforge.apps.monitor.config import MonitorConfigError, load_monitor_config
    from tuneforge.apps.monitor.ingest import BadRecord

    try:
        cfg = load_monitor_config(args.config)
        return {"run": _live, "replay": _replay, "report": _report}[args.monitor_command](cfg, args)
    except (MonitorConfigError, BadRecord, FileNotFoundError, ValueError) as e:
        print(f"tuneforge monitor: error: {e}", file=sys.stderr)
        return 2


def _live(cfg, args: argparse.Namespace) -> int:
    from tuneforge.apps.monitor.service import build_monitor, records

    monitor = build_monitor(cfg)
    start = time.perf_counter()
    try:
        n = monitor.run(records(cfg, monitor.store, follow=args.follow))
    except KeyboardInterrupt:  # the open batch is rolled back; its records are read again on the next start
        n = -1
    finally:
        counters = monitor.store.counters()
        monitor.close()
    done = "stopped" if n < 0 else f"{n} records in {time.perf_counter() - start:.1f}s"
    print(f"monitor: {done}; totals {json.dumps(counters)}", file=sys.stderr)
    return 0


def _replay(cfg, args: argparse.Namespace) -> int:
    from tuneforge.apps.monitor.service import build_monitor, replay
    from tuneforge.io_utils import atomic_write_json

    db = Path(args.db) if args.db else Path(cfg.base_dir) / "replay.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    monitor = build_monitor(cfg, database=db, sinks=[])
    try:
        result = replay(monitor, args.stream)
    finally:
        monitor.close()
    for a in result["alerts"]:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(a["at"]))
        print(f"{at}Z  {a['detector']:<15} {a['topic']:<14} stat {a['statistic']:7.2f}  {a['detail']}")
    print(f"replay: {result['records']} records, {len(result['alerts'])} alerts, {result['texts_per_second']} "
          f"texts/s; database {db}", file=sys.stderr)
    if args.out:
        atomic_write_json(args.out, result)
    return 0


def _report(cfg, args: argparse.Namespace) -> int:
    from tuneforge.apps.monitor.report import render
    from tuneforge.apps.monitor.store import Store
    from tuneforge.io_utils import atomic_write_text

    db = Path(args.db) if args.db else cfg.resolve(cfg.database)
    if not db.exists():
        raise FileNotFoundError(f"database {db} does not exist; run `tuneforge monitor run` first")
    store = Store(db)
    try:
        atomic_write_text(args.out, render(store, cfg.detect_seconds))
    finally:
        store.close()
    print(f"dashboard written to {args.out}", file=sys.stderr)
    return 0


def register(register_command: Callable[..., None]) -> None:
    register_command("monitor", "financial sentiment monitoring: topics and sentiment over a stream, alerts",
                     _args, _run)
