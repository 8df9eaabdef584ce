"""Stand-in classifiers for the monitor tests, importable by the subprocess the kill test starts."""

from __future__ import annotations

import time


class Words:
    """Sentiment from words: 'falls' negative, 'rises' positive, else neutral; ``delay`` slows each batch."""

    def __init__(self, delay=0.0):
        self.delay = delay

    def predict(self, texts):
        time.sleep(self.delay)
        out = []
        for t in texts:
            label = "negative" if "falls" in t else "positive" if "rises" in t else "neutral"
            scores = {k: (0.8 if k == label else 0.1) for k in ("negative", "neutral", "positive")}
            out.append({"label": label, "score": 0.8, "scores": scores})
        return out


def topics(texts):
    return ["jobs" if "staff" in t else "results" for t in texts]
