"""Extractive QA: SQuAD reading and checks, doc-stride windows, span decoding, official EM/F1, train → predict."""

from __future__ import annotations

import json
import random

import pytest
import torch

from tuneforge.config import DataConfig, HeadConfig, LossConfig, SpanConfig, config_from_dict
from tuneforge.data.readers import BadRows, DataError, read_file
from tuneforge.tasks.base import TaskContext
from tuneforge.tasks.qa import QaTask
from tuneforge.tasks.qa.decode import best_spans, decode_batch
from tuneforge.tasks.qa.metrics import normalize_answer, qa_metrics, score_one
from tuneforge.tasks.qa.task import overlap_sentence
from tuneforge.tasks.qa.windows import answer_tokens, encode_windows


def squad(paragraphs, version="1.1"):
    return {"version": version, "data": [{"title": "t", "paragraphs": paragraphs}]}


def make(max_length=40, **span) -> QaTask:
    span = {"doc_stride": 8, "max_question_length": 8, **span}
    return QaTask(TaskContext(DataConfig(max_length=max_length), HeadConfig(), LossConfig(), span=SpanConfig(**span)))


def test_squad_reader_v1_and_v2(tmp_path):
    path = tmp_path / "dev.json"
    ctx = "john works at google in paris."
    path.write_text(json.dumps(squad([{"context": ctx, "qas": [
        {"id": "q1", "question": "where does john work?", "answers": [{"text": "google", "answer_start": 14}]},
        {"id": "q2", "question": "who is mary?", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "john", "answer_start": 0}]},
    ]}], "v2.0")))
    records = read_file(path, "squad")
    assert records[1]["_loc"].endswith("dev.json:data[0].paragraphs[0].qas[1]")
    examples = make().parse(records, BadRows())
    assert examples[0]["answers"] == [{"text": "google", "start": 14}] and not examples[0]["is_impossible"]
    assert examples[1]["answers"] == [] and examples[1]["is_impossible"]


def test_answer_offset_errors_name_the_record(tmp_path):
    path = tmp_path / "bad.json"
    qas = [{"id": "q", "question": "where?", "answers": [{"text": "google", "answer_start": 3}]}]
    path.write_text(json.dumps(squad([{"context": "john works at google", "qas": qas}])))
    task = make()
    # the text occurs in the context: moved to its occurrence, and the repair names the record and field
    [ex] = task.parse(read_file(path, "squad"), BadRows())
    assert ex["answers"] == [{"text": "google", "start": 14}]
    assert ex["repairs"][0]["action"] == "moved to the occurrence at 14"
    assert "bad.json:data[0].paragraphs[0].qas[0]" in ex["repairs"][0]["reason"]
    qas[0]["answers"] = [{"text": "apple", "answer_start": 3}]  # nowhere in the context
    path.write_text(json.dumps(squad([{"context": "john works at google", "qas": qas}])))
    with pytest.raises(DataError, match=r"bad.json:data\[0\].paragraphs\[0\].qas\[0\].*answer_start.*does not match"):
        task.parse(read_file(path, "squad"), BadRows())
    rec = {"question": "q?", "context": "abc", "answers": [{"text": "abcd", "answer_start": 2}], "_loc": "f:x"}
    with pytest.raises(DataError, match="runs outside the context"):
        task.parse([rec], BadRows())
    with pytest.raises(DataError, match="is_impossible"):
        task.parse([{"question": "q?", "context": "abc", "answers": [], "_loc": "f:y"}], BadRows())


def test_answer_tokens_inside_and_outside_a_window():
    offsets = [None, None, None, (0, 4), (5, 10), (11, 13), (14, 20), None]
    assert answer_tokens(offsets, 5, 13) == (4, 5)
    assert answer_tokens(offsets, 14, 25) == (0, 0)  # runs past this window
    assert answer_tokens(offsets, 6, 9) == (4, 4)  # inside one token


def test_doc_stride_windows_overlap_and_map_back_to_the_context(tiny_bert_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    context = " ".join(["john works at google in paris and mary works at apple in london."] * 3)
    start = context.rindex("london")
    ex = {"question": "where does mary work?", "context": context, "answers": [{"text": "london", "start": start}]}
    feat = encode_windows(ex, tok, max_length=20, doc_stride=5, max_question_length=8)
    windows = feat["windows"]
    assert len(windows) > 3 and feat["length"] == 20
    spans = [[o for o in w["offsets"] if o is not None] for w in windows]
    for a, b in zip(spans, spans[1:]):
        assert a[-5:] == b[:5]  # consecutive windows share doc_stride context tokens
    assert spans[0][0][0] == 0 and spans[-1][-1][1] == len(context)
    hits = [w for w in windows if w["start"] > 0]
    assert hits and all(w["start"] == w["end"] for w in hits)  # "london" is one token
    w = hits[-1]
    assert context[w["offsets"][w["start"]][0]:w["offsets"][w["end"]][1]] == "london"
    assert all(w["start"] == 0 for w in windows if w not in hits)


def test_long_questions_are_cut(tiny_bert_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    ex = {"question": "who " * 30 + "?", "context": "john works at google.", "answers": []}
    feat = encode_windows(ex, tok, max_length=20, doc_stride=2, max_question_length=4)
    assert feat["windows"][0]["input_ids"][:6] == tok("who who who who")["input_ids"][:5] + [tok.sep_token_id]


def test_best_span_respects_order_context_and_max_length():
    start = torch.tensor([[0.0, 1.0, 5.0, 0.0, 0.0, 9.0]])
    end = torch.tensor([[0.0, 6.0, 0.0, 1.0, 4.0, 0.0]])
    context = torch.tensor([[False, True, True, True, True, False]])  # position 5 is not context
    score, s, e = best_spans(start, end, context, max_answer_length=3)
    # start 2 (5.0) with end 4 (4.0) is the best allowed: end 1 lies before start 2; token 5 is outside the context
    assert (int(s), int(e), float(score)) == (2, 4, 9.0)
    score, s, e = best_spans(start, end, context, max_answer_length=2)
    assert (int(s), int(e)) == (1, 1)  # 1+6=7 beats 2→3 (5+1=6) once spans of 3 tokens are not allowed


def test_decode_picks_the_best_window_and_handles_no_answer():
    offsets = [[None, (0, 4), (5, 9)], [None, (5, 9), (10, 14)]]
    start = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    end = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    out = decode_batch(start, end, offsets, owner=[0, 0], n_features=1, max_answer_length=5, allow_no_answer=False)
    assert (out[0]["start"], out[0]["end"], out[0]["score"]) == (10, 14, 6.0)
    null_start = torch.tensor([[9.0, 1.0, 0.0], [8.0, 0.0, 3.0]])
    out = decode_batch(null_start, end, offsets, [0, 0], 1, 5, allow_no_answer=True)
    assert out[0]["no_answer"] and out[0]["start"] is None  # min null (8 + 0) > best span (6)
    out = decode_batch(null_start, end, offsets, [0, 0], 1, 5, allow_no_answer=True, null_threshold=3.0)
    assert not out[0]["no_answer"]


def test_squad_normalisation_and_scores_match_the_official_script():
    assert normalize_answer("The Eiffel  Tower!") == "eiffel tower"
    assert normalize_answer("an apple, a day") == "apple day"
    assert score_one("the Eiffel Tower", ["Eiffel Tower", "Paris"]) == (1.0, 1.0)
    # "tower in paris" vs "Eiffel Tower": 1 shared token, P = 1/3, R = 1/2 → F1 = 0.4
    assert score_one("tower in paris", ["Eiffel Tower"]) == (0.0, pytest.approx(0.4))
    assert score_one("Paris", ["Eiffel Tower", "in Paris"]) == (0.0, pytest.approx(2 / 3))  # max over answers
    assert score_one("", []) == (1.0, 1.0) and score_one("x", []) == (0.0, 0.0)  # SQuAD v2.0 no-answer
    m = qa_metrics(["Paris", "the moon", ""], [["paris"], ["the sun"], []])
    assert m["exact_match"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)  # "moon" vs "sun" share nothing once "the" is dropped
    assert m["no_answer_count"] == 1 and m["has_answer_exact_match"] == pytest.approx(0.5)


def test_sentence_overlap_baseline():
    ctx = "Mary works at apple. John was born in Paris! It rains."
    a, b = overlap_sentence("where was john born?", ctx)
    assert ctx[a:b] == "John was born in Paris!"
    preds = make().baselines(["sentence_overlap", "zero_shot"], [], [{"question": "who works?", "context": ctx}],
                             None)
    assert preds == {"sentence_overlap": [{"start": 0, "end": 20, "no_answer": False}]}


# ---------------- train → report → predict on a tiny random BERT ----------------
FILLER = ["it is good .", "the movie was great .", "this is new .", "my card has not arrived ."]


def toy_squad(path, n, seed):
    """ "what company ?" over contexts whose filler sentences move the answer across windows. (Asking for the
    company or the city by turns is beyond what the random 32-wide model learns in a few steps.)"""
    rng = random.Random(seed)
    paragraphs = []
    for i in range(n):
        org, city = rng.choice(["google", "apple"]), rng.choice(["paris", "london"])
        before = " ".join(rng.sample(FILLER, rng.randrange(3)))
        after = " ".join(rng.sample(FILLER, rng.randrange(3)))
        context = f"{before} {rng.choice(['john', 'mary'])} works at {org} in {city} . {after}".strip()
        start = context.index(f" {org} ") + 1
        paragraphs.append({"context": context, "qas": [{"id": f"{seed}-{i}", "question": "what company ?",
                                                        "answers": [{"text": org, "answer_start": start}]}]})
    path.write_text(json.dumps(squad(paragraphs)))


def test_train_report_predict(tiny_bert_dir, tmp_path):
    from tuneforge.inference.predictor import Predictor
    from tuneforge.runner import train

    toy_squad(tmp_path / "train.json", 160, 0)
    toy_squad(tmp_path / "test.json", 30, 1)
    cfg = config_from_dict({
        "model": str(tiny_bert_dir), "task": "qa", "output_dir": str(tmp_path / "run"), "seed": 1,
        "data": {"train": str(tmp_path / "train.json"), "test": str(tmp_path / "test.json"), "format": "squad",
                 "max_length": 16, "split": {"validation": 0.2}},  # 16 tokens: most contexts need 2+ windows
        "span": {"doc_stride": 4, "max_question_length": 8, "max_answer_length": 4},
        "train": {"epochs": 8, "batch_size": 16, "lr": 5e-3, "progress": False, "precision": "fp32"},
        "eval": {"baselines": ["sentence_overlap"]},
    })
    result = train(cfg)
    report = json.loads((result.run_dir / "report.json").read_text())
    test = report["metrics"]["test"]
    assert {"exact_match", "f1"} <= set(test)
    assert test["f1"] > report["baselines"]["sentence_overlap"]["f1"]
    assert test["exact_match"] > 0.8
    context = "it is good . this is new . mary works at apple in london . the movie was great ."
    pred = Predictor.from_run_dir(result.run_dir).predict([{"question": "what company ?", "context": context}])[0]
    assert pred["answer"] == "apple" and (pred["start"], pred["end"]) == (41, 46)


@pytest.mark.shared
def test_real_squad_files_parse_without_offset_errors():
    from tests.conftest import shared_dataset

    task = make(max_length=384, doc_stride=128, max_question_length=64)
    xquad = task.parse(read_file(shared_dataset("squad_v1") / "xquad.en.json", "squad"), BadRows())
    wiki = task.parse(read_file(shared_dataset("squadshifts") / "new_wiki_v1.0.json", "squad"), BadRows())
    assert (len(xquad), len(wiki)) == (1190, 7938)
    assert sum(len(ex["answers"]) for ex in wiki) == 22794


def test_early_stopping_watches_f1(tiny_bert_dir, tmp_path):
    from tuneforge.runner import train

    toy_squad(tmp_path / "train.json", 40, 0)
    cfg = config_from_dict({
        "model": str(tiny_bert_dir), "task": "qa", "output_dir": str(tmp_path / "run"), "seed": 1,
        "data": {"train": str(tmp_path / "train.json"), "format": "squad", "max_length": 24,
                 "split": {"validation": 0.25, "test": 0.25}},
        "span": {"doc_stride": 4, "max_question_length": 8},
        "train": {"epochs": 6, "batch_size": 8, "lr": 1e-3, "progress": False, "precision": "fp32",
                  "early_stopping": {"patience": 1, "min_delta": 2.0}},  # F1 can never improve by 2: stop at once
        "eval": {"baselines": []},
    })
    report = train(cfg).report
    assert report["main_metric"] == "f1"
    assert report["training"]["stopped_early"] and report["training"]["steps"] == 2 * 3  # 2 epochs of 3 batches
    assert report["training"]["best_step"] == 3


@pytest.mark.shared
def test_real_xquad_answers_map_to_window_targets_with_minilm():
    """With the real tokenizer, the token targets of every XQuAD answer slice back to the answer text."""
    from tests.conftest import shared_dataset
    from tuneforge.models import ModelNotFoundError, load_tokenizer, minilm_path

    path = shared_dataset("squad_v1") / "xquad.en.json"
    try:
        tokenizer = load_tokenizer(str(minilm_path()))
    except ModelNotFoundError as e:
        pytest.skip(str(e))
    task = make(max_length=384, doc_stride=128, max_question_length=64)
    task.setup([], tokenizer)
    exact = targets = 0
    for ex in task.parse(read_file(path, "squad"), BadRows()):
        hits = [w for w in task.encode(ex)["windows"] if w["start"]]
        assert hits, ex["id"]  # every answer is whole in at least one window
        for w in hits:
            targets += 1
            exact += ex["context"][w["offsets"][w["start"]][0]:w["offsets"][w["end"]][1]] == ex["answers"][0]["text"]
    assert exact >= targets - 2  # one XQuAD answer ends inside a word piece ("(2,70" of "2,700")
