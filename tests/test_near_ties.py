"""Reduced-precision prediction redoes near-tie rows in fp32, so its labels equal an fp32 run's."""

from __future__ import annotations

import numpy as np
import torch

from tuneforge.config import config_from_dict
from tuneforge.data.readers import BadRows
from tuneforge.evaluation.evaluate import predict_features
from tuneforge.models import load_backbone, load_tokenizer, resolve_model
from tuneforge.run import make_task

TEXTS = ["great film i love it", "bad", "the movie", "what a terrible film this was", "it is good", "love",
         "my card has not arrived yet", "where is my money", "hate it", "the film was great and the cast was good"]


def task_and_features(folder, multi_label: bool = False):
    cfg = config_from_dict({"model": str(folder), "data": {"multi_label": multi_label, "label_delimiter": "|"}})
    task = make_task(cfg, resolve_model(cfg.model))
    labels = ["a", "b", "c"]
    examples = task.parse([{"text": t, "label": labels[i % 3], "_loc": f"x:{i}"} for i, t in enumerate(TEXTS)],
                          BadRows())
    task.setup(examples, load_tokenizer(str(folder)))
    return task, [task.encode(ex) for ex in examples]


def test_near_ties_finds_small_margins():
    from tuneforge.tasks.classification.task import ClassificationTask

    single = ClassificationTask.__new__(ClassificationTask)
    single.multi_label = False
    logits = torch.tensor([[2.0, 1.95, 0.0], [3.0, 0.0, 0.0], [0.1, 0.0, 0.25]])
    assert single.near_ties({"logits": logits}) == [0, 2]
    assert single.near_ties({"logits": torch.ones(2, 1)}) == []  # one class: nothing to flip
    multi = ClassificationTask.__new__(ClassificationTask)
    multi.multi_label = True
    assert multi.near_ties({"logits": torch.tensor([[3.0, -2.0], [0.05, -4.0], [-1.0, 2.0]])}) == [1]


def test_bf16_prediction_rechecks_near_ties_in_fp32(tiny_bert_dir, monkeypatch):
    from tuneforge.tasks.classification.head import SequenceClassifier

    task, feats = task_and_features(tiny_bert_dir)
    torch.manual_seed(0)
    model = SequenceClassifier(load_backbone(str(tiny_bert_dir)), 3).eval()  # untrained: every row a near-tie
    exact = np.array(predict_features(model, task, feats, 4, None))
    top2 = np.sort(np.log(exact), axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0]).max() < 0.2
    rechecked = np.array(predict_features(model, task, feats, 4, torch.bfloat16))
    assert (rechecked.argmax(1) == exact.argmax(1)).all()
    assert np.allclose(rechecked, exact, atol=1e-6)  # every row was redone in fp32
    monkeypatch.setattr(type(task), "near_ties", lambda self, outputs: [])
    plain = np.array(predict_features(model, task, feats, 4, torch.bfloat16))
    assert not np.allclose(plain, exact, atol=1e-5)  # without the recheck bf16 shows: the test above means something


def test_recheck_is_fp32_even_inside_accelerates_bf16_forward(tiny_bert_dir):
    """After ``accelerator.prepare`` (as in fit) the model's forward enters bf16 autocast itself."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from tuneforge.tasks.classification.head import SequenceClassifier

    task, feats = task_and_features(tiny_bert_dir)
    torch.manual_seed(0)
    model = SequenceClassifier(load_backbone(str(tiny_bert_dir)), 3).eval()
    exact = np.array(predict_features(model, task, feats, 4, None))
    AcceleratorState._reset_state(reset_partial_state=True)  # a process-wide singleton: earlier tests set "no"
    try:
        prepared = Accelerator(cpu=True, mixed_precision="bf16").prepare(model)
        assert hasattr(prepared, "_original_forward")
        rechecked = np.array(predict_features(prepared, task, feats, 4, torch.bfloat16))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert np.allclose(rechecked, exact, atol=1e-6)
