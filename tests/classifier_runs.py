"""Small trained classification runs (single-label, pairs, LoRA) on the tiny BERT, for the inference backends'
tests (ONNX Runtime, int8)."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

from tests.test_smoke_pipeline import write_toy_csv
from tuneforge.config import config_from_dict
from tuneforge.runner import train

TEXTS = ["great love film", "terrible bad movie", "the film it", "love", "bad the movie it great hate", "film"]


def write_pairs_csv(path: Path, n: int = 120) -> None:
    rng = random.Random(1)
    words = ["good", "bad", "film", "movie", "love", "hate"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["premise", "hypothesis", "label"])
        for i in range(n):
            a = rng.sample(words, 2)
            b = a if i % 2 else rng.sample(words, 2)
            w.writerow([" ".join(a), " ".join(b), "same" if a == b else "other"])


def train_run(tiny_bert_dir: Path, tmp_path: Path, kind: str) -> Path:
    data = tmp_path / f"{kind}.csv"
    extra: dict = {}
    if kind == "pairs":
        write_pairs_csv(data)
        extra = {"text_column": "premise", "text_pair_column": "hypothesis"}
    else:
        write_toy_csv(data)
    cfg = config_from_dict({
        "model": str(tiny_bert_dir), "output_dir": str(tmp_path / kind), "seed": 3,
        "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.2}, **extra},
        "train": {"epochs": 2, "batch_size": 8, "lr": 3e-3, "progress": False, "precision": "fp32"},
        "eval": {"baselines": []},
        **({"peft": {"method": "lora", "r": 4}} if kind == "lora" else {}),
    })
    return train(cfg).run_dir


def pair_items() -> list[dict[str, str]]:
    """``TEXTS`` as premise/hypothesis pairs for a ``pairs`` run."""
    return [{"premise": t, "hypothesis": TEXTS[-1 - i]} for i, t in enumerate(TEXTS)]


def cli_predict_labels(run: Path, texts: list[str], folder: Path, *flags: str) -> tuple[list[str], list[str]]:
    """``tuneforge predict RUN --input ... FLAGS`` in a subprocess: its labels, and the fp32 Predictor's."""
    from tuneforge.inference.predictor import Predictor

    inputs, out = folder / "in.txt", folder / "out.jsonl"
    inputs.write_text("\n".join(texts) + "\n")
    proc = subprocess.run([sys.executable, "-m", "tuneforge", "predict", str(run), "--input", str(inputs),
                           "--output", str(out), *flags], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = [json.loads(line)["label"] for line in out.read_text().splitlines()]
    return got, [e["label"] for e in Predictor.from_run_dir(run, precision="fp32").predict(texts)]
