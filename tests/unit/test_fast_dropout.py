"""FastDropout: nn.Dropout's distribution (drop rate, unbiased scaling) from cheaper random numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tuneforge.training.fast_dropout import LANES, FastDropout, keep_mask, use_fast_dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drop_rate_and_scaling(p):
    torch.manual_seed(0)
    n = 1 << 20
    mask = keep_mask(torch.Size([n]), p, torch.float32)
    dropped = round(p * LANES)
    keep_rate = 1 - dropped / LANES
    kept = mask != 0
    sigma = (keep_rate * (1 - keep_rate) / n) ** 0.5
    assert abs(kept.float().mean().item() - keep_rate) < 5 * sigma
    assert abs(keep_rate - (1 - p)) < 1 / LANES  # p to within one lane step
    assert torch.all(mask[kept] == 1 / keep_rate)  # survivors scaled by the exact inverse: unbiased
    # each of the four 16-bit lanes of a 64-bit word is fair (a signed-only draw would bias the top lane)
    for lane_rate in kept.view(-1, 4).float().mean(0).tolist():
        assert abs(lane_rate - keep_rate) < 5 * (keep_rate * (1 - keep_rate) / (n / 4)) ** 0.5


def test_masks_are_independent_of_position():
    torch.manual_seed(1)
    kept = keep_mask(torch.Size([1 << 18]), 0.5, torch.float32) != 0
    # neighbouring elements (same 64-bit word or not) agree about half the time, as independent draws do
    agree = (kept[1:] == kept[:-1]).float().mean().item()
    assert abs(agree - 0.5) < 0.01


def test_forward_backward_eval_and_determinism():
    layer = FastDropout(0.3)
    assert isinstance(layer, nn.Dropout)
    x = torch.randn(64, 48, dtype=torch.bfloat16, requires_grad=True)
    torch.manual_seed(3)
    y = layer(x)
    y.float().sum().backward()
    kept = y != 0
    assert torch.equal(x.grad != 0, kept)  # the gradient flows through exactly the kept elements
    torch.testing.assert_close(y[kept].float(), (x[kept] * x.grad[kept]).float())  # y = x * mask, grad = mask
    torch.manual_seed(3)
    assert torch.equal(layer(x), y)  # the default generator drives it: seeds (and checkpointed RNG) reproduce
    assert not torch.equal(layer(x), y)
    layer.eval()
    assert layer(x) is x
    assert FastDropout(0.0)(x) is x


def test_use_fast_dropout_swaps_modules_and_keeps_state(tiny_bert_dir):
    from tuneforge.models import load_backbone

    body = load_backbone(str(tiny_bert_dir))
    keys = set(body.state_dict())
    plain = sum(type(m) is nn.Dropout for m in body.modules())
    assert plain > 0
    assert use_fast_dropout(body) == plain
    assert not any(type(m) is nn.Dropout for m in body.modules())
    assert set(body.state_dict()) == keys
    assert use_fast_dropout(body) == 0  # idempotent
    body.eval()
    ids = torch.tensor([[2, 5, 6, 3]])
    reference = load_backbone(str(tiny_bert_dir)).eval()
    torch.testing.assert_close(body(input_ids=ids).last_hidden_state, reference(input_ids=ids).last_hidden_state)
