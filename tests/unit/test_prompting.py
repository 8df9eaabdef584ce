"""Prompt templates, verbalisers, k-shot draws, calibration, label-word scoring and ICL overflow, on tiny models."""

from __future__ import annotations

import random

import pytest
import torch

from tuneforge.config_typing import ConfigError
from tuneforge.prompting.shots import (
    contextual_calibration,
    draw_shots,
    order_demonstrations,
    select_demonstrations,
)
from tuneforge.prompting.templates import PromptSpec, conversation, load_prompt_file, plain_prompt


def _examples(n: int, labels=("a", "b", "c")) -> list[dict]:
    return [{"text": f"t{i}", "labels": [labels[i % len(labels)]], "_loc": f"f.csv:{i + 2}"} for i in range(n)]


# ---------------------------------------------------------------- templates
def test_defaults_come_from_label_names():
    spec = PromptSpec.from_labels(["card_arrival", "lost_card"])
    assert spec.verbaliser == {"card_arrival": ["card arrival"], "lost_card": ["lost card"]}
    assert spec.descriptions["lost_card"] == ["lost card"]
    assert spec.user_text({"text": "where is it"}) == (
        "Classify the text. Answer with one of: card arrival, lost card.\n\nwhere is it")


def test_description_template_and_missing_label_error():
    spec = PromptSpec.from_labels(["x_y"], description="About {word}.")
    assert spec.descriptions == {"x_y": ["About x y."]}
    with pytest.raises(ConfigError, match=r"fewshot.verbaliser: no entry for label\(s\) '1'"):
        PromptSpec.from_labels(["0", "1"], verbaliser={"0": ["bad"]})
    with pytest.raises(ConfigError, match="needs one or more non-empty strings"):
        PromptSpec.from_labels(["0"], verbaliser={"0": [""]})


def test_chat_rendering_with_demonstrations():
    spec = PromptSpec.from_labels(["0", "1"], instruction="Sentiment? {labels}", input="Review: {text}",
                                  verbaliser={"0": ["bad", "awful"], "1": "good"}, system_prompt="Be brief.")
    msgs = conversation(spec, {"text": "q"}, [({"text": "d1"}, "1"), ({"text": "d0"}, "0")])
    assert msgs == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Sentiment? bad, good\n\nReview: d1"},
        {"role": "assistant", "content": "good"},
        {"role": "user", "content": "Review: d0"},
        {"role": "assistant", "content": "bad"},
        {"role": "user", "content": "Review: q"},
    ]
    assert plain_prompt(spec, {"text": "q"}, [({"text": "d1"}, "1")]) == (
        "Sentiment? bad, good\n\nInput: Review: d1\nAnswer: good\n\nInput: Review: q\nAnswer:")


def test_prompt_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("instructions: hi\n")
    with pytest.raises(ConfigError, match=r"p.yaml: unknown key 'instructions'"):
        load_prompt_file(bad)


def test_shipped_prompt_files_load():
    from pathlib import Path

    from tuneforge.prompting.templates import prompt_spec

    root = Path(__file__).resolve().parents[2] / "configs" / "prompting"
    labels = {"sst2.yaml": ["0", "1"], "financial_sentiment.yaml": ["negative", "neutral", "positive"],
              "intents.yaml": ["card_arrival", "lost_or_stolen_card"],
              "topics.yaml": ["world", "sports", "business", "sci_tech"]}
    for name, labs in labels.items():
        section = type("F", (), {"prompt": str(root / name)})()
        spec = prompt_spec(section, labs)
        assert set(spec.verbaliser) == set(labs) and all(spec.descriptions[lab] for lab in labs)
        assert "{" not in spec.user_text({"text": "x"})


# ---------------------------------------------------------------- k-shot draws
def test_shots_are_stratified_seeded_and_recorded():
    train = _examples(60)
    key = lambda ex: ex["labels"][0]  # noqa: E731
    d1, d2 = draw_shots(train, 4, 7, key), draw_shots(train, 4, 7, key)
    assert d1.per_class == {"a": 4, "b": 4, "c": 4} and len(d1.examples) == 12
    assert d1.ids == d2.ids  # same seed, same draw
    assert d1.ids != draw_shots(train, 4, 8, key).ids
    assert d1.ids == [ex["_loc"] for ex in d1.examples]
    assert [train.index(ex) for ex in d1.examples] == sorted(train.index(ex) for ex in d1.examples)


def test_short_classes_are_reported():
    train = _examples(60)[:40] + [{"text": "z", "labels": ["rare"]}]
    d = draw_shots(train, 3, 0, lambda ex: ex["labels"][0])
    assert d.short_classes == {"rare": 1} and d.per_class["rare"] == 1 and "train[40]" in d.ids


def test_demonstration_selection_and_order():
    pool_labels = ["a", "b", "a", "b", "a"]
    sim = torch.tensor([0.1, 0.9, 0.8, 0.2, 0.5])
    near = select_demonstrations(pool_labels, ["a", "b"], 2, "nearest", random.Random(0), sim)
    assert near == [2, 4, 1, 3]
    assert order_demonstrations(near, "similar_last", random.Random(0), sim) == [3, 4, 2, 1]
    rand = select_demonstrations(pool_labels, ["a", "b"], 1, "random", random.Random(0))
    assert [pool_labels[i] for i in rand] == ["a", "b"]


def test_contextual_calibration_removes_label_bias():
    cf = torch.log(torch.tensor([0.8, 0.2]))
    raw = torch.log(torch.tensor([[0.7, 0.3], [0.9, 0.1]]))
    cal = contextual_calibration(raw, cf).exp()
    # p / p_cf renormalised: [0.875, 1.5] → [0.368, 0.632]; [1.125, 0.5] → [0.692, 0.308]
    assert torch.allclose(cal, torch.tensor([[0.875 / 2.375, 1.5 / 2.375], [1.125 / 1.625, 0.5 / 1.625]]),
                          atol=1e-5)


# ---------------------------------------------------------------- decoder scoring (tiny Llama)
def _tiny_lm(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def test_verbaliser_scoring_matches_hand_computed_loglikelihood(tiny_llama_dir):
    from tuneforge.prompting.zero_shot import continuation_logprobs, label_scores

    model, tok = _tiny_lm(tiny_llama_dir)
    # a shared prefix ("the movie") runs once from a cache; prompts of unequal length are right-padded
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in ("the movie was", "the movie it is good",
                                                                        "the movie")]
    cands = [tok("good", add_special_tokens=False)["input_ids"],
             tok("bad movie", add_special_tokens=False)["input_ids"]]
    got_sum = continuation_logprobs(model, prompts, cands, tok.pad_token_id, normalise=False, batch_size=1)
    got_mean = continuation_logprobs(model, prompts, cands, tok.pad_token_id, normalise=True)
    for i, p in enumerate(prompts):
        for j, c in enumerate(cands):
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([p + c])).logits[0].float(), -1)  # (T, V)
            total = sum(float(logp[len(p) - 1 + t, tok_id]) for t, tok_id in enumerate(c))
            assert got_sum[i, j] == pytest.approx(total, abs=1e-4)
            assert got_mean[i, j] == pytest.approx(total / len(c), abs=1e-4)
    assert label_scores(got_mean, [0, 1], 2).shape == (3, 2)


def test_icl_overflow_is_reported_not_cut(tiny_llama_dir):
    from tuneforge.prompting.icl import IclOptions, decoder_predict

    model, tok = _tiny_lm(tiny_llama_dir)
    spec = PromptSpec.from_labels(["positive", "negative"])
    pool = [{"text": ("good great love " * (3 + i)).strip(), "labels": ["positive" if i % 2 else "negative"],
             "_loc": f"train.csv:{i}"} for i in range(8)]
    test = [{"text": "good film", "labels": ["positive"], "_loc": "test.csv:2"},
            {"text": "bad " * 30, "labels": ["negative"], "_loc": "test.csv:3"}]
    free = decoder_predict(model, tok, spec, ["positive", "negative"], test, pool, IclOptions(k=2, seed=1))
    assert free.overflow == [] and len(free.demonstrations) == 4
    tight = decoder_predict(model, tok, spec, ["positive", "negative"], test, pool,
                            IclOptions(k=2, seed=1, max_tokens=int(free.mean_prompt_tokens)))
    assert tight.overflow and tight.overflow[0]["demonstrations_dropped"] >= 1
    assert {o["id"] for o in tight.overflow} <= {"test.csv:2", "test.csv:3"}
    assert torch.allclose(tight.log_probs.exp().sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match="test.csv:3: the prompt alone is"):
        decoder_predict(model, tok, spec, ["positive", "negative"], test, pool, IclOptions(k=2, max_tokens=60))


# ---------------------------------------------------------------- SetFit pairs
def test_contrastive_pairs_are_balanced_and_labelled():
    pytest.importorskip("setfit")
    from tuneforge.prompting.setfit import contrastive_pairs

    texts = ["g1", "g2", "g3", "b1", "b2", "b3"]
    labels = [1, 1, 1, 0, 0, 0]
    pairs = contrastive_pairs(texts, labels, iterations=2, seed=0)
    assert len(pairs) == 2 * 2 * len(texts)
    same = {t: lab for t, lab in zip(texts, labels)}
    for p in pairs:
        assert p["label"] == float(same[p["sentence_1"]] == same[p["sentence_2"]])
    assert sum(p["label"] == 1.0 for p in pairs) == sum(p["label"] == 0.0 for p in pairs)
    assert pairs == contrastive_pairs(texts, labels, iterations=2, seed=0)
