"""Classification: losses, metrics against hand-computed values, multi-label, pairs, baselines."""

from __future__ import annotations

import pytest
import torch

from tuneforge.config import DataConfig, HeadConfig, LossConfig
from tuneforge.data.readers import BadRows
from tuneforge.tasks.base import TaskContext
from tuneforge.tasks.classification import ClassificationTask
from tuneforge.tasks.classification.head import pool
from tuneforge.tasks.classification.metrics import UNSEEN, single_label_metrics


def make(**kw) -> ClassificationTask:
    loss = LossConfig(**kw.pop("loss", {}))
    return ClassificationTask(TaskContext(DataConfig(**kw), HeadConfig(), loss))


def test_single_label_metrics_match_hand_computation():
    # gold: a a b b c ; pred: a b b b a
    m = single_label_metrics([0, 1, 1, 1, 0], [0, 0, 1, 1, 2], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    # a: P=1/2 R=1/2 F=1/2 ; b: P=2/3 R=1 F=0.8 ; c: P=0 R=0 F=0
    assert m["per_class"]["a"]["f1"] == pytest.approx(0.5)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0) / 3)
    assert m["micro_f1"] == pytest.approx(3 / 5)
    assert m["confusion_matrix"]["matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_single_label_rows_with_labels_unseen_in_train_count_as_errors_not_dropped():
    # gold: a b <unseen> <unseen> ; pred: a b a b
    m = single_label_metrics([0, 1, 0, 1], [0, 1, -1, -1], ["a", "b"])
    assert m["accuracy"] == pytest.approx(2 / 4)
    assert m["micro_f1"] == pytest.approx(m["accuracy"])  # before: 1.0, the unseen rows left out of recall
    assert m["unseen_in_train"] == 2
    # macro over the trained labels: a P=1/2 R=1 F=2/3, b likewise; the unseen rows are their false positives
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"]["labels"] == ["a", "b", UNSEEN]
    assert m["confusion_matrix"]["matrix"] == [[1, 0, 0], [0, 1, 0], [1, 1, 0]]
    assert sum(map(sum, m["confusion_matrix"]["matrix"])) == 4  # every row is in the matrix
    assert "unseen_in_train" not in single_label_metrics([0, 1], [0, 1], ["a", "b"])


def test_multi_label_gold_labels_unseen_in_train_are_misses():
    t = make(multi_label=True)
    t.setup([{"text": "x", "labels": ["a"]}, {"text": "y", "labels": ["b"]}], tokenizer=None)
    examples = [{"text": "1", "labels": ["a"]}, {"text": "2", "labels": ["a", "z"]}, {"text": "3", "labels": ["z"]}]
    m = t.metrics([[0], [0], []], examples)  # the right trained labels everywhere; "z" has no output
    assert m["subset_accuracy"] == pytest.approx(1 / 3)  # before: 1.0, "z" silently dropped
    assert m["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 2))  # tp 2, fp 0, fn 2 (the two "z")
    assert m["unseen_in_train"] == 2
    assert m["per_class"]["a"]["f1"] == pytest.approx(1.0)


def test_auto_class_weights_are_inverse_frequency_and_loss_matches_torch():
    t = make(loss={"class_weights": "auto"})
    train = [{"text": "x", "labels": ["a"]}] * 3 + [{"text": "y", "labels": ["b"]}]
    t.setup(train, tokenizer=None)
    assert t.class_weights == pytest.approx([0.5, 1.5])  # 1/3 : 1 normalised to mean 1
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    target = torch.tensor([0, 1, 1])
    s, n = t.loss({"logits": logits}, {"labels": target})
    ref = torch.nn.functional.cross_entropy(logits, target, weight=torch.tensor([0.5, 1.5]))
    assert float(s / n) == pytest.approx(float(ref), rel=1e-6)
    assert t.loss_items({"labels": target}) == pytest.approx(float(n))


def test_label_smoothing_is_applied():
    t = make(loss={"label_smoothing": 0.1})
    t.setup([{"text": "x", "labels": ["a"]}, {"text": "y", "labels": ["b"]}], None)
    logits, target = torch.tensor([[3.0, -3.0]]), torch.tensor([0])
    s, n = t.loss({"logits": logits}, {"labels": target})
    assert float(s / n) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, target,
                                                                                  label_smoothing=0.1)))


def test_multi_label_bce_and_metrics():
    t = make(multi_label=True)
    t.setup([{"text": "x", "labels": ["a", "b"]}, {"text": "y", "labels": ["c"]}], None)
    exs = [{"text": "1", "labels": ["a", "b"]}, {"text": "2", "labels": ["c"]}]
    preds = [[0.9, 0.8, 0.1], [0.2, 0.6, 0.7]]  # second row predicts {b, c}: not an exact match
    m = t.metrics(preds, exs)
    assert m["subset_accuracy"] == 0.5
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1))  # TP=3 FP=1 FN=0
    s, n = t.loss({"logits": torch.zeros(2, 3)}, {"labels": torch.tensor([[1.0, 1, 0], [0, 0, 1]])})
    assert float(s / n) == pytest.approx(float(torch.log(torch.tensor(2.0))))


def test_pair_encoding_uses_both_texts(tiny_bert_dir):
    from tuneforge.models import load_tokenizer

    tok = load_tokenizer(str(tiny_bert_dir))
    t = make(text_pair_column="hypothesis")
    exs = t.parse([{"text": "good movie", "hypothesis": "it is great", "label": "yes", "_loc": "f:2"}], BadRows())
    t.setup(exs, tok)
    feat = t.encode(exs[0])
    assert feat["token_type_ids"].count(1) > 0  # the second segment is there
    batch = t.collate([feat, t.encode({"text": "bad", "text_pair": "film", "labels": ["yes"]})])
    assert batch["input_ids"].shape[0] == 2 and batch["attention_mask"][1].sum() < batch["attention_mask"][0].sum()


def test_pooling_ignores_padding():
    h = torch.tensor([[[1.0], [3.0], [100.0]]])  # (B=1, T=3, H=1), last position is padding
    mask = torch.tensor([[1, 1, 0]])
    assert pool(h, mask, "mean").item() == 2.0
    assert pool(h, mask, "last").item() == 3.0
    assert pool(h, mask, "cls").item() == 1.0


def test_pooler_pooling_is_bert_for_sequence_classification(tiny_bert_dir):
    """``head.pooling=pooler`` computes what HF's ``BertForSequenceClassification`` computes, pooler weights included."""
    from transformers import BertForSequenceClassification

    from tuneforge.models import load_backbone
    from tuneforge.tasks.classification.head import SequenceClassifier

    ours = SequenceClassifier(load_backbone(str(tiny_bert_dir)), num_labels=3, pooling="pooler").eval()
    hf = BertForSequenceClassification.from_pretrained(str(tiny_bert_dir), num_labels=3).eval()
    assert torch.equal(ours.backbone.pooler.dense.weight, hf.bert.pooler.dense.weight)  # pretrained, not re-drawn
    ours.classifier.load_state_dict(hf.classifier.state_dict())
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask).logits
        got = ours(input_ids=ids, attention_mask=mask)["logits"]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert any(n.startswith("backbone.pooler.") for n, _ in ours.named_parameters())
    mean = SequenceClassifier(load_backbone(str(tiny_bert_dir)), num_labels=3, pooling="mean")
    assert not any("pooler" in n for n, _ in mean.named_parameters())  # unused: dropped (DDP needs every grad)


def test_pooler_pooling_needs_a_pretrained_pooler(tiny_llama_dir):
    from tuneforge.models import load_backbone
    from tuneforge.tasks.classification.head import SequenceClassifier

    for pooling in ("pooler", "mean_pooler"):
        with pytest.raises(ValueError, match=f"head.pooling={pooling} needs a body with a pretrained pooler"):
            SequenceClassifier(load_backbone(str(tiny_llama_dir)), num_labels=2, pooling=pooling)


def test_mean_pooler_pooling_concatenates_the_mean_and_the_pretrained_pooler(tiny_bert_dir):
    """``mean_pooler``: [mean over real tokens ; pooler(hidden)] → a linear layer of width 2H."""
    from tuneforge.models import load_backbone
    from tuneforge.tasks.backbone import token_states
    from tuneforge.tasks.classification.head import SequenceClassifier

    model = SequenceClassifier(load_backbone(str(tiny_bert_dir)), num_labels=3, pooling="mean_pooler").eval()
    hidden_size = model.backbone.config.hidden_size
    assert model.classifier.in_features == 2 * hidden_size
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        hidden = token_states(model.backbone, ids, mask)
        want = torch.cat([pool(hidden, mask, "mean"), model.backbone.pooler(hidden)], -1)
        got = model.features(ids, mask)
        logits = model(input_ids=ids, attention_mask=mask)["logits"]
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(logits, model.classifier(want))
    # padding does not leak into the mean half: the padded row equals the same row run alone
    with torch.no_grad():
        alone = model.features(ids[1:, :3], mask[1:, :3])
    torch.testing.assert_close(got[1:], alone, atol=1e-5, rtol=0)
    assert any(n.startswith("backbone.pooler.") for n, _ in model.named_parameters())


def test_auto_pooling_follows_the_body(tiny_bert_dir, tiny_llama_dir):
    """``auto``: mean_pooler on an encoder with a pooler, mean on one without, last on a decoder; explicit wins."""
    from tuneforge.models import load_backbone
    from tuneforge.tasks.classification.head import default_pooling

    bert = load_backbone(str(tiny_bert_dir))
    assert default_pooling("encoder", "auto", bert) == "mean_pooler"
    bert.pooler = None
    assert default_pooling("encoder", "auto", bert) == "mean"
    assert default_pooling("decoder", "auto", load_backbone(str(tiny_llama_dir))) == "last"
    assert default_pooling("encoder", "cls", load_backbone(str(tiny_bert_dir))) == "cls"


def test_majority_and_unseen_label_handling():
    t = make()
    train = [{"text": "x", "labels": ["a"]}] * 2 + [{"text": "y", "labels": ["b"]}]
    t.setup(train, None)
    test = [{"text": "z", "labels": ["a"]}, {"text": "w", "labels": ["zzz"]}]
    preds = t.baselines(["majority"], train, test, None)["majority"]
    m = t.metrics(preds, test)
    assert m["accuracy"] == 0.5  # the unseen label counts as an error, it is not dropped
    with pytest.raises(ValueError, match="unknown baseline"):
        t.baselines(["nope"], train, test, None)
