"""The loop's maths: gradient accumulation equals one big batch; schedules; no decay on bias/LayerNorm."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tuneforge.training.batching import BatchSampler, num_batches, token_budget_sizes
from tuneforge.training.optim import lr_lambda, param_groups
from tuneforge.training.steps import accumulation_windows, scaled_loss, total_steps


def test_accumulated_gradient_equals_full_batch_gradient_with_uneven_micro_batches():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    y[2] = -100  # an ignored target must not count as an item
    full = nn.functional.cross_entropy(model(x), y, ignore_index=-100)
    g_full = torch.autograd.grad(full, model.weight)[0]
    micro = [(x[:7], y[:7]), (x[7:], y[7:])]  # 7 + 3 rows: uneven
    window = sum(float((yy != -100).sum()) for _, yy in micro)
    model.zero_grad()
    for xx, yy in micro:
        loss_sum = nn.functional.cross_entropy(model(xx), yy, ignore_index=-100, reduction="sum")
        scaled_loss(loss_sum, window).backward()
    assert torch.allclose(model.weight.grad, g_full, atol=1e-7)
    # the common shortcut (mean per micro-batch / number of micro-batches) is measurably wrong here
    model.zero_grad()
    for xx, yy in micro:
        (nn.functional.cross_entropy(model(xx), yy, ignore_index=-100) / len(micro)).backward()
    assert not torch.allclose(model.weight.grad, g_full, atol=1e-4)


def test_accumulation_windows_and_total_steps():
    assert accumulation_windows(10, 4) == [4, 4, 2]
    assert accumulation_windows(8, 4) == [4, 4]
    assert total_steps(10, 4, epochs=2, max_steps=None) == 6
    assert total_steps(10, 4, epochs=2, max_steps=5) == 5
    assert total_steps(10, 1, epochs=0.5, max_steps=None) == 5


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_schedules_warm_up_then_decay(kind):
    f = lr_lambda(kind, warmup=10, total=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    if kind == "constant":
        assert f(100) == 1.0
    else:
        assert f(10) == pytest.approx(1.0)
        assert f(60) == pytest.approx(0.5)  # halfway through decay: linear 0.5, cosine 0.5 too
        assert f(110) == pytest.approx(0.0, abs=1e-9)
    if kind == "cosine":
        assert f(35) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))


def test_no_weight_decay_on_bias_and_layernorm():
    model = nn.Sequential()
    model.add_module("dense", nn.Linear(4, 4))
    model.add_module("LayerNorm", nn.LayerNorm(4))
    groups = param_groups(model, weight_decay=0.1, lr=1e-3, head_lr=None)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model.dense.weight)}


def test_batch_sampler_is_deterministic_per_epoch_and_groups_lengths():
    lengths = [i % 37 for i in range(1000)]
    s = BatchSampler(lengths, 10, seed=3)
    s.set_epoch(0)
    a = s.batches()
    assert a == BatchSampler(lengths, 10, seed=3).batches()
    s.set_epoch(1)
    assert s.batches() != a
    assert sorted(i for b in a for i in b) == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in a) / len(a)
    assert spread < 3  # length-grouped: little padding inside a batch


def test_layer_lr_decay_scales_each_block_and_keeps_the_head_at_lr():
    from transformers import BertConfig, BertModel

    from tuneforge.tasks.classification.head import SequenceClassifier

    cfg = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=3, num_attention_heads=2, intermediate_size=16)
    model = SequenceClassifier(BertModel(cfg), num_labels=2)
    groups = param_groups(model, weight_decay=0.1, lr=1e-3, head_lr=None, layer_decay=0.5)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["classifier.weight"])] == pytest.approx(1e-3)
    for i, scale in ((2, 1.0), (1, 0.5), (0, 0.25)):  # top block at lr, each one below halved
        assert lr_of[id(named[f"backbone.encoder.layer.{i}.attention.self.query.weight"])] == pytest.approx(1e-3 * scale)
    assert lr_of[id(named["backbone.embeddings.word_embeddings.weight"])] == pytest.approx(1e-3 * 0.125)
    assert sum(len(g["params"]) for g in groups) == len(named)
    # without decay: one lr for every group
    assert {g["lr"] for g in param_groups(model, 0.1, 1e-3, None)} == {1e-3}


@pytest.mark.parametrize("max_norm", [0.5, 100.0])  # clipping due / not due
def test_clip_in_fused_step_matches_clip_grad_norm(max_norm):
    from tuneforge.training.steps import clip_in_fused_step, fused_adamw

    torch.manual_seed(0)
    start = [torch.randn(7, 5), torch.randn(5)]
    grads = [[torch.randn(7, 5) * 3, torch.randn(5)] for _ in range(3)]
    ref = [torch.nn.Parameter(t.clone()) for t in start]
    new = [torch.nn.Parameter(t.clone()) for t in start]
    opt_ref = torch.optim.AdamW(ref, lr=1e-2, weight_decay=0.1, fused=True)
    opt_new = torch.optim.AdamW(new, lr=1e-2, weight_decay=0.1, fused=True)
    assert fused_adamw(opt_new) is opt_new and fused_adamw(torch.optim.AdamW(ref, lr=1e-2)) is None
    for step_grads in grads:
        for p, q, g in zip(ref, new, step_grads):
            p.grad, q.grad = g.clone(), g.clone()
        norm_ref = float(torch.nn.utils.clip_grad_norm_(ref, max_norm))
        opt_ref.step()
        norm_new = clip_in_fused_step(opt_new, [q.grad for q in new], max_norm)
        assert (opt_new.grad_scale is None) == (norm_new <= max_norm)
        opt_new.step()
        opt_new.grad_scale = None
        assert norm_new == pytest.approx(norm_ref)
    for p, q in zip(ref, new):
        torch.testing.assert_close(p, q, atol=1e-7, rtol=1e-6)


def test_token_budget_sizes_fill_batches_up_to_both_caps():
    # ascending lengths: 3 ones hit the item cap; then 1+5 fit 2 x 5 = 10; a third 5 would pad to 15; 10 alone
    assert token_budget_sizes([1, 1, 1, 1, 5, 5, 10], batch_size=3, max_tokens=10) == [3, 2, 1, 1]
    assert token_budget_sizes([30, 40], batch_size=8, max_tokens=16) == [1, 1]  # too long for the budget: alone
    assert token_budget_sizes([], batch_size=8, max_tokens=16) == []


def test_token_budget_sampler_keeps_shapes_deals_items_anew_and_respects_the_budget():
    import random

    rng = random.Random(0)
    lengths = [rng.choice([3, 4, 5, 8, 12, 20, 40, 90]) for _ in range(2000)]
    budget = 256
    s = BatchSampler(lengths, 64, seed=7, max_tokens=budget)
    seen = []
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = s.batches()
        assert len(batches) == len(s) == num_batches(lengths, 64, budget)
        assert sorted(i for b in batches for i in b) == list(range(2000))  # every item once an epoch
        for b in batches:
            assert len(b) <= 64
            assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= budget
        seen.append(batches)
    assert sorted(map(len, seen[0])) == sorted(map(len, seen[1]))  # the same shapes every epoch
    assert {frozenset(b) for b in seen[0]} != {frozenset(b) for b in seen[1]}  # dealt anew
    s.set_epoch(1)
    assert s.batches() == seen[1]  # deterministic per (seed, epoch): resume can skip batches exactly
    sizes = {len(b) for b in seen[0]}
    assert max(sizes) == 64 and min(sizes) <= 3  # short items share big batches, long ones get small ones
    plain = BatchSampler(lengths, 32, seed=7)
    assert len(s) != len(plain)


def test_token_budget_needs_length_grouping():
    with pytest.raises(ValueError, match="length-grouped"):
        BatchSampler([3, 4], 2, seed=0, length_grouped=False, max_tokens=8)
