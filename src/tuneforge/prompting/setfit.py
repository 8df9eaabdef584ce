"""SetFit few-shot fine-tuning: contrastive pairs of the k labelled examples train the sentence encoder (the
``setfit`` library), then a logistic-regression head on the tuned embeddings becomes the run's linear classifier,
so the run directory serves like any other classification run."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tuneforge.tasks.base import Example, Feature, Task


@dataclass
class SetFitOptions:
    iterations: int = 20  # pairs per example and kind (SetFit's num_iterations): 2 * iterations * N pairs
    epochs: int = 1
    batch_size: int = 16
    lr: float = 2e-5
    head_c: float = 1.0  # inverse L2 strength of the logistic-regression head


def contrastive_pairs(texts: list[str], labels: list[int], iterations: int, seed: int) -> list[dict[str, Any]]:
    """The pairs SetFit trains on: ``{"sentence_1", "sentence_2", "label"}`` with label 1.0 for two texts of the
    same class and 0.0 otherwise, ``iterations * len(texts)`` of each kind (setfit's ``ContrastiveDataset``,
    seeded here because it shuffles with the global ``random``)."""
    import random

    from tuneforge.extras import require

    ContrastiveDataset = require("setfit.sampler", "fewshot.method=setfit").ContrastiveDataset

    state = random.getstate()
    random.seed(seed)
    try:
        return list(ContrastiveDataset(texts, labels, False, iterations))
    finally:
        random.setstate(state)


def _body_trainer(model_path: str, pairs_source: tuple[list[str], list[int]], opts: SetFitOptions, seed: int,
                  work: Path) -> Any:
    from tuneforge.extras import require

    require("setfit", "fewshot.method=setfit")
    from setfit import SetFitModel, Trainer, TrainingArguments

    if (Path(model_path) / "model_head.pkl").exists():  # from_pretrained would unpickle it: reading one can run code
        raise ValueError(f"{Path(model_path) / 'model_head.pkl'}: a pickle file, which is never loaded; "
                         f"fewshot.method setfit needs a model folder without one")
    st = SetFitModel.from_pretrained(model_path)
    texts, ys = pairs_source
    args = TrainingArguments(output_dir=str(work), batch_size=opts.batch_size, num_epochs=opts.epochs,
                             num_iterations=opts.iterations, body_learning_rate=opts.lr, seed=seed,
                             report_to="none", save_strategy="no", logging_strategy="no", show_progress_bar=False)
    trainer = Trainer(model=st, args=args)
    trainer.train_embeddings(texts, ys)
    return st


def copy_body(st_model: Any, backbone: nn.Module) -> None:
    """The tuned sentence-transformer body's weights into the run's backbone (same architecture, same names)."""
    body = st_model.model_body[0].auto_model
    result = backbone.load_state_dict(body.state_dict(), strict=False)
    if result.missing_keys:
        raise RuntimeError(f"the SetFit body does not match the backbone: missing {result.missing_keys[:5]}")


@torch.no_grad()
def pooled_features(model: nn.Module, task: Task, features: list[Feature], batch_size: int = 64) -> torch.Tensor:
    """(N, H) what the classifier layer sees: the model's own pooled vectors, in eval mode."""
    model.eval()
    out = []
    for s in range(0, len(features), batch_size):
        batch = task.collate(features[s:s + batch_size])
        out.append(model.features(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")))
    return torch.cat(out).float()


def fit_head(model: nn.Module, x: torch.Tensor, y: list[int], num_labels: int, c: float, seed: int) -> None:
    """Logistic regression on ``x`` (scaled to unit mean norm, as SetFit fits on unit embeddings), folded into
    ``model.classifier`` so the served model computes the same decision."""
    from sklearn.linear_model import LogisticRegression

    scale = float(x.norm(dim=-1).mean().clamp(min=1e-6))
    lr = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit((x / scale).numpy(), np.asarray(y))
    weight = np.zeros((num_labels, x.shape[1]), dtype=np.float32)
    bias = np.zeros(num_labels, dtype=np.float32)
    if len(lr.classes_) == 2 and lr.coef_.shape[0] == 1:  # binary: one row of logit(p1); split it symmetrically
        weight[lr.classes_[1]], weight[lr.classes_[0]] = lr.coef_[0] / 2, -lr.coef_[0] / 2
        bias[lr.classes_[1]], bias[lr.classes_[0]] = lr.intercept_[0] / 2, -lr.intercept_[0] / 2
    else:
        weight[lr.classes_] = lr.coef_
        bias[lr.classes_] = lr.intercept_
        missing = [i for i in range(num_labels) if i not in set(lr.classes_)]
        bias[missing] = -1e4  # a label with no training example is never predicted
    model.classifier.weight.copy_(torch.from_numpy(weight) / scale)
    model.classifier.bias.copy_(torch.from_numpy(bias))


def fit_setfit(model: nn.Module, task: Task, train_features: list[Feature], train_examples: list[Example],
               model_path: str, opts: SetFitOptions, seed: int, run_dir: Path) -> Any:
    """Contrastive body training, then the head; writes ``best/`` like ``fit`` and returns a ``FitResult``."""
    from tuneforge.training.checkpoint import save_best
    from tuneforge.training.loop import FitResult

    if getattr(model, "pooling", None) != "mean":
        raise ValueError(f"fewshot.method setfit trains mean-pooled sentence embeddings; head.pooling is "
                         f"{getattr(model, 'pooling', None)!r} (set head.pooling: mean or auto)")
    y = [task.label_index[ex["labels"][0]] for ex in train_examples]
    texts = [ex["text"] for ex in train_examples]
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=".setfit.", dir=run_dir))
    try:
        st = _body_trainer(model_path, (texts, y), opts, seed, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    copy_body(st, model.backbone)
    with torch.no_grad():
        fit_head(model, pooled_features(model, task, list(train_features)), y, len(task.labels), opts.head_c, seed)
    elapsed = time.perf_counter() - start
    steps = -(-2 * opts.iterations * len(texts) // opts.batch_size) * opts.epochs
    save_best(run_dir / "best", model, {"step": steps, "best": None, "best_step": None})  # replaced whole
    return FitResult(None, None, steps, False, [], elapsed,
                     samples_per_second=2 * opts.iterations * len(texts) * opts.epochs / max(elapsed, 1e-9))
