"""The monitor's bf16-weight classifier: bf16 copy for speed, fp32 original for near ties, so its labels are fp32's
(tiny random encoder from tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch

from tuneforge.apps.monitor.classify import Bf16Classifier, Sentiment
from tuneforge.evaluation.evaluate import predict_features
from tuneforge.tasks.classification.head import SequenceClassifier


class ThreeLabels:
    """Just what ``predict_features`` asks of a single-label task: collate, predict and near ties."""

    def collate(self, features):
        width = max(f["length"] for f in features)
        return {"input_ids": torch.tensor([f["input_ids"] + [0] * (width - f["length"]) for f in features]),
                "attention_mask": torch.tensor([[1] * f["length"] + [0] * (width - f["length"]) for f in features])}

    def predict(self, outputs, batch):
        return outputs["logits"].float().tolist()

    def near_ties(self, outputs, margin=0.2):
        top = outputs["logits"].float().topk(2, dim=-1).values
        return ((top[:, 0] - top[:, 1]) < margin).nonzero().flatten().tolist()


@pytest.fixture()
def model(tiny_bert_dir):
    from tuneforge.models import load_backbone

    torch.manual_seed(0)
    m = SequenceClassifier(load_backbone(str(tiny_bert_dir)), num_labels=3, pooling="mean", dropout=0.0)
    torch.nn.init.normal_(m.classifier.weight, std=1.0)  # logits far enough apart that some rows are no near tie
    return m.eval()


def features(n=12):
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        length = 3 + i % 7
        out.append({"input_ids": torch.randint(5, 60, (length,), generator=g).tolist(), "length": length})
    return out


def test_bf16_copy_keeps_the_fp32_original(model):
    wrapped = Bf16Classifier(model)
    assert wrapped.exact is model and all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.dtype == torch.bfloat16 for p in wrapped.fast.parameters())
    feats = features()
    batch = ThreeLabels().collate(feats)
    out = wrapped(**batch)["logits"]
    assert out.dtype == torch.float32
    with torch.inference_mode():
        torch.testing.assert_close(out, model(**batch)["logits"], atol=0.1, rtol=0.0)


def test_near_ties_are_redone_in_fp32(model):
    task, feats = ThreeLabels(), features()
    exact = predict_features(model, task, feats, batch_size=4)
    everything = Bf16Classifier(model)
    everything.near_tie_margin = 1e9  # every row a near tie: all redone, exactly fp32's outputs
    assert predict_features(everything, task, feats, batch_size=4) == exact
    assert everything.rows_rechecked == everything.rows_predicted == len(feats)
    nothing = Bf16Classifier(model)
    nothing.near_tie_margin = -1.0  # none redone: bf16's own outputs, close to fp32's but not equal
    approx = predict_features(nothing, task, feats, batch_size=4)
    assert nothing.rows_rechecked == 0 and nothing.rows_predicted == len(feats)
    assert approx != exact
    torch.testing.assert_close(torch.tensor(approx), torch.tensor(exact), atol=0.1, rtol=0.0)
    default = Bf16Classifier(model)  # the shipped margin: labels are fp32's
    got = predict_features(default, task, feats, batch_size=4)
    assert [max(range(3), key=r.__getitem__) for r in got] == [max(range(3), key=r.__getitem__) for r in exact]


def test_sentiment_reports_bf16(model):
    class Stub:
        precision = "fp32"

        def __init__(self, m):
            self.model = m

    assert Sentiment(Stub(Bf16Classifier(model))).precision == "bf16"
    assert Sentiment(Stub(model)).precision == "fp32"


def test_padding_to_a_multiple_leaves_the_outputs(model):
    from tuneforge.apps.monitor.classify import pad_to_multiple

    batch = ThreeLabels().collate(features())  # longest: 9 tokens
    padded = pad_to_multiple(batch, 8)
    assert padded["input_ids"].shape == padded["attention_mask"].shape == (12, 16)
    assert torch.equal(padded["attention_mask"][:, :9], batch["attention_mask"])
    assert not padded["attention_mask"][:, 9:].any() and pad_to_multiple(padded, 8) is padded
    with torch.inference_mode():  # masked padding changes nothing beyond float rounding, in fp32
        torch.testing.assert_close(model(**padded)["logits"], model(**batch)["logits"], atol=1e-5, rtol=1e-5)
