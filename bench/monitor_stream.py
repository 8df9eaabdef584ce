"""A seeded evaluation stream for the sentiment monitor, built from Financial PhraseBank sentences (read from
../shared/datasets, never copied into the repository), with injected negative surges whose times are known.

Stream model (all times UTC, starting 2026-01-05 00:00):
- background: Poisson arrivals at ``rate`` texts per hour for ``days`` days; each text is a random PhraseBank
  sentence (so the background keeps the corpus's label mix, about 12% negative in Sentences_50Agree);
- reposts: each background text is, with probability ``repost``, a copy of a text from the last 30 minutes with
  an "RT: " prefix and a URL appended (the monitor should count it once);
- surges: ``surges_per_day`` per day after the first day (the baseline warm-up), at least 8 hours apart, each
  ``surge_minutes`` long, adding ``surge_rate`` negative sentences per hour of one topic (topics with at least
  50 negative sentences: ``results`` and ``jobs`` in Sentences_50Agree);
- sentences are drawn without replacement (reshuffled once used up), so exact repeats are the injected reposts.
Topics come from keyword rules (``TOPIC_RULES``, first match wins): they pick the sentences a surge of a topic
draws from and are the reference for measuring zero-shot topic assignment. Sentences matching no rule are
background only.

    python bench/monitor_stream.py --out /tmp/stream.jsonl --truth /tmp/truth.json --days 7 --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
import re
from datetime import datetime, timezone
from pathlib import Path

FPB = Path(__file__).resolve().parents[2] / "shared/datasets/financial_phrasebank/Sentences_50Agree.txt"
T0 = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()
TOPIC_RULES = [  # (topic, pattern): keyword rules, checked in order
    ("jobs", r"\b(jobs?|staff|employees?|lay-?offs?|laid off|redundanc\w*|personnel|workforce|headcount)\b"),
    ("deals", r"\b(acqui\w*|merger|takeover|stake|deal|contract|agreement|orders?)\b"),
    ("results", r"\b(profit|net sales|revenue|earnings|net income|operating (income|result)|turnover|eps|loss)\b"),
    ("markets", r"\b(share price|shares|stock|index|investors?|dividend|market capitali[sz]ation)\b"),
]


def read_phrasebank(path: Path = FPB) -> list[tuple[str, str]]:
    """(sentence, label) pairs; lines without ``@label`` are skipped (see the dataset's SOURCE.md)."""
    out = []
    for line in path.read_text(encoding="latin-1").splitlines():
        text, sep, label = line.rpartition("@")
        if sep and label.strip() in ("negative", "neutral", "positive") and text.strip():
            out.append((text.strip(), label.strip()))
    return out


def topic_of(text: str) -> str | None:
    low = text.lower()
    return next((t for t, pat in TOPIC_RULES if re.search(pat, low)), None)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def surge_plan(rng: random.Random, days: int, per_day: int, minutes: int, topics: list[str]) -> list[dict]:
    """Surge starts: ``per_day`` per day from day 1 on, at least 8 h apart, each on a random topic."""
    plan: list[dict] = []
    for day in range(1, days):
        for _ in range(per_day):
            for _ in range(100):
                start = T0 + day * 86400 + rng.uniform(0, 86400 - minutes * 60)
                if all(abs(start - s["start"]) >= 8 * 3600 for s in plan):
                    plan.append({"topic": rng.choice(topics), "start": start, "end": start + minutes * 60})
                    break
    return sorted(plan, key=lambda s: s["start"])


class Deck:
    """Draws without replacement, reshuffling when empty, so a text repeats only after the whole pool has passed
    (repeats would otherwise be folded by the monitor's dedup and blur what a surge adds)."""

    def __init__(self, items: list[str], rng: random.Random):
        self.items, self.rng, self.left = items, rng, []

    def draw(self) -> str:
        if not self.left:
            self.left = self.rng.sample(self.items, len(self.items))
        return self.left.pop()


def build_stream(seed: int = 0, days: int = 7, rate: float = 40.0, repost: float = 0.05, surges_per_day: int = 2,
                 surge_minutes: int = 90, surge_rate: float = 15.0, min_pool: int = 50) -> tuple[list[dict], list[dict]]:
    """(records sorted by time, surges). Deterministic for a seed. Surges use topics with at least ``min_pool``
    negative sentences, so a surge's texts are distinct."""
    rng = random.Random(seed)
    corpus = read_phrasebank()
    by_topic: dict[str, list[str]] = {}
    for text, label in corpus:
        topic = topic_of(text)
        if topic and label == "negative":
            by_topic.setdefault(topic, []).append(text)
    pools = {t: Deck(v, rng) for t, v in by_topic.items() if len(v) >= min_pool}
    plan = surge_plan(rng, days, surges_per_day, surge_minutes, sorted(pools))
    background = Deck([text for text, _ in corpus], rng)
    rows: list[dict] = []
    t = T0
    while (t := t + rng.expovariate(rate / 3600)) < T0 + days * 86400:
        recent = [r for r in rows[-40:] if r["t"] > t - 1800 and r["source"] == "newswire"]
        if recent and rng.random() < repost:
            src = rng.choice(recent)["text"]
            rows.append({"t": t, "text": f"RT: {src} https://t.co/{rng.randrange(16**6):06x}", "source": "repost"})
        else:
            rows.append({"t": t, "text": background.draw(), "source": "newswire"})
    for s in plan:
        t = s["start"]
        while (t := t + rng.expovariate(surge_rate / 3600)) < s["end"]:
            rows.append({"t": t, "text": pools[s["topic"]].draw(), "source": "newswire"})
    rows.sort(key=lambda r: r["t"])
    records = [{"time": _iso(r["t"]), "text": r["text"], "source": r["source"]} for r in rows]
    return records, [{**s, "start_iso": _iso(s["start"])} for s in plan]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="stream JSONL to write")
    p.add_argument("--truth", required=True, help="JSON with the injected surges")
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rate", type=float, default=40.0, help="background texts per hour")
    a = p.parse_args()
    records, surges = build_stream(a.seed, a.days, a.rate)
    with open(a.out, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    Path(a.truth).write_text(json.dumps({"days": a.days, "seed": a.seed, "surges": surges}, indent=2))
    print(f"{len(records)} records, {len(surges)} surges → {a.out}")


if __name__ == "__main__":
    main()
