"""int8 CPU inference for sequence classifiers: ``Predictor.from_run_dir(run, precision="int8")``,
``tuneforge predict|serve RUN --precision int8``.

What it does. Every ``nn.Linear`` of the body (not the pooler, not the task head) becomes an ``Int8Linear``:
weights are quantised once, symmetric per output channel; activations are quantised per token (per row) at run time
from the row's own range; the int8 product accumulates in int32 and is scaled back to fp32 with the bias. An
attention block's query/key/value projections read the same input, so they are fused into one product (the input is
quantised once), and BERT's intermediate GELU runs in the same step. Attention, LayerNorm, pooling and the head
stay fp32. Two kernels; the faster one on this CPU is picked once per process (``int8_kernel``):

- ``int_mm``: ``torch._int_mm``, int8 activations symmetric per row (max |x| → 127), int8 weights (±127).
  Quantise, product, scales, bias (and GELU) are one ``torch.compile`` function (built on first use, cached by
  Inductor on disk; eager ops when no C++ compiler is there or ``TUNEFORGE_INT8_COMPILE=0``). Fast with VNNI;
  on a CPU without it (AVX2 only: EPYC Milan) it is a reference loop, 30x slower than fp32.
- ``onednn``: oneDNN's u8 x s8 product (``torch.ops.onednn.qlinear_pointwise``, x86), activations asymmetric
  per row (the row's [min, max] → 0..255, its zero point taken out afterwards with the weights' column sums),
  weights on 7 bits (±63). Without VNNI x86 multiplies u8 by s8 in pairs summed into int16 (``vpmaddubsw``),
  which saturates past 32,767: 255 x 63 x 2 = 32,130 never does, so the product is exact integer maths on every
  x86 CPU. On a 2-core EPYC Milan (AVX2): the product alone 2.1x fp32's (7.3 ms against 15.4 ms for
  1024x384x1536), a whole ``Int8Linear`` of 512 rows with its quantising 1.3-1.4x, MiniLM prediction 1.0-1.2x.

Why per token: BERT activations have outlier tokens and channels; one scale per batch (``torch.ao``'s dynamic
quantisation) moved MiniLM SST-2 logits by up to 1.7 and flipped 33-42 of 872 labels. Per-token scales move them by
at most ~0.3 (measured on the bench runs; weights alone ~0.17). Asymmetric rows spend all 256 levels on the row's
range (GELU outputs are nearly all positive), which more than pays for the 7-bit weights: the largest top-2 gap
error on SST-2 dev was 0.53 for ``onednn`` and 0.61 for ``int_mm`` (quick 4,000-row run).

Labels stay those of the fp32 model: a row whose int8 decision is within ``NEAR_TIE_MARGIN`` logits of changing
(top-2 gap, or a multi-label logit near 0) is recomputed at the end (evaluate.recheck_near_ties) by the fp32 model,
which is kept beside the int8 copy and shares its embeddings and other unquantised parameters. The largest error of
a top-2 gap measured over 13,800 SST-2/BANKING77 texts on three runs was 0.55 logits; rows outside the margin cannot
flip unless an error is larger.

Speed on 2 cores, MiniLM: see bench/bench_inference.py and the README. Sequence-level classification only
(single-label, multi-label, pairs); adapter runs are merged first when the method can be merged.
"""

from __future__ import annotations

import copy
import functools
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

# logits; int8 decisions closer than this are redone in fp32 (largest gap errors: int_mm 0.55, onednn 0.53)
NEAR_TIE_MARGIN = 0.75
# an int8 product must beat fp32's to be worth the quantise steps; where it does not, int8 runs only when forced
INT8_MIN_SPEEDUP = 1.0
_PROBE = (512, 384, 1536)  # (m, k, n): MiniLM's FFN product over 512 tokens
FORCE_ENV = "TUNEFORGE_INT8_FORCE"
KERNEL_ENV = "TUNEFORGE_INT8_KERNEL"  # int_mm | onednn: use this kernel instead of the faster one
ONEDNN_WEIGHT_MAX = 63  # 7-bit weights: u8 x s8 pairs stay under int16's 32,767 without VNNI (255 x 63 x 2)
_QKV_NAMES = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"))


class Int8Error(ValueError):
    """int8 inference cannot serve this run (unsupported task or adapter)."""


def _int8_linear(x: torch.Tensor, weight: torch.Tensor, col_scale: torch.Tensor, bias: torch.Tensor | None,
                 gelu: bool) -> torch.Tensor:
    """(M, K) fp32 x (K, N) int8 weights → (M, N) fp32. Per-row symmetric int8 activations (max |x| of the row →
    127), int32 products, then the row's and the column's scales, the bias and (``gelu``) the exact GELU."""
    row_scale = torch.maximum(x.amax(1, keepdim=True), x.amin(1, keepdim=True).neg()).clamp_min(1e-12) / 127
    acc = torch._int_mm(torch.round(x / row_scale).to(torch.int8), weight)
    out = acc * col_scale
    out = torch.addcmul(bias, out, row_scale) if bias is not None else out * row_scale
    return nn.functional.gelu(out) if gelu else out


def _quantize_rows_u8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(M, K) fp32 → u8 codes, the rows' scales and zero points (M, 1): row r's [min, max] spans 0..255."""
    lo, hi = x.amin(1, keepdim=True), x.amax(1, keepdim=True)
    scale = (hi - lo).clamp_min(1e-12) / 255
    zero = torch.round(-lo / scale)
    return torch.clamp(torch.round(x / scale) + zero, 0, 255).to(torch.uint8), scale, zero


def _dequantize_rows(acc: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, col_sum: torch.Tensor,
                     bias: torch.Tensor | None, gelu: bool) -> torch.Tensor:
    """``acc`` = codes x int8 weights x column scales (fp32): take the rows' zero points out (``col_sum``: the
    weights' column sums x column scales), scale the rows, add the bias, (``gelu``) the exact GELU."""
    out = acc - zero * col_sum
    out = torch.addcmul(bias, out, scale) if bias is not None else out * scale
    return nn.functional.gelu(out) if gelu else out


def _onednn_product(codes: torch.Tensor, packed: torch.Tensor, col_scale: torch.Tensor,
                    zeros: torch.Tensor) -> torch.Tensor:
    """u8 (M, K) x prepacked int8 weights → fp32 (M, N) x column scales, by oneDNN (exact int32 accumulation)."""
    return torch.ops.onednn.qlinear_pointwise(codes, 1.0, 0, packed, col_scale, zeros, None, 1.0, 0, torch.float32,
                                              "none", [], "")


def onednn_available() -> bool:
    """oneDNN's quantised linear is there (x86 CPU builds of torch)."""
    try:
        return hasattr(torch.ops.onednn, "qlinear_pointwise") and torch.backends.mkldnn.is_available()
    except (AttributeError, RuntimeError):
        return False


def available_kernels() -> tuple[str, ...]:
    return tuple(k for k, ok in (("int_mm", hasattr(torch, "_int_mm")), ("onednn", onednn_available())) if ok)


@functools.cache
def kernel_speedups(repeats: int = 9) -> dict[str, float]:
    """fp32 seconds over int8 seconds of one FFN-sized linear layer (``_PROBE``: MiniLM's 384 → 1536 over 512
    tokens, about one prediction batch) per available kernel, quantising included (fp32 in, fp32 out), on this CPU
    at the current thread count: best of ``repeats`` calls each, interleaved, so that a noisy neighbour slows all
    sides alike (~4 s on 2 cores, most of it the quantise kernels' first compile). Measured on a 2-core EPYC
    Milan (AVX2, no VNNI): ``int_mm`` 0.02-0.06 (a reference loop: 460 ms against fp32's 12.6 ms for a
    1024x384x1536 product), ``onednn`` 1.3-1.4."""
    m, k, n = _PROBE
    gen = torch.Generator().manual_seed(0)
    lin = nn.Linear(k, n)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n, k, generator=gen) / k ** 0.5)
    x = torch.randn(m, k, generator=gen)
    sides: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"fp32": lin}
    sides.update({kernel: Int8Linear([lin], kernel) for kernel in available_kernels()})
    best = dict.fromkeys(sides, float("inf"))
    with torch.inference_mode():
        for fn in sides.values():
            fn(x)  # warm-up: allocations, the quantise kernels' compile
        for i in range(repeats):
            for name, fn in sides.items():
                if i >= 2 and best[name] > 5 * best["fp32"]:
                    continue  # far slower already (a reference loop): more timings cannot change the pick
                t = time.perf_counter()
                fn(x)
                best[name] = min(best[name], time.perf_counter() - t)
    return {kernel: best["fp32"] / best[kernel] for kernel in sides if kernel != "fp32"}


def int8_kernel() -> str:
    """The kernel ``Int8Linear`` uses by default: ``TUNEFORGE_INT8_KERNEL`` when set, else the fastest one here
    (``int_mm`` on a GPU, where ``onednn`` does not run)."""
    forced = os.environ.get(KERNEL_ENV)
    kernels = available_kernels()
    if forced:
        if forced not in kernels:
            raise Int8Error(f"{KERNEL_ENV}={forced!r}: this torch build offers {', '.join(kernels) or 'none'}")
        return forced
    if not kernels:
        raise Int8Error(f"precision int8 needs torch._int_mm or oneDNN (torch {torch.__version__} has neither)")
    if torch.cuda.is_available() or len(kernels) == 1:
        return kernels[0]
    speedups = kernel_speedups()
    return max(speedups, key=speedups.__getitem__)


def cpu_int8_speedup() -> float:
    """fp32 seconds over int8 seconds of one FFN-sized product with the kernel ``int8_kernel`` picks."""
    return kernel_speedups()[int8_kernel()]


def int8_too_slow() -> str | None:
    """Why int8 would be slower than fp32 on this CPU, or None when it is not (or on a GPU, or with
    ``TUNEFORGE_INT8_FORCE=1``). Labels are fp32's either way; only the speed differs."""
    if os.environ.get(FORCE_ENV, "0") == "1" or torch.cuda.is_available():
        return None
    speedup = cpu_int8_speedup()
    if speedup >= INT8_MIN_SPEEDUP:
        return None
    return f"an int8 product ({int8_kernel()} kernel) runs at {speedup:.2f}x fp32's speed on this CPU"


class _Compiled:
    """``fn`` compiled by ``torch.compile`` (dynamic shapes; one fused kernel around the int8 product) on first use;
    ``fn`` itself when compiling fails or ``TUNEFORGE_INT8_COMPILE=0``."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        self.compiled: Callable[..., Any] | None = None
        if os.environ.get("TUNEFORGE_INT8_COMPILE", "1") != "0":
            self.compiled = torch.compile(fn, dynamic=True)

    def __call__(self, *args: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as e:  # no C++ compiler, unsupported platform, ...: the same maths in eager ops
                warnings.warn(f"int8: torch.compile of {self.fn.__name__} failed ({type(e).__name__}: {e}); "
                              f"using eager kernels (slower)", stacklevel=2)
                self.compiled = None
        return self.fn(*args)


INT8_LINEAR = _Compiled(_int8_linear)
QUANTIZE_ROWS_U8 = _Compiled(_quantize_rows_u8)
DEQUANTIZE_ROWS = _Compiled(_dequantize_rows)


class _Shared:
    """A read-only value that ``copy.deepcopy`` shares instead of copying (oneDNN's packed weights cannot be)."""

    def __init__(self, value: Any):
        self.value = value

    def __deepcopy__(self, memo: dict[int, Any]) -> _Shared:
        return self


class Int8Linear(nn.Module):
    """``nn.Linear`` (or several stacked along the output: fused q/k/v) with int8 weights (symmetric, per output
    channel) and per-token int8 activations, optionally followed by GELU. Input and output are fp32. ``kernel``:
    ``int_mm`` or ``onednn`` (module docstring); by default the faster one here (``int8_kernel``)."""

    def __init__(self, linears: list[nn.Linear], kernel: str | None = None):
        super().__init__()
        self.kernel = kernel or int8_kernel()
        weight = torch.cat([lin.weight.detach().float() for lin in linears])  # (N, K)
        top = ONEDNN_WEIGHT_MAX if self.kernel == "onednn" else 127
        scale = weight.abs().amax(1).clamp_min(1e-12) / top
        codes = torch.round(weight / scale[:, None]).to(torch.int8)
        if self.kernel == "onednn":
            # oneDNN's prepacked layout is an opaque tensor (no storage): not a buffer, and shared by copies
            self.packed = _Shared(torch.ops.onednn.qlinear_prepack(codes, None))
            self.register_buffer("col_sum", codes.sum(1).float() * scale)
            self.register_buffer("zero_points", torch.zeros(len(scale), dtype=torch.long))
        else:
            self.register_buffer("weight_int8", codes.t().contiguous())
        self.register_buffer("weight_scale", scale)
        biases = [lin.bias for lin in linears]
        bias = None if any(b is None for b in biases) else torch.cat([b.detach().float() for b in biases])
        self.register_buffer("bias", bias)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.gelu = False  # set by quantize_body when the next step is an exact GELU (BERT's intermediate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).float()
        if self.kernel == "onednn":
            codes, scale, zero = QUANTIZE_ROWS_U8(flat)
            acc = _onednn_product(codes, self.packed.value, self.weight_scale, self.zero_points)
            out = DEQUANTIZE_ROWS(acc, scale, zero, self.col_sum, self.bias, self.gelu)
        else:
            out = INT8_LINEAR(flat, self.weight_int8, self.weight_scale, self.bias, self.gelu)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"kernel={self.kernel}" + (", gelu" if self.gelu else ""))


class _FusedPart(nn.Module):
    """One of an attention block's q/k/v projections, served from the fused ``Int8Linear``: the first of the three
    calls on an input computes all of them, the others slice that result (per thread, so concurrent requests in
    the server do not mix). Widths may differ (grouped-query attention: k/v narrower than q)."""

    def __init__(self, fused: Int8Linear, start: int, end: int, first: bool, last: bool):
        super().__init__()
        self._fused = (fused,)  # a tuple, not a submodule: the three parts share one
        self.start, self.end, self.first, self.last = start, end, first, last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self._fused[0]
        local = fused.__dict__.setdefault("_local", threading.local())
        if self.first or getattr(local, "x", None) is not x:
            local.x, local.y = x, fused(x)
        y = local.y
        if self.last:
            local.x = local.y = None
        return y[..., self.start:self.end]


def _fuse_qkv(module: nn.Module, kernel: str) -> bool:
    """Replace ``module``'s q/k/v ``nn.Linear`` projections (BERT's query/key/value, Llama's q_proj/k_proj/v_proj)
    by three ``_FusedPart`` views of one ``Int8Linear``. False when the module has no such trio."""
    for names in _QKV_NAMES:
        lins = [getattr(module, n, None) for n in names]
        if all(type(lin) is nn.Linear for lin in lins) and len({lin.in_features for lin in lins}) == 1 \
                and len({lin.bias is None for lin in lins}) == 1:
            fused, start = Int8Linear(lins, kernel), 0
            for i, (name, lin) in enumerate(zip(names, lins)):
                part = _FusedPart(fused, start, start + lin.out_features, i == 0, i == len(names) - 1)
                setattr(module, name, part)
                start += lin.out_features
            return True
    return False


def quantize_body(body: nn.Module, skip: tuple[str, ...] = ("pooler",), kernel: str | None = None) -> int:
    """Replace ``body``'s ``nn.Linear`` layers (not under a name in ``skip``) in place; returns how many.
    ``kernel``: ``Int8Linear``'s (by default ``int8_kernel()``)."""
    kernel = kernel or int8_kernel()
    count = 0
    for name, module in list(body.named_modules()):
        if any(s in name.split(".") for s in skip):
            continue
        if _fuse_qkv(module, kernel):
            count += 3
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Linear and child_name not in skip:
                setattr(module, child_name, Int8Linear([child], kernel))
                count += 1
        _fuse_gelu(module)
    return count


def _fuse_gelu(module: nn.Module) -> None:
    """BERT-style ``intermediate`` blocks (``dense`` then ``intermediate_act_fn``): GELU inside the int8 kernel."""
    dense, act = getattr(module, "dense", None), getattr(module, "intermediate_act_fn", None)
    exact_gelu = (isinstance(act, nn.GELU) and act.approximate == "none") or \
        getattr(act, "act", None) is nn.functional.gelu  # transformers' GELUActivation
    if isinstance(dense, Int8Linear) and exact_gelu:
        dense.gelu = True
        module.intermediate_act_fn = nn.Identity()


class Int8Classifier(nn.Module):
    """An int8 copy of a sequence classifier for prediction, with the fp32 original kept as ``exact`` for the
    near-tie rechecks (``evaluate.predict_features`` reads ``exact`` and ``near_tie_margin``)."""

    near_tie_margin = NEAR_TIE_MARGIN

    def __init__(self, exact: nn.Module, quantized: nn.Module, n_quantized: int):
        super().__init__()
        self.exact, self.quantized, self.n_quantized = exact, quantized, n_quantized
        self.rows_predicted = self.rows_rechecked = 0  # counted by evaluate.predict_features

    def forward(self, **inputs: torch.Tensor) -> Any:
        return self.quantized(**inputs)


def int8_classifier(model: nn.Module, task: Any, peft_method: str | None = None,
                    mergeable: bool = False) -> Int8Classifier:
    """``model`` (a TuneForge sequence classifier, fp32, eval) wrapped for int8 prediction."""
    from tuneforge.peft_methods import find_peft_model
    from tuneforge.tasks.classification.task import ClassificationTask

    if type(task) is not ClassificationTask:
        raise Int8Error(f"precision int8 serves sequence classification; this is a "
                        f"{getattr(task, 'name', type(task).__name__)} run: use fp32 or bf16")
    kernel = int8_kernel()  # refuses a torch build with no int8 kernel
    model = model.float().eval()
    peft_model = find_peft_model(model)
    if peft_model is not None:
        if not mergeable or getattr(model, "backbone", None) is not peft_model:
            raise Int8Error(f"precision int8: peft.method={peft_method!r} cannot be merged into the body's weights; "
                            f"use fp32 or bf16")
        quantized = copy.deepcopy(model)
        quantized.backbone = quantized.backbone.merge_and_unload()
    else:  # share every parameter with the original; only the module tree is copied, then its Linears replaced
        quantized = copy.deepcopy(model, memo={id(p): p for p in model.parameters()})
    body = getattr(quantized, "backbone", None)
    if body is None:
        raise Int8Error(f"precision int8: {type(model).__name__} has no backbone to quantise")
    n = quantize_body(body, kernel=kernel)
    if n == 0:
        raise Int8Error(f"precision int8: no nn.Linear layers found in {type(body).__name__}")
    return Int8Classifier(model, quantized.eval(), n).eval()
