"""Chunked linear + cross-entropy: the same losses and gradients as projecting every token at once."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tuneforge.training.chunked_ce import chunk_tokens, linear_cross_entropy


def inputs(n=37, h=16, v=53, bias=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, requires_grad=True)
    weight = (torch.randn(v, h, generator=g) * 0.3).requires_grad_()
    b = (torch.randn(v, generator=g) * 0.1).requires_grad_() if bias else None
    targets = torch.randint(0, v, (n,), generator=g)
    targets[::5] = -100  # ignored tokens are neither counted nor given a gradient
    return hidden, weight, b, targets


def reference(hidden, weight, bias, targets, reduction="sum"):
    return F.cross_entropy(F.linear(hidden, weight, bias).float(), targets, reduction=reduction)


def grads(loss, *leaves):
    return torch.autograd.grad(loss, [t for t in leaves if t is not None])


@pytest.mark.parametrize("chunk", [1, 7, 37, 100])
@pytest.mark.parametrize("bias", [False, True])
def test_sum_loss_and_gradients_equal_unchunked(chunk, bias):
    hidden, weight, b, targets = inputs(bias=bias)
    want = reference(hidden, weight, b, targets)
    got = linear_cross_entropy(hidden, weight, targets, bias=b, chunk=chunk)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    scale = 1 / 29  # a loss divided by its token count, as the training loop does
    for g, w in zip(grads(got * scale, hidden, weight, b), grads(want * scale, hidden, weight, b)):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-5)
    again = linear_cross_entropy(hidden, weight, targets, bias=b, chunk=chunk)
    assert grads(again, hidden)[0][::5].abs().max() == 0  # ignored rows get no gradient


def test_frozen_weight_gets_no_gradient_and_hidden_still_does():
    hidden, weight, _, targets = inputs()
    weight.requires_grad_(False)
    got = linear_cross_entropy(hidden, weight, targets, chunk=8)
    (g,) = torch.autograd.grad(got, hidden)
    (w,) = torch.autograd.grad(reference(hidden, weight, None, targets), hidden)
    torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-5)


def test_per_token_losses_without_and_with_gradients():
    hidden, weight, b, targets = inputs(bias=True)
    want = reference(hidden, weight, b, targets, "none")
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(hidden, weight, targets, b, "none", chunk=6), want,
                                   atol=1e-5, rtol=1e-5)
    got = linear_cross_entropy(hidden, weight, targets, b, "none", chunk=6)  # chunks recomputed in backward
    torch.testing.assert_close(got, want.detach(), atol=1e-5, rtol=1e-5)
    upstream = torch.linspace(0.1, 1, len(targets))
    for g, w in zip(grads((got * upstream).sum(), hidden, weight, b),
                    grads((want * upstream).sum(), hidden, weight, b)):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-5)


def test_bf16_autocast_matches_the_autocast_reference():
    hidden, weight, _, targets = inputs(n=64, h=32, v=300)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = reference(hidden, weight, None, targets)
        got = linear_cross_entropy(hidden, weight, targets, chunk=16)
    assert got.dtype == want.dtype == torch.float32
    # the logits are the same bf16 products; only the order of the fp32 sum differs
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for g, w in zip(grads(got / 50, hidden, weight), grads(want / 50, hidden, weight)):
        # bf16 gradients: the 1/count scale is applied after the bf16 matmul here, before it in the reference
        torch.testing.assert_close(g, w, atol=2e-4, rtol=2e-2)


def test_bad_shapes_and_reduction_are_refused():
    hidden, weight, _, targets = inputs()
    with pytest.raises(ValueError, match="targets"):
        linear_cross_entropy(hidden, weight, targets[:-1])
    with pytest.raises(ValueError, match="unknown reduction 'mean'; known: sum, none"):
        linear_cross_entropy(hidden, weight, targets, reduction="mean")


def test_chunk_size_keeps_one_chunk_of_logits_within_the_budget():
    assert chunk_tokens(49152) * 49152 * 4 <= 64 * 2**20
    assert chunk_tokens(10**9) == 1
