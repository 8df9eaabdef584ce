"""``tuneforge export RUN OUT --gguf``: the exported causal LM also as ``OUT/model.gguf`` for llama.cpp users.

Written with the ``gguf`` package (no llama.cpp checkout): Llama-architecture models with a byte-level BPE tokenizer
(SmolLM2, Llama 3 style), tensors in the export's dtype (float32 or bfloat16; norms stay float32 as llama.cpp keeps
them), the query/key rows permuted into llama.cpp's rotary layout, the vocabulary, merges, special tokens and chat
template from the tokenizer. It is checked by reading it back with transformers' GGUF loader: the same token ids
for the probe prompts and logits within ``atol`` of the exported folder's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

GGUF_FILE = "model.gguf"


class GgufError(RuntimeError):
    """The model or its tokenizer has no GGUF mapping here; the message says which part."""


def permute_rotary(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF's (heads × [half | half]) query/key rows → llama.cpp's interleaved rotary pairs (its convert script's
    ``permute``; transformers' GGUF loader applies the inverse)."""
    return weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:]).swapaxes(1, 2) \
        .reshape(weights.shape)


def write_gguf(folder: Path, config: Any, state: dict[str, torch.Tensor], tokenizer: Any, name: str) -> Path:
    """``folder/model.gguf`` from a Llama config, its state dict and its tokenizer."""
    import gguf

    if config.model_type != "llama":
        raise GgufError(f"GGUF export covers Llama-architecture models; this one is {config.model_type!r}")
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    bf16 = any(t.dtype == torch.bfloat16 for t in state.values())
    path = folder / GGUF_FILE
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(float(_rope_theta(config)))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_BF16 if bf16 else gguf.LlamaFileType.ALL_F32)
    _add_tokenizer(writer, folder, tokenizer, config.vocab_size)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for hf_name, tensor in state.items():
        if hf_name == "lm_head.weight" and getattr(config, "tie_word_embeddings", False):
            continue  # llama.cpp reads the tied output from token_embd
        target = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise GgufError(f"no GGUF name for tensor {hf_name!r}")
        data = tensor.float().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = permute_rotary(data, n_head)
        elif hf_name.endswith("k_proj.weight"):
            data = permute_rotary(data, n_kv)
        if bf16 and data.ndim > 1:
            writer.add_tensor(target, gguf.quants.quantize(data, gguf.GGMLQuantizationType.BF16),
                              raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            writer.add_tensor(target, data.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    theta = params.get("rope_theta") if isinstance(params, dict) else None
    return theta if theta is not None else getattr(config, "rope_theta", 10000.0)


def _add_tokenizer(writer: Any, folder: Path, tokenizer: Any, vocab_size: int) -> None:
    import gguf

    if tokenizer.backend_tokenizer.model.__class__.__name__ != "BPE" or \
            tokenizer.backend_tokenizer.decoder.__class__.__name__ != "ByteLevel":
        raise GgufError("GGUF export covers byte-level BPE tokenizers (llama.cpp's gpt2 model); this tokenizer is "
                        f"{tokenizer.backend_tokenizer.model.__class__.__name__}")
    n = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(n)))
    special = set(tokenizer.all_special_ids)
    added = set(tokenizer.get_added_vocab().values())
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.USER_DEFINED if i in added
             else gguf.TokenType.NORMAL for i in range(n)]
    tokens += [f"[PAD{i}]" for i in range(n, vocab_size)]  # embedding rows beyond the tokenizer
    types += [gguf.TokenType.UNUSED] * (vocab_size - n)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    vocab = gguf.SpecialVocab(folder, load_merges=True, n_vocab=vocab_size)
    if not vocab.merges:
        raise GgufError("the tokenizer's BPE merges could not be read from tokenizer.json")
    if vocab.chat_template is None and getattr(tokenizer, "chat_template", None):
        vocab.chat_template = tokenizer.chat_template
    vocab.add_to_gguf(writer, quiet=True)


def gguf_gap(folder: Path, prompts: list[str], reference: torch.nn.Module, tokenizer: Any) -> float:
    """Read ``folder/model.gguf`` back with transformers: the token ids of ``prompts`` must match the exported
    tokenizer's, and the largest logit gap against ``reference`` (the exported folder, fp32) is returned."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    back_tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    for text in prompts:
        want, got = tokenizer(text)["input_ids"], back_tok(text)["input_ids"]
        if got != want and got[1:] != want and want[1:] != got:  # one side may add a leading bos
            raise GgufError(f"the GGUF tokenizer splits {text[:40]!r} differently: {got[:12]} vs {want[:12]}")
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32).eval()
    ids = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        want = reference(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits
        got = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits
    keep = ids["attention_mask"].bool()
    return float((got[keep] - want[keep]).abs().max())
