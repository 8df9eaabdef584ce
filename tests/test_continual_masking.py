"""continual.loss_mask: the masks, the masked cross-entropy against a hand computation, and masked runs end to end."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from tuneforge.config_typing import ConfigError
from tuneforge.continual.masking import MaskedLoss, class_masks, mask_logits, row_masks
from tuneforge.continual.runner import run_continual

from .test_continual import continual_cfg

LABELS = ["a", "b", "c", "d"]


def test_class_masks_follow_the_label_order():
    cur, seen = class_masks(LABELS, current={"c"}, earlier={"a", "b"})
    assert cur.tolist() == [False, False, True, False]
    assert seen.tolist() == [True, True, True, False]


def test_row_masks_current_keeps_replayed_rows_on_the_seen_classes():
    cur, seen = class_masks(LABELS, current={"c", "d"}, earlier={"a", "b"})
    targets = torch.tensor([2, 0, 3, -100])  # a new row, a replayed row, a new row, an ignored row
    allowed = row_masks(targets, "current", cur, seen)
    assert allowed.tolist() == [[False, False, True, True], [True, True, True, True],
                                [False, False, True, True], [True, True, True, True]]
    assert row_masks(targets, "seen", cur, seen).tolist() == [[True] * 4] * 4
    with pytest.raises(ValueError, match="known: seen, current"):
        row_masks(targets, "newest", cur, seen)


def test_masked_cross_entropy_matches_a_softmax_over_the_allowed_classes():
    logits = torch.tensor([[1.0, 2.0, 0.5, -1.0]], requires_grad=True)
    allowed = torch.tensor([[False, False, True, True]])
    loss = torch.nn.functional.cross_entropy(mask_logits(logits, allowed), torch.tensor([2]))
    by_hand = -(0.5 - math.log(math.exp(0.5) + math.exp(-1.0)))  # softmax over c and d only
    assert float(loss.detach()) == pytest.approx(by_hand, rel=1e-6)
    loss.backward()
    assert logits.grad[0, :2].tolist() == [0.0, 0.0]  # the masked (earlier) classes are not pushed down
    assert float(logits.grad[0, 2]) == pytest.approx(math.exp(0.5) / (math.exp(0.5) + math.exp(-1.0)) - 1)


def test_masked_loss_wraps_the_task_loss_and_nothing_else():
    calls = []

    def loss(outputs, batch):
        calls.append(outputs["logits"])
        return outputs["logits"].sum(), torch.tensor(1.0)

    task = SimpleNamespace(loss=loss, labels=LABELS, multi_label=False, predict="the task's own")
    cur, seen = class_masks(LABELS, current={"d"}, earlier={"a"})
    wrapped = MaskedLoss(task, "current", cur, seen)
    assert wrapped.predict == "the task's own" and wrapped.labels == LABELS
    wrapped.loss({"logits": torch.zeros(2, 4)}, {"labels": torch.tensor([3, 0])})
    assert torch.isinf(calls[0]).tolist() == [[True, True, True, False], [False, True, True, False]]
    with pytest.raises(ValueError, match="single-label"):
        MaskedLoss(SimpleNamespace(multi_label=True), "seen", cur, seen)


@pytest.mark.parametrize("strategy,mask", [("naive", "current"), ("replay", "current"), ("ewc", "seen"),
                                           ("lwf", "current")])
def test_masked_strategies_run_class_incremental(tiny_bert_dir, tmp_path, strategy, mask):
    cfg = continual_cfg(tiny_bert_dir, tmp_path, "class_incremental", strategy, loss_mask=mask,
                        replay_sampling="class_balanced")
    report = run_continual(cfg)
    assert len(report["R"]) == 2 and all(0.0 <= v <= 1.0 for row in report["R"] for v in row)
    assert all(math.isfinite(c["seconds"]) for c in report["cost"])


def test_loss_mask_is_refused_where_it_cannot_apply(tiny_bert_dir, tmp_path):
    cfg = continual_cfg(tiny_bert_dir, tmp_path, "task_incremental", "naive", loss_mask="current")
    with pytest.raises(ConfigError, match="class_incremental or domain_incremental"):
        run_continual(cfg)
    cfg = continual_cfg(tiny_bert_dir, tmp_path, "class_incremental", "naive", loss_mask="newest")
    with pytest.raises(ConfigError, match="known: none, seen, current"):
        run_continual(cfg)
    cfg = continual_cfg(tiny_bert_dir, tmp_path, "class_incremental", "naive", loss_mask="seen")
    cfg.loss.label_smoothing = 0.1
    with pytest.raises(ConfigError, match="label_smoothing"):
        run_continual(cfg)


def test_fisher_of_the_masked_loss_leaves_later_classes_free():
    """EWC's Fisher from the masked loss: rows of the head for classes not yet seen get no weight, so a later
    stage's classes are not held at their untrained values."""
    from tuneforge.continual.strategies import fisher_diagonal

    torch.manual_seed(0)
    head = torch.nn.Linear(3, 4)
    cur, seen = class_masks(LABELS, current={"a", "b"}, earlier=set())
    rows = [(torch.randn(1, 3), torch.tensor([i % 2])) for i in range(6)]

    def loss_of(row):
        x, y = row
        allowed = row_masks(y, "current", cur, seen)
        return torch.nn.functional.cross_entropy(mask_logits(head(x), allowed), y)

    fisher = fisher_diagonal(head, loss_of, rows, ["weight", "bias"])
    assert fisher["weight"][2:].abs().sum() == 0 and fisher["bias"][2:].abs().sum() == 0
    assert fisher["weight"][:2].abs().sum() > 0
    total = sum(float(f.sum()) for f in fisher.values())
    assert total / sum(f.numel() for f in fisher.values()) == pytest.approx(1.0)  # scaled to mean 1


def test_joint_scores_every_row_over_the_seen_classes(tiny_bert_dir, tmp_path, monkeypatch):
    import tuneforge.continual.runner as runner

    masks = []
    real = runner.Context.loss_task

    def spy(self, s):
        masks.append(self.loss_mask)
        return real(self, s)

    monkeypatch.setattr(runner.Context, "loss_task", spy)
    run_continual(continual_cfg(tiny_bert_dir, tmp_path, "class_incremental", "joint", loss_mask="current"))
    assert masks and set(masks) == {"seen"}
