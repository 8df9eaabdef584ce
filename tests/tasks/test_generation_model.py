"""The causal-LM wrapper on a tiny random Llama: packed losses equal unpacked ones, the loss matches HF's, LoRA."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from tuneforge.models import load_tokenizer
from tuneforge.tasks.generation import data as gdata
from tuneforge.tasks.generation.head import CausalLM, block_causal_mask

CONVS = [
    [{"role": "user", "content": "where is my card"}, {"role": "assistant", "content": "it has not arrived yet"}],
    [{"role": "system", "content": "be short"}, {"role": "user", "content": "why"},
     {"role": "assistant", "content": "pending"}, {"role": "user", "content": "ok"},
     {"role": "assistant", "content": "great movie"}],
    [{"role": "user", "content": "the exchange rate is bad"}, {"role": "assistant", "content": "good"}],
    [{"role": "user", "content": "top up failed"}, {"role": "assistant", "content": "refund pending"}],
]


def tiny_lm(folder, attn: str):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attn)


def per_example_nll(model, batch, n, rows=None):
    out = model(**batch)
    rows = batch.get("segment_ids") if rows is None else rows
    if rows is None:
        rows = torch.arange(n)[:, None].expand_as(batch["input_ids"])
    return torch.stack([out["token_nll"][rows == i].sum() for i in range(n)])


@pytest.fixture(scope="module")
def tok(tiny_llama_dir):
    return load_tokenizer(str(tiny_llama_dir))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_per_example_losses_equal_unpacked(tiny_llama_dir, tok, attn):
    model = CausalLM(tiny_lm(tiny_llama_dir, attn), {"max_new_tokens": 3}, gdata.stop_token_ids(tok),
                     tok.pad_token_id).eval()
    feats = [gdata.encode_chat(tok, c, 256) for c in CONVS]
    unpacked = gdata.collate(feats, tok.pad_token_id)
    packed = gdata.collate(feats, tok.pad_token_id, packing=True, max_length=256)
    assert packed["input_ids"].shape[0] < unpacked["input_ids"].shape[0]  # it really packed
    with torch.no_grad():
        want = per_example_nll(model, unpacked, len(feats))
        got = per_example_nll(model, packed, len(feats))
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
        # control: restarting positions without the block mask lets examples see each other, and the losses move
        leaky = {k: v for k, v in packed.items() if k != "segment_ids"}
        assert not torch.allclose(per_example_nll(model, leaky, len(feats), rows=packed["segment_ids"]), want,
                                  atol=1e-3)
    model.train()
    loss_sum, count = model(**packed)["loss_sum"], model(**packed)["loss_count"]
    assert float(count) == gdata.target_count(packed) == gdata.target_count(unpacked)
    torch.testing.assert_close(loss_sum, want.sum(), atol=1e-4, rtol=1e-5)


def test_answer_loss_equals_hf_shifted_cross_entropy(tiny_llama_dir, tok):
    lm = tiny_lm(tiny_llama_dir, "sdpa")
    model = CausalLM(lm, {}, [], tok.pad_token_id).train()
    batch = gdata.collate([gdata.encode_chat(tok, c, 256) for c in CONVS], tok.pad_token_id)
    out = model(**batch)
    logits = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    ref = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["target_ids"][:, 1:].flatten(), ignore_index=-100,
                          reduction="sum")
    torch.testing.assert_close(out["loss_sum"], ref, atol=1e-4, rtol=1e-5)


def test_block_mask_shape_and_isolation():
    seg = torch.tensor([[0, 0, 1, 1, -1]])
    m = block_causal_mask(seg, "sdpa")
    assert m.shape == (1, 1, 5, 5) and m.dtype == torch.bool
    assert m[0, 0, 3].tolist() == [False, False, True, True, False]  # token 3 sees only example 1, causally
    assert block_causal_mask(seg, "eager")[0, 0, 3, 0] < -1e30


def test_eval_mode_generates_and_scores(tiny_llama_dir, tok):
    model = CausalLM(tiny_lm(tiny_llama_dir, "sdpa"), {"max_new_tokens": 4}, gdata.stop_token_ids(tok),
                     tok.pad_token_id).eval()
    batch = gdata.collate([gdata.encode_chat(tok, c, 256) for c in CONVS[:2]], tok.pad_token_id)
    with torch.no_grad():
        out = model(**batch)
    assert out["sequences"].shape[0] == 2 and out["sequences"].shape[1] <= 4
    assert out["token_nll"].shape == batch["input_ids"].shape and float(out["token_nll"].sum()) > 0


@pytest.mark.skipif(importlib.util.find_spec("tuneforge.peft_methods") is None,
                    reason="tuneforge.peft_methods (another engineer's module) is not there yet")
def test_lora_wraps_the_lm_and_trains_only_adapters(tiny_llama_dir, tok):
    from tuneforge.config import PeftConfig
    from tuneforge.peft_methods import apply_peft

    lm, _ = apply_peft(tiny_lm(tiny_llama_dir, "sdpa"), PeftConfig(method="lora", r=4, alpha=8, dropout=0.0),
                       task_type="CAUSAL_LM", total_steps=10)
    model = CausalLM(lm, {"max_new_tokens": 2}, gdata.stop_token_ids(tok), tok.pad_token_id).train()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    batch = gdata.collate([gdata.encode_chat(tok, c, 256) for c in CONVS], tok.pad_token_id, True, 256)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    losses = []
    for _ in range(8):
        out = model(**batch)
        loss = out["loss_sum"] / out["loss_count"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    with torch.no_grad():
        assert model.eval()(**batch)["sequences"].shape[0] == len(CONVS)


def reference_answer_loss(lm, batch, reduction="sum"):
    """The loss computed the plain way: every position's logits at once, shifted cross-entropy on answer tokens."""
    logits = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch["target_ids"][:, 1:].flatten(),
                           ignore_index=-100, reduction=reduction)


@pytest.mark.parametrize("autocast", [False, True])
def test_chunked_loss_and_gradients_equal_full_logits(tiny_llama_dir, tok, monkeypatch, autocast):
    from tuneforge.models import load_backbone
    from tuneforge.training import chunked_ce

    monkeypatch.setattr(chunked_ce, "CHUNK_BYTES", 4 * len(tok) * 3)  # 3 tokens a chunk: many chunks
    torch.manual_seed(0)
    lean = load_backbone(str(tiny_llama_dir), causal_lm=True)  # grouped K/V attention, chunked loss
    assert lean.config._attn_implementation == "sdpa_grouped_kv"
    plain = tiny_lm(tiny_llama_dir, "sdpa")  # repeat_kv attention, full logits
    model = CausalLM(lean, {}, [], tok.pad_token_id).train()
    batch = gdata.collate([gdata.encode_chat(tok, c, 256) for c in CONVS], tok.pad_token_id)  # padded rows
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(**batch)
        want = reference_answer_loss(plain.train(), batch)
    # bf16: the same bf16 logits; gradients differ by bf16 rounding order only (~1e-3 relative)
    tol = {"atol": 1e-3, "rtol": 1e-2} if autocast else {"atol": 1e-5, "rtol": 1e-5}
    torch.testing.assert_close(out["loss_sum"], want, **tol)
    (out["loss_sum"] / out["loss_count"]).backward()
    (want / out["loss_count"]).backward()
    params = dict(plain.named_parameters())
    for name, p in lean.named_parameters():  # tied embeddings: the head's gradient lands on the input embedding
        torch.testing.assert_close(p.grad, params[name].grad, msg=name, **tol)
    model.eval()
    scoring = {k: v for k, v in batch.items() if not k.startswith("prompt")}  # no generation
    with torch.no_grad():  # evaluation's per-token losses: the same values at every answer position
        token_nll = model(**scoring)["token_nll"][:, 1:].flatten()
        ref = reference_answer_loss(plain.eval(), batch, "none")
    torch.testing.assert_close(token_nll, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("tuneforge.peft_methods") is None,
                    reason="tuneforge.peft_methods (another engineer's module) is not there yet")
def test_gradient_checkpointing_with_lora_gives_the_same_gradients(tiny_llama_dir, tok):
    from tuneforge.config import PeftConfig
    from tuneforge.models import enable_gradient_checkpointing, load_backbone
    from tuneforge.peft_methods import apply_peft

    batch = gdata.collate([gdata.encode_chat(tok, c, 256) for c in CONVS], tok.pad_token_id, True, 256)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        lm, _ = apply_peft(load_backbone(str(tiny_llama_dir), causal_lm=True),
                           PeftConfig(method="lora", r=4, alpha=8, dropout=0.0), task_type="CAUSAL_LM",
                           total_steps=10)
        if checkpointing:
            enable_gradient_checkpointing(lm)
        model = CausalLM(lm, {}, [], tok.pad_token_id).train()
        for p in model.parameters():  # LoRA's B starts at zero: move it so every gradient is non-trivial
            if p.requires_grad:
                torch.nn.init.normal_(p, std=0.1, generator=torch.Generator().manual_seed(p.numel()))
        out = model(**batch)
        out["loss_sum"].backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, atol=1e-6, rtol=1e-5, msg=name)
    assert lm.get_base_model().model.gradient_checkpointing


def test_gradient_checkpointing_refused_where_the_model_lacks_it():
    from tuneforge.models import enable_gradient_checkpointing

    with pytest.raises(ValueError, match="does not support gradient checkpointing"):
        enable_gradient_checkpointing(torch.nn.Linear(2, 2))
