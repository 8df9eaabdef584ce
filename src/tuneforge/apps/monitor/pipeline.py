"""The monitor loop: batches of records → dedup → both classifiers → window aggregates, offsets and alerts in one
SQLite transaction → alert sinks (after the commit, so a sink never sees an alert the database lost)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tuneforge.apps.monitor import detectors as det
from tuneforge.apps.monitor.config import MonitorConfig, parse_duration
from tuneforge.apps.monitor.dedup import Deduplicator
from tuneforge.apps.monitor.ingest import FLUSH, Record, Skipped
from tuneforge.apps.monitor.store import ALL, Store


def share(w: dict[str, Any], key: str = "wneg") -> float:
    """Confidence-weighted share: the summed probability of a class over the window's texts."""
    return w[key] / w["n"] if w["n"] else 0.0


def findings(cfg: Any, series: Sequence[dict[str, Any]], alerted: set[int] = frozenset()) -> list[det.Finding]:
    """Run the configured detectors on one topic's window ``series`` (oldest first, the newest is judged).
    ``cfg`` is a ``DetectConfig``; windows in ``alerted`` (starts) are left out of the baselines, so an earlier
    surge does not widen the spread the next one is judged against."""
    cur = series[-1]
    past = [w for w in series[:-1] if w["start"] not in alerted]
    hist = [share(w) for w in past if w["n"]]
    out = []
    for name in cfg.detectors:
        if name == "negative_z":
            out.append(det.negative_surge_z(hist, share(cur), cur["n"], z=cfg.z, min_volume=cfg.min_volume,
                                            min_history=cfg.min_history, min_scale=cfg.min_scale))
        elif name == "negative_cusum":
            recent = [(share(w), w["n"]) for w in series[-cfg.cusum_span:]]
            out.append(det.negative_cusum(hist, recent, h=cfg.cusum_h, drift=cfg.cusum_drift,
                                          min_volume=cfg.min_volume, min_history=cfg.min_history,
                                          min_scale=cfg.min_scale))
        elif name == "volume_spike":
            first = next((i for i, w in enumerate(past) if w["n"]), len(past))
            counts = [w["n"] for w in past[first:]]  # empty windows count, but not those before the topic's first text
            out.append(det.volume_spike(counts, cur["n"], z=cfg.volume_z, ratio=cfg.volume_ratio,
                                        min_volume=cfg.min_volume, min_history=cfg.min_history))
        elif name == "reversal":
            filled = [w for w in series if w["n"]]
            out.append(det.sentiment_reversal([share(w, "wpos") - share(w) for w in filled], [w["n"] for w in filled],
                                              span=cfg.reversal_span, delta=cfg.reversal_delta,
                                              min_volume=cfg.min_volume * cfg.reversal_span))
        else:
            known = "negative_cusum, negative_z, reversal, volume_spike"
            raise ValueError(f"detect.detectors: unknown detector {name!r}; known: {known}")
    return out


class Monitor:
    """Feed it records (``run``); it keeps windows, offsets and alerts in ``store`` and sends new alerts to sinks."""

    def __init__(self, cfg: MonitorConfig, sentiment: Callable, topics: Callable, sinks: list[Any],
                 store: Store | None = None):
        self.cfg, self.sentiment, self.topics, self.sinks = cfg, sentiment, topics, sinks
        self.store = store or Store(cfg.resolve(cfg.database))
        self.widths, self.detect_width = cfg.window_seconds, cfg.detect_seconds
        d = cfg.dedup
        self.dedup = Deduplicator(parse_duration(d.horizon, "dedup.horizon"), d.threshold, d.shingle, d.num_perm)
        newest = self.store.conn.execute("SELECT max(t) FROM seen").fetchone()[0]
        if newest is not None:  # reposts of texts seen before a restart still count once
            for t, key, sig in self.store.load_seen(newest - self.dedup.horizon):
                self.dedup.add(t, key, sig, new=False)
        self.alerts: list[dict[str, Any]] = []
        self.seconds = {"dedup": 0.0, "sentiment": 0.0, "topics": 0.0, "classify": 0.0, "store": 0.0}

    def run(self, items: Iterable[Record | Skipped | str], on_batch: Callable[[int], None] = lambda n: None) -> int:
        """Process ``items`` in batches of ``batch_size`` records (a ``FLUSH`` closes a batch early); batches
        already read are classified together up to ``classify_batch`` records. Returns the number of records read
        (duplicates included)."""
        batch: list[Record] = []
        skipped: list[Skipped] = []
        pending: list[tuple[list[Record], list[Skipped]]] = []  # closed batches awaiting classification
        total = 0
        for item in items:
            if isinstance(item, Record):
                batch.append(item)
                total += 1
            elif isinstance(item, Skipped):
                skipped.append(item)
            if (item == FLUSH and (batch or skipped)) or len(batch) >= self.cfg.batch_size:
                pending.append((batch, skipped))
                batch, skipped = [], []
            if pending and (item == FLUSH or sum(len(b) for b, _ in pending) + self.cfg.batch_size
                            > self.cfg.classify_batch):
                self.process_many(pending, on_batch)
                pending = []
        if batch or skipped:
            pending.append((batch, skipped))
        if pending:
            self.process_many(pending, on_batch)
        return total

    def process(self, batch: list[Record], skipped: list[Skipped]) -> list[dict[str, Any]]:
        """One batch, one transaction. Returns the alerts it raised."""
        return self.process_many([(batch, skipped)])

    def process_many(self, batches: Sequence[tuple[list[Record], list[Skipped]]],
                     on_batch: Callable[[int], None] = lambda n: None) -> list[dict[str, Any]]:
        """Consecutive batches: dedup in record order, one call of each classifier over all their fresh texts,
        then one transaction per batch, exactly as if each batch had been classified on its own. Returns the
        alerts raised."""
        t0 = time.perf_counter()
        fresh_seen = []
        for batch, _ in batches:
            fresh = [r for r in batch if not (self.cfg.dedup.enabled and self.dedup.seen(r.text, r.t))]
            fresh_seen.append((fresh, list(self.dedup.added)))
            self.dedup.added.clear()
        t1 = time.perf_counter()
        texts = [r.text for fresh, _ in fresh_seen for r in fresh]
        sentiments = self.sentiment(texts) if texts else []
        t2 = time.perf_counter()
        topics = self.topics(texts) if texts else []
        t3 = time.perf_counter()
        if len(sentiments) != len(texts) or len(topics) != len(texts):
            raise ValueError(f"classifiers returned {len(sentiments)} sentiments and {len(topics)} topics for "
                             f"{len(texts)} texts")
        for stage, seconds in (("dedup", t1 - t0), ("sentiment", t2 - t1), ("topics", t3 - t2), ("classify", t3 - t1)):
            self.seconds[stage] += seconds
        new: list[dict[str, Any]] = []
        i = 0
        for (batch, skipped), (fresh, seen) in zip(batches, fresh_seen):
            n = len(fresh)
            new += self.commit(batch, skipped, fresh, seen, sentiments[i:i + n], topics[i:i + n])
            i += n
            on_batch(len(batch))
        return new

    def commit(self, batch: list[Record], skipped: list[Skipped], fresh: list[Record], seen: list[tuple],
               sentiments: Sequence[tuple[str, dict[str, float]]], topics: Sequence[str]) -> list[dict[str, Any]]:
        """Store one classified batch in one transaction, then send its new alerts to the sinks."""
        t1 = time.perf_counter()
        s, touched = self.store, set()
        try:
            s.begin()
            for r, (label, probs), topic in zip(fresh, sentiments, topics):
                for width in self.widths:
                    start = s.add(width, r.t, topic, label, probs)
                    s.add(width, r.t, ALL, label, probs)
                    if width == self.detect_width:
                        touched |= {(topic, start), (ALL, start)}
                s.add_text(r.t, topic, label, probs, r.source, r.text)
            for t, key, sig in seen:
                s.add_seen(t, key, sig)
            for item in [*batch, *skipped]:  # records arrive in file order: the last end per origin is the offset
                s.set_offset(item.origin, item.end)
            s.bump("records", len(batch))
            s.bump("duplicates", len(batch) - len(fresh))
            s.bump("bad_records", len(skipped))
            new = [a for a in self.detect(sorted(touched)) if s.add_alert(a)]
            s.commit()
        except BaseException:
            s.rollback()
            raise
        self.seconds["store"] += time.perf_counter() - t1
        for alert in new:
            for sink in self.sinks:
                sink.send(alert)
        self.alerts += new
        return new

    def detect(self, touched: Iterable[tuple[str, int]]) -> list[dict[str, Any]]:
        width, k = self.detect_width, self.cfg.detect.baseline
        out = []
        for topic, start in touched:
            series = self.store.series(width, topic, start, k + 1)
            for f in findings(self.cfg.detect, series, self.store.alerted(width, topic, start - k * width, start)):
                if f.fired:
                    cur = series[-1]
                    out.append({"topic": topic, "window_start": start, "window_seconds": width,
                                "detector": f.detector, "statistic": round(f.statistic, 4), "detail": f.detail,
                                "at": cur["last_t"], "count": cur["n"], "negative_share": round(share(cur), 4),
                                "examples": self.store.examples(topic, start, start + width, self.cfg.examples)})
        return out

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.store.close()
