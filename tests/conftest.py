"""Shared fixtures: tiny random models and tokenizers built inside the tests (no network, no downloads)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# tiny models gain nothing from several threads, and the suite may share its cores with other jobs
os.environ.setdefault("TUNEFORGE_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"

WORDS = (
    "the a an is are was to of and in on for with my card has not arrived yet where i want lost stolen money "
    "transfer pending exchange rate good bad great terrible movie film love hate it this that what how why when "
    "please help new account close pin change top up failed refund cash atm fee charge paris london john mary "
    "works at google apple in city company person born located question answer context who which located "
    "positive negative neutral profit loss sales rose fell euro million quarter year company shares"
).split()


CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def build_word_tokenizer(folder: Path, extra_words: list[str] | None = None, chat: bool = False):
    """A WordPiece (BERT-style) tokenizer over a small fixed vocabulary, saved to ``folder``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (list(CHAT_TOKENS) if chat else [])
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:;()$%")
    vocab_list = specials + sorted(set(WORDS + (extra_words or []))) + chars + [f"##{c}" for c in chars]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(vocab_list))}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece()
    if chat:  # ChatML markers as special tokens, matched before the lower-casing normalizer
        tok.add_special_tokens(list(CHAT_TOKENS))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=512,
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"],
                                   **({"eos_token": CHAT_TOKENS[1], "chat_template": CHATML} if chat else {}))
    fast.save_pretrained(folder)
    return fast


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 random BERT with its tokenizer, as a local model folder."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    tok = build_word_tokenizer(folder)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, type_vocab_size=2)
    import torch

    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 random Llama causal LM whose word tokenizer has a ChatML chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny_llama")
    tok = build_word_tokenizer(folder, chat=True)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def guard(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", guard)
    monkeypatch.setattr(socket, "create_connection", guard)
    yield


def shared_dataset(name: str) -> Path:
    """Path to ../shared/datasets/<name>, or skip the test when it is absent (a user's fresh clone)."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"../shared/datasets/{name} is not available")
    return path
