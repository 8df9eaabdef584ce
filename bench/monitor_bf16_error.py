"""How far the monitor's bf16-weight classifiers move from fp32 on every Financial PhraseBank sentence: the largest
change of a sentiment logit and of a topic similarity, and how many labels or topics would flip without the fp32
recheck of near ties. These bound the near-tie margins in apps/monitor/classify.py.

    python bench/monitor_bf16_error.py        # → bench/results/monitor_bf16_error.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, set_threads, write_results  # noqa: E402
from monitor_stream import read_phrasebank  # noqa: E402


def logits(model: torch.nn.Module, predictor, texts: list[str]) -> torch.Tensor:
    """(N, C) fp32 logits of ``model`` in the order of ``texts`` (batches of 64 by token length)."""
    from tuneforge.evaluation.evaluate import model_inputs
    from tuneforge.training.batching import by_length

    task = predictor.task
    feats = [task.encode(task.parse_input(t)) for t in texts]
    out = torch.empty(len(texts), len(task.labels))
    with torch.inference_mode():
        for idx in by_length([f["length"] for f in feats], 64):
            batch = task.collate([feats[i] for i in idx])
            out[idx] = model(**model_inputs(batch, torch.device("cpu")))["logits"].float()
    return out


def gaps(x: torch.Tensor) -> torch.Tensor:
    top = x.topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/apps/monitor_fpb.yaml"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out")
    a = p.parse_args()
    set_threads(a.threads)
    from tuneforge.apps.monitor.classify import Bf16Classifier, ZeroShotTopics
    from tuneforge.apps.monitor.config import load_monitor_config
    from tuneforge.inference.predictor import Predictor

    cfg = load_monitor_config(a.config, {"sinks": []})
    texts = [t for t, _ in read_phrasebank()]
    predictor = Predictor.from_run_dir(cfg.resolve(cfg.sentiment_run), precision="fp32")
    wrapped = Bf16Classifier(predictor.model)
    exact, fast = logits(wrapped.exact, predictor, texts), logits(wrapped, predictor, texts)
    topics = ZeroShotTopics.load(cfg.topics.encoder, cfg.topics.descriptions, cfg.topics.min_similarity, "bf16")
    topics.NEAR_TIE = -1.0  # no recheck: bf16's own similarities
    sim_fast = topics.similarities(texts)
    topics.fast = None
    sim_exact = topics.similarities(texts)
    payload = {
        "command": "python bench/monitor_bf16_error.py " + " ".join(sys.argv[1:]),
        "sentences": len(texts), "threads": a.threads,
        "sentiment": {"max_logit_difference": round(float((fast - exact).abs().max()), 5),
                      "max_top2_gap_difference": round(float((gaps(fast) - gaps(exact)).abs().max()), 5),
                      "labels_flipped_without_recheck": int((fast.argmax(1) != exact.argmax(1)).sum()),
                      "near_tie_margin": Bf16Classifier.near_tie_margin,
                      "rows_within_margin": int((gaps(fast) < Bf16Classifier.near_tie_margin).sum())},
        "topics": {"max_similarity_difference": round(float((sim_fast - sim_exact).abs().max()), 5),
                   "max_top2_gap_difference": round(float((gaps(sim_fast) - gaps(sim_exact)).abs().max()), 5),
                   "topics_flipped_without_recheck": int((sim_fast.argmax(1) != sim_exact.argmax(1)).sum()),
                   "near_tie": ZeroShotTopics.NEAR_TIE,
                   "rows_within_near_tie": int((gaps(sim_fast) < ZeroShotTopics.NEAR_TIE).sum())},
    }
    path = write_results("monitor_bf16_error", payload, a.out, False)
    print(payload)
    print(f"→ {path}")


if __name__ == "__main__":
    main()
