"""FastDropout: nn.Dropout's distribution (drop rate, unbiased scaling) from cheaper random numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tuneforge.training.fast_dropout import (
    ATTENTION,
    LANES,
    FastDropout,
    attention_probs_dropout,
    keep_mask,
    use_fast_dropout,
)


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


def test_use_fast_dropout_keeps_each_module_in_its_mode(tiny_bert_dir):
    from tuneforge.models import load_backbone

    body = load_backbone(str(tiny_bert_dir)).eval()
    use_fast_dropout(body)
    assert not any(m.training for m in body.modules())  # a swapped-in module must not start in training mode


@pytest.mark.parametrize("boolean_mask", [True, False])
def test_attention_probs_dropout_is_masked_softmax_then_fast_dropout(boolean_mask):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    attend = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    attend[1, :, :, 3:] = False  # the second sequence has two padding keys
    mask = attend if boolean_mask else torch.zeros(attend.shape).masked_fill(~attend, torch.finfo(torch.float32).min)
    torch.manual_seed(7)
    out = attention_probs_dropout(q, k, v, mask, 0.25, 0.5)
    torch.manual_seed(7)
    probs = torch.softmax((q @ k.transpose(-1, -2) * 0.5).masked_fill(~attend, float("-inf")), dim=-1)
    expected = (probs * keep_mask(probs.shape, 0.25, probs.dtype)) @ v
    torch.testing.assert_close(out, expected.transpose(1, 2))
    v2 = v.clone()
    v2[1, :, 3:] = 1e6  # values behind padding keys never leak into the output
    torch.manual_seed(7)
    torch.testing.assert_close(attention_probs_dropout(q, k, v2, mask, 0.25, 0.5), out)


def test_bert_attention_dropout_goes_through_fast_masks(tmp_path):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.3, attn_implementation="sdpa")
    torch.manual_seed(0)
    body = BertModel(cfg)
    reference = BertModel(cfg)
    reference.load_state_dict(body.state_dict())
    ids = torch.randint(0, 50, (3, 6))
    padding = torch.ones(3, 6, dtype=torch.long)
    padding[2, 4:] = 0
    use_fast_dropout(body)
    assert body.config._attn_implementation == ATTENTION
    body.eval(), reference.eval()
    torch.testing.assert_close(body(input_ids=ids, attention_mask=padding).last_hidden_state,
                               reference(input_ids=ids, attention_mask=padding).last_hidden_state)  # eval: plain sdpa
    body.train()
    calls = []
    original = torch.Tensor.random_

    def counting_random_(self, *args, **kwargs):  # keep_mask draws its words with random_
        calls.append(self.numel())
        return original(self, *args, **kwargs)

    torch.manual_seed(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.Tensor, "random_", counting_random_)
        out = body(input_ids=ids, attention_mask=padding).last_hidden_state
    assert len(calls) == cfg.num_hidden_layers  # one mask per layer's attention probabilities, no Bernoulli
    torch.manual_seed(1)
    torch.testing.assert_close(body(input_ids=ids, attention_mask=padding).last_hidden_state, out)  # seeded
    out.sum().backward()
    assert body.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    body.save_pretrained(tmp_path)
    assert ATTENTION not in (tmp_path / "config.json").read_text()  # the switch is not saved with the model


@pytest.mark.parametrize("padded", [False, True])
def test_causal_and_grouped_query_attention_stay_with_sdpa(tiny_llama_dir, padded):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(tiny_llama_dir, attention_dropout=0.2, attn_implementation="sdpa")
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, config=cfg)
    use_fast_dropout(model)
    model.train()
    ids = torch.randint(3, 20, (2, 5))
    mask = torch.ones(2, 5, dtype=torch.long)
    if padded:
        mask[1, :2] = 0
    loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
    assert torch.isfinite(loss)
    loss.backward()
