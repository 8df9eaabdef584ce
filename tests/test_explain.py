"""Token attributions on a tiny random BERT classifier: IG against its definition, completeness, occlusion, the
word mapping and the highlighted HTML."""

import numpy as np
import pytest
import torch

pytest.importorskip("captum")

from tuneforge.explain.attribution import baseline_ids, integrated_gradients, occlusion, word_embeddings  # noqa: E402
from tuneforge.explain.classify import encode_with_words, explain_one, logit_target  # noqa: E402
from tuneforge.explain.render import highlight, page  # noqa: E402


@pytest.fixture(scope="module")
def classifier(tiny_bert_dir):
    from transformers import AutoModel, AutoTokenizer

    from tuneforge.tasks.classification.head import SequenceClassifier

    torch.manual_seed(0)
    model = SequenceClassifier(AutoModel.from_pretrained(tiny_bert_dir), 3, "mean", 0.0).eval()
    with torch.no_grad():  # a head with real weight, so logits vary with the input
        model.classifier.weight.normal_(0, 1.0)
    return model, AutoTokenizer.from_pretrained(tiny_bert_dir)


def _inputs(tok, text, pair=None):
    enc = encode_with_words(tok, text, pair, 64)
    ids = torch.tensor([enc["input_ids"]])
    return enc, ids, torch.tensor([enc["attention_mask"]]), torch.tensor([enc["token_type_ids"]])


def reference_ig(model, target, ids, mask, tti, base, n=256):
    """IG by its definition: (x - x') * the mean gradient along the straight path (midpoint rule, n points, all
    points in one batch)."""
    emb = word_embeddings(model)
    with torch.no_grad():
        x, b = emb(ids), emb(base)  # (1, T, H)
    alphas = ((torch.arange(n) + 0.5) / n).view(n, 1, 1)
    points = (b + alphas * (x - b)).requires_grad_()  # (n, T, H)
    handle = emb.register_forward_hook(lambda m, i, o: points)
    try:
        grads = torch.autograd.grad(target(ids.repeat(n, 1), mask.repeat(n, 1), tti.repeat(n, 1)).sum(), points)[0]
    finally:
        handle.remove()
    return ((x - b)[0] * grads.mean(0)).sum(-1)


def test_ig_matches_definition_and_is_complete(classifier):
    model, tok = classifier
    enc, ids, mask, tti = _inputs(tok, "my card has not arrived yet where is it")
    base = baseline_ids(ids, torch.tensor([enc["special"]]), tok.pad_token_id)
    assert base[0, 0] == ids[0, 0] and base[0, -1] == ids[0, -1] and (base[0, 1:-1] == tok.pad_token_id).all()
    target = logit_target(model, 1)
    ig = integrated_gradients(target, model, ids, mask, tti, base, steps=50)
    ref = reference_ig(model, target, ids, mask, tti, base)
    assert np.allclose(ig.token_attributions, ref.double().numpy(), atol=2e-3 * float(ref.abs().max()) + 1e-6)
    with torch.no_grad():
        diff = float(target(ids, mask, tti)[0] - target(base, mask, tti)[0])
    assert ig.difference == pytest.approx(diff, abs=1e-5)
    assert ig.completeness_error < 0.01
    assert ig.token_attributions[0] == 0.0  # [CLS] is the same in input and baseline


def test_occlusion_is_the_score_drop(classifier):
    model, tok = classifier
    enc, ids, mask, tti = _inputs(tok, "good movie")
    target = logit_target(model, 0)
    groups = [w["positions"] for w in enc["words"]]
    got = occlusion(target, ids, mask, tti, groups, tok.pad_token_id)
    occluded = ids.clone()
    occluded[0, groups[1]] = tok.pad_token_id
    with torch.no_grad():
        want = float(target(ids, mask, tti)[0] - target(occluded, mask, tti)[0])
    assert len(got) == 2 and got[1] == pytest.approx(want, abs=1e-5)


def test_explain_one_words_pairs_and_html(classifier):
    model, tok = classifier
    e = explain_one(model, tok, ["a", "b", "c"], "Lost card!", pair="pin change", label="b", steps=20)
    assert e["target"] == "b" and [w["text"] for w in e["words"]] == ["Lost", "card", "!", "pin", "change"]
    assert [w["sequence"] for w in e["words"]] == [0, 0, 0, 1, 1]
    ig = e["integrated_gradients"]
    assert ig["sum"] == pytest.approx(sum(w["ig"] for w in e["words"]), abs=1e-6)
    assert ig["relative_completeness_error"] < 0.01
    html = highlight(e)
    assert html.count('class="w"') == 5 and "Lost</span>" in html and "<b>|</b>" in html
    assert "Integrated Gradients" in page([e]) and "completeness error" in page([e])
    with pytest.raises(Exception, match="unknown label 'z'"):
        explain_one(model, tok, ["a", "b", "c"], "lost card", label="z")


def test_ner_entities_are_explained(tiny_bert_dir, tmp_path):
    from tests.tiny_tasks import TINY_TASKS
    from tuneforge.config import config_from_dict
    from tuneforge.explain import explain_inputs
    from tuneforge.run import prepare

    spec = TINY_TASKS["ner"](tmp_path)
    cfg = config_from_dict({"model": str(tiny_bert_dir), "task": "ner", "output_dir": str(tmp_path / "r"),
                            "data": spec.data, "eval": {"baselines": []}})
    prepared = prepare(cfg)
    model = prepared.build_model().model.eval()
    with torch.no_grad():  # every word tagged B-PER: each word is its own entity
        model.classifier.bias.zero_()
        model.classifier.bias[prepared.task.tags.index("B-PER")] = 10.0
    got = explain_inputs(model, prepared.task, ["john works at google"], steps=30)[0]
    assert got["tags"] == ["B-PER"] * 4 and [e["text"] for e in got["entities"]] == ["john", "works", "at", "google"]
    ent = got["entities"][3]
    assert (ent["start"], ent["end"], ent["label"]) == (14, 20, "PER") and len(ent["words"]) == 4
    assert ent["integrated_gradients"]["relative_completeness_error"] < 0.01
    assert "google: PER" in page([got])
