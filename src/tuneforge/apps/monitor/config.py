"""The ``monitor`` YAML: typed sections (models, input, windows, dedup, detectors, sinks), checked on load."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tuneforge.config_sections import _f

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class MonitorConfigError(ValueError):
    """A monitor config that cannot be used; the message names the file and the field."""


def parse_duration(value: Any, where: str) -> int:
    """Seconds from ``900``, ``"15m"``, ``"1h"`` or ``"1d"``.

    >>> parse_duration("15m", "w")
    900
    """
    if isinstance(value, int) and value > 0:
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", str(value))
    if not m or int(m.group(1)) <= 0:
        raise MonitorConfigError(f"{where}: {value!r} is not a duration (e.g. 900, '15m', '1h', '1d')")
    return int(m.group(1)) * UNITS[m.group(2)]


@dataclass
class TopicsConfig:
    run: str | None = _f(None, "A topic classifier run directory; when unset, topics are assigned zero-shot.")
    descriptions: dict[str, str] = _f({}, "Zero-shot topics: name → a sentence describing it. Each text goes to the "
                                          "topic whose description embedding is most similar.")
    encoder: str = _f("minilm", "Sentence encoder for zero-shot topics (a model name or local folder).")
    min_similarity: float = _f(0.0, "Zero-shot: below this cosine similarity the text's topic is `other`.")


@dataclass
class InputConfig:
    kind: str = _f("file", "`file` (JSONL or CSV, read incrementally), `directory` (new files in name order) or "
                           "`stdin`.")
    path: str | None = _f(None, "The file or directory to read (relative to the config file).")
    format: str = _f("auto", "`jsonl`, `csv`, or `auto` (from the file extension).")
    time_field: str = _f("time", "Field with the record's time: ISO 8601 or Unix seconds.")
    text_field: str = _f("text", "Field with the text.")
    source_field: str = _f("source", "Optional field naming where the text came from.")
    skip_bad: bool = _f(False, "Skip bad records (counted and logged with file:line) instead of stopping.")
    poll_seconds: float = _f(1.0, "With --follow: how often to look for new lines or files.")


@dataclass
class DedupConfig:
    enabled: bool = _f(True, "Count near-identical texts (reposts) once.")
    horizon: Any = _f("1d", "How far back a repost is looked for (duration).")
    threshold: float = _f(0.8, "Estimated Jaccard similarity of word shingles at or above which a text is a repost.")
    shingle: int = _f(3, "Words per shingle.")
    num_perm: int = _f(64, "MinHash permutations (more = a finer similarity estimate, slower).")


@dataclass
class DetectConfig:
    window: Any = _f("1h", "Window width the detectors watch (one of `windows`).")
    baseline: int = _f(48, "Earlier windows of the same topic that form its baseline.")
    min_history: int = _f(12, "Windows of baseline needed before a topic can alert.")
    min_volume: int = _f(8, "Texts a window needs before it can alert (three texts are not a surge).")
    z: float = _f(3.5, "Robust z-score of the negative share that raises a negative-surge alert.")
    min_scale: float = _f(0.08, "Floor on the baseline's spread (share units), so a flat history is not hair-trigger.")
    cusum_h: float = _f(6.0, "CUSUM decision threshold (in baseline spreads).")
    cusum_drift: float = _f(1.0, "CUSUM slack per window (in baseline spreads) absorbed before accumulating.")
    cusum_span: int = _f(4, "Windows the CUSUM runs over (newest last).")
    volume_z: float = _f(5.0, "Robust z-score of the window's count that raises a volume-spike alert.")
    volume_ratio: float = _f(2.5, "A volume spike also needs this multiple of the median count.")
    reversal_span: int = _f(3, "Windows averaged on each side of a sentiment reversal; each side needs "
                               "min_volume × reversal_span texts.")
    reversal_delta: float = _f(0.5, "Move of net sentiment (positive − negative share) that counts as a reversal.")
    detectors: list[str] = _f(["negative_z", "negative_cusum", "volume_spike", "reversal"],
                              "Detectors to run.")


@dataclass
class SinkConfig:
    type: str = _f("stdout", "`stdout`, `log` (Python logging), `jsonl` (append to `path`) or `webhook` (POST to "
                             "`url`).")
    path: str | None = _f(None, "jsonl: the file alerts are appended to.")
    url: str | None = _f(None, "webhook: the URL alerts are POSTed to as JSON.")
    retries: int = _f(5, "webhook: attempts after the first before an alert is dropped (and logged).")
    backoff: float = _f(0.5, "webhook: first retry delay in seconds; doubles each retry.")
    timeout: float = _f(5.0, "webhook: seconds per request.")


@dataclass
class MonitorConfig:
    sentiment_run: str = _f("", "Sentiment classifier run directory (labels negative / neutral / positive).")
    topics: TopicsConfig = field(default_factory=TopicsConfig, metadata={"help": "Topic assignment."})
    input: InputConfig = field(default_factory=InputConfig, metadata={"help": "Where texts come from."})
    database: str = _f("monitor.sqlite", "SQLite file with windows, input offsets and alerts.")
    batch_size: int = _f(64, "Texts committed per batch (one SQLite transaction; the detectors run after each).")
    classify_batch: int = _f(256, "Texts the classifiers take in one call: up to this many records already read "
                                  "(whole batches, never waiting for more input) are classified together, sorted "
                                  "by length, then committed batch by batch as above.")
    windows: list[Any] = _f(["15m", "1h", "1d"], "Window widths aggregated (durations).")
    dedup: DedupConfig = field(default_factory=DedupConfig, metadata={"help": "Near-duplicate detection."})
    detect: DetectConfig = field(default_factory=DetectConfig, metadata={"help": "Detector parameters."})
    sinks: list[SinkConfig] = field(default_factory=lambda: [SinkConfig()], metadata={"help": "Alert sinks."})
    examples: int = _f(3, "Example texts attached to each alert (most negative first).")
    precision: str = _f("auto", "Classifier precision: auto, fp32, bf16 or int8. bf16 predicts with bf16-weight "
                                "copies and redoes near ties in fp32 (fp32's labels and topics, bf16's other "
                                "probabilities); fp32 gives fp32's alerts exactly.")
    base_dir: str = _f(".", "Folder relative paths are resolved against (set to the config file's folder on load).")

    def resolve(self, path: str | None) -> Path | None:
        return None if path is None else Path(self.base_dir) / path

    @property
    def window_seconds(self) -> list[int]:
        return [parse_duration(w, f"windows[{i}]") for i, w in enumerate(self.windows)]

    @property
    def detect_seconds(self) -> int:
        return parse_duration(self.detect.window, "detect.window")


def _build(cls: Any, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise MonitorConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise MonitorConfigError(f"{where}: unknown field {unknown[0]!r}; known: {', '.join(sorted(fields))}")
    kw = {}
    for name, value in raw.items():
        sub = {"topics": TopicsConfig, "input": InputConfig, "dedup": DedupConfig, "detect": DetectConfig}.get(name)
        if cls is MonitorConfig and sub:
            value = _build(sub, value, f"{where}{name}.")
        elif cls is MonitorConfig and name == "sinks":
            value = [_build(SinkConfig, s, f"{where}sinks[{i}].") for i, s in enumerate(value or [])]
        kw[name] = value
    return cls(**kw)


def check(cfg: MonitorConfig, where: str) -> None:
    """Cross-field checks; errors name the field."""
    if not cfg.sentiment_run:
        raise MonitorConfigError(f"{where}: sentiment_run is required (a sentiment classifier run directory)")
    if not cfg.topics.run and not cfg.topics.descriptions:
        raise MonitorConfigError(f"{where}: topics needs either `run` or `descriptions`")
    if cfg.input.kind not in ("file", "directory", "stdin"):
        raise MonitorConfigError(f"{where}: input.kind {cfg.input.kind!r}; known: directory, file, stdin")
    if cfg.input.format not in ("auto", "jsonl", "csv"):
        raise MonitorConfigError(f"{where}: input.format {cfg.input.format!r}; known: auto, csv, jsonl")
    if cfg.detect_seconds not in cfg.window_seconds:
        raise MonitorConfigError(f"{where}: detect.window {cfg.detect.window!r} is not one of windows {cfg.windows}")
    parse_duration(cfg.dedup.horizon, f"{where}: dedup.horizon")
    for i, s in enumerate(cfg.sinks):
        if s.type not in ("stdout", "log", "jsonl", "webhook"):
            raise MonitorConfigError(f"{where}: sinks[{i}].type {s.type!r}; known: jsonl, log, stdout, webhook")
        if s.type == "jsonl" and not s.path or s.type == "webhook" and not s.url:
            raise MonitorConfigError(f"{where}: sinks[{i}] ({s.type}) needs {'path' if s.type == 'jsonl' else 'url'}")
    if cfg.batch_size < 1 or cfg.classify_batch < 1 or cfg.detect.min_volume < 1:
        raise MonitorConfigError(f"{where}: batch_size, classify_batch and detect.min_volume must be ≥ 1")


def monitor_from_dict(raw: dict[str, Any], base_dir: str | Path = ".", where: str = "monitor config") -> MonitorConfig:
    cfg = _build(MonitorConfig, {"base_dir": str(base_dir), **raw}, "")
    check(cfg, where)
    return cfg


def load_monitor_config(path: str | Path, overrides: dict[str, Any] | None = None) -> MonitorConfig:
    """Read a monitor YAML; relative paths in it are taken from the file's folder."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise MonitorConfigError(f"{path}: {e}") from None
    try:
        return monitor_from_dict({**raw, **(overrides or {})}, path.parent, str(path))
    except (TypeError, MonitorConfigError) as e:
        raise MonitorConfigError(f"{path}: {e}") from None
