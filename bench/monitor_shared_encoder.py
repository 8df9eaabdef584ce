"""Could the topic pass reuse the sentiment model's body? Zero-shot topics from the packaged MiniLM against the
same topic descriptions embedded by the fine-tuned sentiment run's body (mean-pooled, as the run's own head pools
it), scored against the stream's keyword topics on every Financial PhraseBank sentence that has one. One shared
pass would halve the monitor's model compute; it is only worth it at equal topic accuracy.

    python bench/monitor_shared_encoder.py        # → bench/results/monitor_shared_encoder.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, set_threads, write_results  # noqa: E402
from monitor_stream import read_phrasebank, topic_of  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/apps/monitor_fpb.yaml"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out")
    a = p.parse_args()
    set_threads(a.threads)
    from tuneforge.apps.monitor.classify import ZeroShotTopics
    from tuneforge.apps.monitor.config import load_monitor_config
    from tuneforge.inference.predictor import Predictor

    cfg = load_monitor_config(a.config, {"sinks": [], "precision": "fp32"})
    rows = [(t, topic_of(t)) for t, _ in read_phrasebank()]
    rows = [(t, ref) for t, ref in rows if ref]
    texts = [t for t, _ in rows]
    base = ZeroShotTopics.load(cfg.topics.encoder, cfg.topics.descriptions, cfg.topics.min_similarity)
    run = Predictor.from_run_dir(cfg.resolve(cfg.sentiment_run), precision="fp32")
    shared = ZeroShotTopics(run.model.backbone, base.tokenizer, cfg.topics.descriptions, cfg.topics.min_similarity)
    got_base, got_shared = base(texts), shared(texts)

    def accuracy(got: list[str]) -> float:
        return round(sum(g == ref for g, (_, ref) in zip(got, rows)) / len(rows), 4)

    payload = {"command": "python bench/monitor_shared_encoder.py " + " ".join(sys.argv[1:]),
               "sentences": len(rows), "reference": "keyword topics (bench/monitor_stream.py topic_of)",
               "packaged_minilm_accuracy": accuracy(got_base),
               "sentiment_run_body_accuracy": accuracy(got_shared),
               "agreement": round(sum(x == y for x, y in zip(got_base, got_shared)) / len(rows), 4)}
    path = write_results("monitor_shared_encoder", payload, a.out, False)
    print(payload)
    print(f"→ {path}")


if __name__ == "__main__":
    main()
