"""precision=int8: per-token int8 body for sequence classifiers, labels kept equal to fp32's by near-tie rechecks.
Both kernels (torch._int_mm; oneDNN u8 x 7-bit weights on x86) are exercised wherever this torch build has them."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from tests.classifier_runs import TEXTS, cli_predict_labels, pair_items, train_run
from tuneforge.inference import int8
from tuneforge.inference.int8 import Int8Classifier, Int8Error, Int8Linear, _FusedPart, int8_classifier
from tuneforge.inference.predictor import Predictor

KERNELS = int8.available_kernels()
MORE = TEXTS + [f"{a} {b} {c}" for a in ("good", "bad", "the") for b in ("film", "movie", "love")
                for c in ("hate", "it", "great")]


@pytest.fixture(autouse=True)
def force_int8(monkeypatch):
    """Exercise the int8 path on every CPU, also where int8 matmuls are slower than fp32 and Predictor would
    predict in fp32 (test_int8_falls_back_to_fp32_where_it_is_slower covers that)."""
    monkeypatch.setenv(int8.FORCE_ENV, "1")


def test_int8_falls_back_to_fp32_where_it_is_slower(tiny_bert_dir, tmp_path, monkeypatch):
    run = train_run(tiny_bert_dir, tmp_path, "single")
    exact = [p["label"] for p in Predictor.from_run_dir(run, precision="fp32").predict(MORE)]
    monkeypatch.delenv(int8.FORCE_ENV)
    monkeypatch.setattr(int8, "cpu_int8_speedup", lambda: 0.05)  # an AVX2-only EPYC measured 0.03-0.05
    with pytest.warns(UserWarning, match=r"0\.05x fp32's speed.*predicting in fp32 instead"):
        slow = Predictor.from_run_dir(run, precision="int8")
    assert slow.precision == "fp32" and not isinstance(slow.model, Int8Classifier)
    assert [p["label"] for p in slow.predict(MORE)] == exact
    monkeypatch.setattr(int8, "cpu_int8_speedup", lambda: 3.0)
    fast = Predictor.from_run_dir(run, precision="int8")
    assert fast.precision == "int8" and [p["label"] for p in fast.predict(MORE)] == exact
    monkeypatch.setattr(int8, "cpu_int8_speedup", lambda: 0.05)
    monkeypatch.setenv(int8.FORCE_ENV, "1")  # forced: int8 whatever the speed
    assert Predictor.from_run_dir(run, precision="int8").precision == "int8"


def test_the_int8_speed_probe_times_real_products(monkeypatch):
    monkeypatch.delenv(int8.KERNEL_ENV, raising=False)
    speedups = int8.kernel_speedups()
    assert set(speedups) == set(KERNELS) and all(0 < v < 100 for v in speedups.values())
    assert speedups is int8.kernel_speedups()  # measured once per process
    if len(KERNELS) > 1 and not torch.cuda.is_available():
        assert int8.int8_kernel() == max(speedups, key=speedups.get)  # the faster one
    assert int8.cpu_int8_speedup() == speedups[int8.int8_kernel()]


def test_the_kernel_can_be_chosen_and_an_unknown_one_is_refused(monkeypatch):
    for kernel in KERNELS:
        monkeypatch.setenv(int8.KERNEL_ENV, kernel)
        assert int8.int8_kernel() == kernel and Int8Linear([nn.Linear(8, 4)]).kernel == kernel
    monkeypatch.setenv(int8.KERNEL_ENV, "int4_mm")
    with pytest.raises(Int8Error, match="TUNEFORGE_INT8_KERNEL='int4_mm': this torch build offers"):
        int8.int8_kernel()
    monkeypatch.delenv(int8.KERNEL_ENV)
    monkeypatch.setattr(int8, "available_kernels", lambda: ())
    with pytest.raises(Int8Error, match="needs torch._int_mm or oneDNN"):
        int8.int8_kernel()


@pytest.mark.parametrize("kernel", KERNELS)
def test_int8_linear_is_close_to_fp32(kernel):
    torch.manual_seed(0)
    lin = nn.Linear(64, 96)
    x = torch.randn(5, 7, 64) * torch.linspace(0.1, 10, 64)  # uneven channels, as in transformer activations
    exact = lin(x)
    q = Int8Linear([lin], kernel)
    got = q(x)
    assert got.shape == exact.shape and got.dtype == torch.float32
    rel = (got - exact).abs().max() / exact.abs().max()
    assert 0 < rel < 0.02  # quantised (not a copy of fp32), and within 7/8-bit precision
    q.gelu = True
    assert torch.allclose(q(x), nn.functional.gelu(got), atol=1e-5)
    no_bias = nn.Linear(64, 8, bias=False)
    assert (Int8Linear([no_bias], kernel)(x) - no_bias(x)).abs().max() / no_bias(x).abs().max() < 0.02
    assert copy.deepcopy(q)(x).equal(q(x))


@pytest.mark.skipif("onednn" not in KERNELS, reason="oneDNN's quantised linear is x86-only")
def test_the_onednn_kernel_is_exact_integer_maths():
    """u8 codes x 7-bit weights, zero points out by column sums: equal to the same integers multiplied in float64,
    also for rows whose products would saturate int16 with 8-bit weights (x86 without VNNI)."""
    torch.manual_seed(0)
    lin = nn.Linear(256, 48)
    with torch.no_grad():
        lin.weight.copy_(lin.weight.sign() * 0.1)  # every weight at +-63 after quantising: the largest products
    x = torch.rand(9, 256) * 4 + torch.linspace(-3, 3, 9)[:, None]  # rows off-centre: zero points 0..255
    q = Int8Linear([lin], "onednn")
    codes, scale, zero = int8._quantize_rows_u8(x)
    assert codes.dtype == torch.uint8 and int(codes.max()) == 255 and int(codes.min()) == 0
    weights = torch.round(lin.weight.detach() / q.weight_scale[:, None]).double()
    assert weights.abs().max() == int8.ONEDNN_WEIGHT_MAX
    expected = ((codes.double() - zero.double()) @ weights.t()) * q.weight_scale.double() * scale.double() \
        + lin.bias.double()
    assert torch.allclose(q(x).double(), expected, rtol=1e-5, atol=1e-4)


def test_eager_kernels_match_the_compiled_ones_and_a_failed_compile_falls_back(monkeypatch):
    torch.manual_seed(0)
    args = (torch.randn(33, 64), torch.randint(-127, 128, (64, 48), dtype=torch.int8), torch.rand(48) / 100,
            torch.randn(48), True)
    monkeypatch.setenv("TUNEFORGE_INT8_COMPILE", "0")
    eager = int8._Compiled(int8._int8_linear)
    assert eager.compiled is None
    assert torch.allclose(eager(*args), int8.INT8_LINEAR(*args), atol=1e-4)

    def broken(*_):
        raise RuntimeError("no compiler here")

    eager.compiled = broken
    with pytest.warns(UserWarning, match="eager kernels"):
        assert torch.allclose(eager(*args), int8._int8_linear(*args))
    assert eager.compiled is None
    # the onednn kernel's quantise / dequantise steps (plain torch ops, so checked on every platform)
    x = torch.randn(33, 64) + 1
    assert all(torch.equal(a, b) for a, b in zip(int8._Compiled(int8._quantize_rows_u8)(x), int8.QUANTIZE_ROWS_U8(x)))
    post = (torch.randn(33, 48), torch.rand(33, 1), torch.rand(33, 1) * 255, torch.randn(48), torch.randn(48), True)
    assert torch.allclose(int8._Compiled(int8._dequantize_rows)(*post), int8.DEQUANTIZE_ROWS(*post), atol=1e-4)


def test_the_body_is_quantised_qkv_fused_and_the_original_left_alone(tiny_bert_dir, tmp_path):
    run = train_run(tiny_bert_dir, tmp_path, "single")
    fp32 = Predictor.from_run_dir(run, precision="fp32").model
    model = int8_classifier(fp32, Predictor.from_run_dir(run, precision="fp32").task)
    body = model.quantized.backbone
    layers = body.encoder.layer
    assert model.n_quantized == 6 * len(layers)  # q, k, v, attention output, intermediate, output
    for layer in layers:
        att = layer.attention.self
        parts = [att.query, att.key, att.value]
        assert all(isinstance(p, _FusedPart) for p in parts)
        assert len({id(p._fused[0]) for p in parts}) == 1  # one product for the three
        assert [(p.start, p.end) for p in parts] == [(0, 32), (32, 64), (64, 96)]
        assert layer.intermediate.dense.gelu and isinstance(layer.intermediate.intermediate_act_fn, nn.Identity)
        assert isinstance(layer.output.dense, Int8Linear)
    assert type(body.pooler.dense) is nn.Linear  # the pooler and the head stay fp32
    assert type(model.quantized.classifier) is nn.Linear
    assert all(type(m) is not Int8Linear for m in fp32.modules())  # the fp32 original is untouched
    assert model.exact is fp32
    shared = {id(p) for p in fp32.parameters()}
    assert id(model.quantized.backbone.embeddings.word_embeddings.weight) in shared  # shared, not copied


@pytest.mark.parametrize("kind,kernel", [("single", k) for k in KERNELS] + [("pairs", None), ("lora", None)])
def test_int8_labels_equal_fp32(tiny_bert_dir, tmp_path, kind, kernel, monkeypatch):
    if kernel:
        monkeypatch.setenv(int8.KERNEL_ENV, kernel)
    run = train_run(tiny_bert_dir, tmp_path, kind)
    items = pair_items() if kind == "pairs" else MORE
    exact = Predictor.from_run_dir(run, precision="fp32").predict(items)
    pred = Predictor.from_run_dir(run, precision="int8")
    assert isinstance(pred.model, Int8Classifier) and pred.precision == "int8"
    assert {m.kernel for m in pred.model.modules() if isinstance(m, Int8Linear)} == {kernel or int8.int8_kernel()}
    got = pred.predict(items)
    assert [g["label"] for g in got] == [e["label"] for e in exact]
    # every near tie was redone in fp32: with a bound that covers all rows the probabilities are fp32's own
    probs = np.array(Predictor.from_run_dir(run, precision="fp32").predict_raw(items)[0])
    pred.model.near_tie_margin = 1e9
    assert np.allclose(np.array(pred.predict_raw(items)[0]), probs, atol=1e-6)
    # and without any recheck int8 shows: the checks above test something (a calibrated run's temperature
    # flattens near-even probabilities, so the int8 difference can be small, but it is never zero)
    pred.model.near_tie_margin = 0.0
    assert np.abs(np.array(pred.predict_raw(items)[0]) - probs).max() > 1e-8


def test_int8_is_refused_where_it_cannot_keep_labels(tiny_bert_dir, tmp_path):
    run = train_run(tiny_bert_dir, tmp_path, "lora")
    pred = Predictor.from_run_dir(run, precision="fp32")
    with pytest.raises(Int8Error, match="cannot be merged"):
        int8_classifier(pred.model, pred.task, "prompt_tuning", mergeable=False)

    class NotClassification:
        name = "ner"

    with pytest.raises(Int8Error, match="sequence classification"):
        int8_classifier(pred.model, NotClassification())
    with pytest.raises(ValueError, match="precision 'int4'"):
        Predictor.from_run_dir(run, precision="int4")


def test_a_decoder_body_with_grouped_query_attention(tiny_llama_dir, tmp_path):
    """Llama-style q_proj/k_proj/v_proj with narrower k/v (GQA) fuse too; labels still equal fp32's."""
    run = train_run(tiny_llama_dir, tmp_path, "single")
    exact = Predictor.from_run_dir(run, precision="fp32")
    pred = Predictor.from_run_dir(run, precision="int8")
    att = pred.model.quantized.backbone.layers[0].self_attn
    parts = [att.q_proj, att.k_proj, att.v_proj]
    assert all(isinstance(p, _FusedPart) for p in parts)
    assert [p.end - p.start for p in parts] == [lin.out_features for lin in
                                                (exact.model.backbone.layers[0].self_attn.q_proj,
                                                 exact.model.backbone.layers[0].self_attn.k_proj,
                                                 exact.model.backbone.layers[0].self_attn.v_proj)]
    assert parts[1].end - parts[1].start < parts[0].end - parts[0].start  # the tiny Llama has 2 kv heads of 4
    assert isinstance(att.o_proj, Int8Linear)
    assert [p["label"] for p in pred.predict(MORE)] == [p["label"] for p in exact.predict(MORE)]


def test_cli_predict_with_int8(tiny_bert_dir, tmp_path):
    run = train_run(tiny_bert_dir, tmp_path, "single")
    got, expected = cli_predict_labels(run, MORE, tmp_path, "--precision", "int8")
    assert got == expected
