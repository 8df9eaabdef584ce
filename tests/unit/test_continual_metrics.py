"""The continual-learning maths: R-matrix scores, reservoir and class-balanced buffers, EWC, LwF targets."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from scipy.stats import chisquare
from torch import nn

from tuneforge.continual.metrics import (
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    summarise,
)
from tuneforge.continual.strategies import (
    ReservoirBuffer,
    class_balanced,
    distillation_loss,
    ewc_penalty,
    fisher_diagonal,
    online_fisher,
    row_key,
    teacher_targets,
)

# after stage i (rows) on stage j's test split (columns)
R = [[0.90, 0.20, 0.10],
     [0.60, 0.80, 0.30],
     [0.50, 0.70, 0.95]]
BEFORE = [0.50, 0.25, 0.20]


def test_r_matrix_scores_by_hand():
    assert average_accuracy(R) == pytest.approx((0.50 + 0.70 + 0.95) / 3)
    assert average_accuracy(R, after=1) == pytest.approx((0.60 + 0.80) / 2)
    assert average_accuracy(R, after=0) == pytest.approx(0.90)
    assert backward_transfer(R) == pytest.approx(((0.50 - 0.90) + (0.70 - 0.80)) / 2)
    # forgetting: stage 0's best earlier accuracy is 0.90 (after stage 0), stage 1's is 0.80 (after stage 1)
    assert forgetting(R) == pytest.approx(((0.90 - 0.50) + (0.80 - 0.70)) / 2)
    assert forward_transfer(R, BEFORE) == pytest.approx(((0.20 - 0.25) + (0.30 - 0.20)) / 2)
    s = summarise(R, BEFORE)
    assert s["average_accuracy_per_stage"] == pytest.approx([0.90, 0.70, (0.50 + 0.70 + 0.95) / 3])


def test_forgetting_uses_the_best_earlier_row_not_the_diagonal():
    r = [[0.5, 0.0, 0.0], [0.9, 0.8, 0.0], [0.6, 0.8, 0.7]]
    assert forgetting(r) == pytest.approx(((0.9 - 0.6) + (0.8 - 0.8)) / 2)
    assert backward_transfer(r) == pytest.approx(((0.6 - 0.5) + 0.0) / 2)


def test_r_matrix_shape_is_checked():
    with pytest.raises(ValueError, match="square"):
        average_accuracy([[0.1, 0.2]])
    with pytest.raises(ValueError, match="before has"):
        forward_transfer(R, [0.1])
    assert forgetting([[0.7]]) == 0.0 and backward_transfer([[0.7]]) == 0.0


def test_reservoir_keeps_every_item_with_equal_probability():
    """200 streams of 50 items into 10 slots: each item is kept 200 * 10/50 = 40 times in expectation."""
    counts: Counter = Counter()
    for trial in range(200):
        buf = ReservoirBuffer(10, seed=trial)
        for item in range(50):
            buf.offer(item)
        assert len(buf.items) == 10 and len(set(buf.items)) == 10
        counts.update(buf.items)
    observed = [counts[i] for i in range(50)]
    assert chisquare(observed).pvalue > 0.01  # a fixed seed: this p-value is the same on every run


def test_reservoir_is_seeded():
    def draw(seed: int) -> list[int]:
        buf = ReservoirBuffer(5, seed)
        for i in range(100):
            buf.offer(i)
        return buf.items

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_reservoir_shrinking_keeps_a_subset():
    buf = ReservoirBuffer(10, seed=1)
    for i in range(10):
        buf.offer(i)
    buf.resize(4)
    assert len(buf.items) == 4 and set(buf.items) <= set(range(10))


def test_class_balanced_takes_equal_shares():
    items = [("a", i) for i in range(30)] + [("b", i) for i in range(5)] + [("c", i) for i in range(10)]
    kept = class_balanced(items, lambda x: x[0], 12, seed=0)
    assert Counter(x[0] for x in kept) == {"a": 4, "b": 4, "c": 4}
    kept = class_balanced(items, lambda x: x[0], 21, seed=0)  # b runs out at 5: the others share the rest
    assert Counter(x[0] for x in kept) == {"a": 8, "b": 5, "c": 8}
    assert kept == class_balanced(items, lambda x: x[0], 21, seed=0)


def test_ewc_penalty_matches_a_hand_computation():
    params = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.5])}
    anchor = {"w": torch.tensor([0.0, 1.0]), "b": torch.tensor([1.5])}
    fisher = {"w": torch.tensor([2.0, 3.0]), "b": torch.tensor([4.0])}
    # lam/2 * (2*1^2 + 3*1^2 + 4*1^2) = 0.5 * 10 * 9
    assert float(ewc_penalty(params, fisher, anchor, lam=10.0)) == pytest.approx(45.0)


def test_fisher_is_the_mean_squared_gradient_scaled_to_mean_one():
    lin = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -1.0]]))
    rows = [torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0])]

    def loss_of(x):  # d/dw (w.x)^2 / 2 = (w.x) x
        return (lin(x) ** 2).sum() / 2

    fisher = fisher_diagonal(lin, loss_of, rows, ["weight"])["weight"][0]
    # gradients: (-1)*(1,2) = (-1,-2) and 3*(3,0) = (9,0); squares summed: (82, 4); scaled to mean 1: / 43
    assert fisher.tolist() == pytest.approx([82 / 43, 4 / 43])
    assert lin.weight.grad is None  # no gradient is left behind for the optimizer


def test_online_fisher_decays_the_old_one():
    old, new = {"w": torch.tensor([2.0])}, {"w": torch.tensor([1.0])}
    assert online_fisher(None, new, 0.5)["w"].item() == 1.0
    assert online_fisher(old, new, 0.5)["w"].item() == pytest.approx(2.0)


class TinyClassifier(nn.Module):
    """The two methods LwF uses on the real head: features() and dropout."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(10, 4)
        self.dropout = nn.Dropout(0.5)

    def features(self, input_ids, attention_mask, token_type_ids=None):
        m = attention_mask.unsqueeze(-1).float()
        return (self.emb(input_ids) * m).sum(1) / m.sum(1)  # (B, H)


class TinyTask:
    def collate(self, rows):
        width = max(len(r["input_ids"]) for r in rows)
        ids = [r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in rows]
        mask = [[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}


def test_lwf_targets_are_the_old_heads_logits_per_row():
    model, task = TinyClassifier(), TinyTask()
    heads = [nn.Linear(4, 3), nn.Linear(4, 2)]
    rows = [{"input_ids": [1, 2, 3]}, {"input_ids": [4]}, {"input_ids": [5, 6]}]
    targets = teacher_targets(model, heads, task, rows, torch.device("cpu"), None, batch_size=2)
    assert set(targets) == {(1, 2, 3), (4,), (5, 6)}
    for row in rows:
        batch = task.collate([row])
        pooled = model.features(**batch)
        for h, head in enumerate(heads):
            assert torch.allclose(targets[tuple(row["input_ids"])][h], head(pooled)[0], atol=1e-6)
    # a shared head: only the columns of the classes seen before
    targets = teacher_targets(model, heads[:1], task, rows, torch.device("cpu"), [0, 2])
    assert targets[(4,)][0].shape == (2,)
    assert model.training  # the mode is given back


def test_row_key_drops_padding():
    assert row_key(torch.tensor([5, 6, 0, 0]), torch.tensor([1, 1, 0, 0])) == (5, 6)
    assert row_key([5, 6]) == (5, 6)


def test_distillation_loss_by_hand():
    teacher = torch.tensor([[2.0, 0.0]])
    assert float(distillation_loss(teacher.clone(), teacher, 2.0)) == pytest.approx(0.0, abs=1e-7)
    student = torch.tensor([[0.0, 0.0]])
    p = torch.softmax(teacher / 2, -1)[0]
    kl = float((p * (p.log() - torch.log(torch.tensor([0.5, 0.5])))).sum())
    assert float(distillation_loss(student, teacher, 2.0)) == pytest.approx(kl * 4)


def test_reservoir_offers_in_any_order_keep_capacity():
    buf = ReservoirBuffer(3, seed=0)
    items = list(range(20))
    random.Random(0).shuffle(items)
    for i in items:
        buf.offer(i)
    assert buf.seen == 20 and len(buf.items) == 3
