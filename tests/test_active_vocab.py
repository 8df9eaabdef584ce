"""train.active_vocab: only the word-embedding rows the training data uses are trained, with the same result as dense
AdamW (exact resume with it on: test_resume.py, which trains the full policy on a tiny BERT)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import BertConfig, BertModel

from tests.test_smoke_pipeline import write_toy_csv
from tuneforge.config import config_from_dict
from tuneforge.runner import train
from tuneforge.training import active_vocab


class Wrapped(nn.Module):
    """The shape TuneForge models have: a HF body under ``backbone``."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone


def tiny(vocab: int = 40) -> Wrapped:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=vocab, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=32, pad_token_id=0)
    return Wrapped(BertModel(cfg))


def run(tiny_bert_dir, tmp_path, name: str, active: bool, data):
    cfg = config_from_dict({
        "model": str(tiny_bert_dir), "output_dir": str(tmp_path / name), "seed": 5,
        "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.2}},
        "train": {"epochs": 3, "batch_size": 8, "lr": 5e-3, "weight_decay": 0.1, "max_grad_norm": 0.5,
                  "progress": False, "precision": "fp32", "active_vocab": active, "num_threads": 1,
                  "early_stopping": {"patience": None}},
        "eval": {"baselines": []}})
    result = train(cfg)
    return load_file(str(tmp_path / name / "best" / "model.safetensors")), result


def test_training_matches_dense_adamw(tiny_bert_dir, tmp_path, capsys):
    data = tmp_path / "toy.csv"
    write_toy_csv(data, n=120)
    sparse, res_sparse = run(tiny_bert_dir, tmp_path, "active", True, data)
    assert "active vocabulary: training" in capsys.readouterr().out  # the path under test was taken
    dense, res_dense = run(tiny_bert_dir, tmp_path, "dense", False, data)
    assert sparse.keys() == dense.keys()
    key = next(k for k in sparse if k.endswith("word_embeddings.weight"))
    start = BertModel.from_pretrained(tiny_bert_dir).embeddings.word_embeddings.weight.detach()
    assert sparse[key].shape == start.shape  # the full matrix is saved, under its usual name
    for k in sparse:
        torch.testing.assert_close(sparse[k], dense[k], atol=1e-6, rtol=0, msg=k)
    # rows the data never uses moved (weight decay), exactly as much as under dense AdamW
    unused = (sparse[key] - start).abs().amax(dim=1) < 1e-3
    assert unused.sum() > 10
    assert not torch.equal(sparse[key][unused], start[unused])
    torch.testing.assert_close(sparse[key][unused], dense[key][unused], atol=1e-7, rtol=1e-6)
    assert res_sparse.report["metrics"]["test"]["accuracy"] == res_dense.report["metrics"]["test"]["accuracy"]


def test_wrapper_state_dict_forward_and_decay():
    model = tiny()
    emb = model.backbone.embeddings.word_embeddings
    original = emb.weight.detach().clone()
    features = [{"input_ids": [2, 5, 7]}, {"input_ids": [5, 9]}]
    wrapper = active_vocab.install(model, features, pad_ids=[0])
    assert wrapper is not None and model.backbone.get_input_embeddings() is wrapper
    assert wrapper.active_ids.tolist() == [0, 2, 5, 7, 9]
    assert [n for n, p in model.named_parameters() if p.requires_grad][0].endswith("word_embeddings.weight")
    assert wrapper.weight.shape == (5, 8)

    ids = torch.tensor([[2, 9, 0]])
    wrapper.train()
    out = wrapper(ids)
    torch.testing.assert_close(out, original[ids])
    out.sum().backward()
    assert wrapper.weight.grad.shape == (5, 8)
    assert torch.all(wrapper.weight.grad[0] == 0)  # the padding row gets no gradient, as in nn.Embedding
    with pytest.raises(RuntimeError, match="not in the training data"):
        wrapper(torch.tensor([[3]]))

    opt = torch.optim.AdamW([wrapper.weight], lr=0.1, weight_decay=0.5)
    opt.step()
    wrapper.after_optimizer_step(opt)
    opt.step()
    wrapper.after_optimizer_step(opt)
    assert wrapper.pending_decay == pytest.approx(0.95 ** 2)
    state = model.state_dict()
    full = state["backbone.embeddings.word_embeddings.weight"]
    assert full.shape == (40, 8)
    torch.testing.assert_close(full[3], original[3] * 0.95 ** 2)  # unused row: decayed
    torch.testing.assert_close(full[[0, 2, 5, 7, 9]], wrapper.weight.detach())  # used rows: trained values
    wrapper.eval()
    torch.testing.assert_close(wrapper(torch.tensor([3, 5])), full[[3, 5]])  # eval reads the whole matrix

    fresh = tiny()
    fresh_wrapper = active_vocab.install(fresh, features, pad_ids=[0])
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh_wrapper.weight, wrapper.weight)
    inner = active_vocab.uninstall(fresh, fresh_wrapper)
    assert fresh.backbone.get_input_embeddings() is inner and inner.weight.requires_grad
    torch.testing.assert_close(inner.weight.detach(), full)


def test_not_installed_where_it_would_not_be_exact_or_useful():
    model = tiny()
    model.backbone.embeddings.word_embeddings.weight.requires_grad_(False)  # frozen: nothing to train
    assert active_vocab.install(model, [{"input_ids": [1]}]) is None
    assert active_vocab.install(tiny(), [{"text": "no ids"}]) is None  # features without input_ids
    assert active_vocab.install(tiny(), [{"input_ids": list(range(39))}]) is None  # nearly every row used
    tied = tiny()
    tied.head = nn.Linear(8, 40, bias=False)
    tied.head.weight = tied.backbone.embeddings.word_embeddings.weight  # an LM head tied to the embeddings
    assert active_vocab.install(tied, [{"input_ids": [1]}]) is None
    assert isinstance(tied.backbone.get_input_embeddings(), nn.Embedding)
