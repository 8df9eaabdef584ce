"""NER: CoNLL reading, IOB1 → BIO, character spans, subword alignment, strict entity metrics, train → predict."""

from __future__ import annotations

import json
import random

import pytest

from tuneforge.config import DataConfig, HeadConfig, LossConfig, SpanConfig, config_from_dict
from tuneforge.data.readers import BadRows, DataError, read_file
from tuneforge.tasks.base import TaskContext
from tuneforge.tasks.ner import NerTask
from tuneforge.tasks.ner import data as ndata
from tuneforge.tasks.ner.metrics import entity_metrics, entity_spans

CONLL = """-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
-DOCSTART- -X- O O
Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER
Mary NNP I-NP B-PER
. . O O

"""


def make(**span) -> NerTask:
    return NerTask(TaskContext(DataConfig(max_length=32), HeadConfig(), LossConfig(), span=SpanConfig(**span)))


def test_conll_reader_splits_on_docstart_anywhere_and_converts_iob1(tmp_path):
    path = tmp_path / "eng.train"
    path.write_text(CONLL)
    records = read_file(path, "conll")
    assert [r["tokens"] for r in records] == [["EU", "rejects", "German", "call"],
                                              ["Peter", "Blackburn", "Mary", "."]]
    assert records[1]["_loc"].endswith("eng.train:8")
    examples = make().parse(records, BadRows())
    assert examples[0]["tags"] == ["B-ORG", "O", "B-MISC", "O"]
    assert examples[1]["tags"] == ["B-PER", "I-PER", "B-PER", "O"]  # IOB1 B- marks the second, adjacent person
    assert examples[1]["text"] == "Peter Blackburn Mary ."
    assert examples[1]["offsets"][2] == (16, 20)


def test_iob1_to_bio_and_bio_passes_through():
    assert ndata.iob1_to_bio(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-ORG"]) == [
        "B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "B-ORG"]
    bio = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]
    assert ndata.iob1_to_bio(bio) == bio


def test_conll_column_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("EU NNP I-NP I-ORG\nrejects\n\nok NN I-NP O\n")
    with pytest.raises(DataError, match=r"bad.conll:2.*found 1"):
        read_file(path, "conll")
    bad = BadRows(skip=True)
    assert [r["tokens"] for r in read_file(path, "conll", bad=bad)] == [["ok"]]  # the whole broken sentence goes
    assert bad.rows[0]["line"] == 2


def test_misaligned_tokens_and_tags_and_bad_spans_are_data_errors():
    task = make()
    cases = [
        ({"tokens": ["a", "b"], "tags": ["O"], "_loc": "f.jsonl:3"}, r"f.jsonl:3.*'tags'.*2 tokens but 1 tags"),
        ({"tokens": ["a"], "tags": ["PER"], "_loc": "f.jsonl:4"}, r"f.jsonl:4.*not O, B-TYPE or I-TYPE"),
        ({"text": "john works", "entities": [{"start": 5, "end": 40, "label": "PER"}], "_loc": "f.jsonl:5"},
         r"f.jsonl:5.*entities\[0\].*outside the text"),
        ({"text": "john works", "entities": [{"start": 0, "end": 4, "label": "PER", "text": "mary"}],
          "_loc": "f.jsonl:6"}, r"does not match"),
        ({"text": "john works", "entities": [{"start": 0, "end": 4, "label": "PER"},
                                             {"start": 2, "end": 8, "label": "ORG"}], "_loc": "f.jsonl:7"}, "overlap"),
    ]
    for rec, pattern in cases:
        with pytest.raises(DataError, match=pattern):
            task.parse([rec], BadRows())


def test_character_spans_become_bio_words_even_inside_a_word():
    ex = ndata.parse_one({"text": "Mary moved to New-York.", "entities": [
        {"start": 0, "end": 4, "label": "PER"}, {"start": 14, "end": 22, "label": "LOC"}]}, "text")
    assert ex["tokens"] == ["Mary", "moved", "to", "New", "-", "York", "."]
    assert ex["tags"] == ["B-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC", "O"]


def test_first_subword_carries_the_label_and_the_rest_are_ignored(tiny_bert_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    ex = ndata.parse_one({"tokens": ["john", "zq", "paris"], "tags": ["I-PER", "O", "I-LOC"]}, "text")
    index = {"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4}
    feat = ndata.encode(ex, tok, index, 32, label_all_subwords=False)
    pieces = tok.convert_ids_to_tokens(feat["input_ids"])
    assert pieces == ["[CLS]", "john", "z", "##q", "paris", "[SEP]"]
    assert feat["labels"] == [-100, 1, 0, -100, 3, -100]
    assert feat["word_starts"] == [1, 2, 4]
    every = ndata.encode(ndata.parse_one({"tokens": ["zq"], "tags": ["B-PER"]}, "text"), tok, index, 32, True)
    assert every["labels"] == [-100, 1, 2, -100]  # the continuation gets I-PER
    cut = ndata.encode(ex, tok, index, 4, label_all_subwords=False)
    assert cut["word_starts"] == [1, 2, -1]  # "paris" fell past max_length


def test_entity_spans_are_strict_iob2():
    assert entity_spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]) == [(0, 2, "PER"), (4, 5, "LOC")]


def test_entity_metrics_match_hand_computation():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-PER"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "O", "B-LOC"]]
    # gold: PER(0-2) LOC(3) ORG(0) PER(2) = 4 ; pred: PER(0-1) LOC(3) ORG(0) LOC(2) = 4 ; correct: LOC(3), ORG(0)
    m = entity_metrics(gold, pred)
    assert (m["precision"], m["recall"], m["f1"]) == (pytest.approx(0.5), pytest.approx(0.5), pytest.approx(0.5))
    assert m["per_class"]["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert m["per_class"]["LOC"]["precision"] == pytest.approx(0.5)  # 1 of 2 predicted LOCs is right
    assert m["per_class"]["LOC"]["recall"] == pytest.approx(1.0)
    assert m["per_class"]["ORG"]["f1"] == pytest.approx(1.0)
    assert entity_metrics([["O"]], [["O"]])["f1"] == 0.0  # no entities anywhere: defined, not a crash


def test_prediction_spans_use_character_offsets():
    task = make()
    ex = task.parse_input("Mary works at Google, Paris")
    out = task.format_prediction(["B-PER", "O", "O", "B-ORG", "O", "B-LOC"], ex)
    assert out["entities"] == [{"text": "Mary", "label": "PER", "start": 0, "end": 4},
                               {"text": "Google", "label": "ORG", "start": 14, "end": 20},
                               {"text": "Paris", "label": "LOC", "start": 22, "end": 27}]


def test_most_frequent_tag_baseline():
    task = make()
    train = [{"tokens": ["paris", "x"], "tags": ["B-LOC", "O"]}, {"tokens": ["paris"], "tags": ["B-LOC"]},
             {"tokens": ["paris"], "tags": ["B-PER"]}]
    preds = task.baselines(["most_frequent_tag", "zero_shot"], train, [{"tokens": ["paris", "new"]}], None)
    assert preds == {"most_frequent_tag": [["B-LOC", "O"]]}


# ---------------- train → report → predict on a tiny random BERT ----------------
PEOPLE, PLACES = ["john", "mary"], ["paris", "london"]
ORGS = ["google", "apple"]


def write_toy_conll(path, n, seed):
    """Names are people before "works" and places after "in": the tag depends on the context."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        who, org, where = rng.choice(PEOPLE + PLACES), rng.choice(ORGS), rng.choice(PEOPLE + PLACES)
        rows = [(who, "I-PER"), ("works", "O"), ("at", "O"), (org, "I-ORG"), ("company", "I-ORG"), ("in", "O"),
                (where, "I-LOC")]
        lines += [f"{w} X X {t}" for w, t in rows] + [""]
    path.write_text("\n".join(lines) + "\n")


def test_train_report_predict(tiny_bert_dir, tmp_path):
    from tuneforge.inference.predictor import Predictor
    from tuneforge.runner import train

    for name, n, seed in (("train", 96, 0), ("dev", 24, 1), ("test", 24, 2)):
        write_toy_conll(tmp_path / f"{name}.txt", n, seed)
    cfg = config_from_dict({
        "model": str(tiny_bert_dir), "task": "ner", "output_dir": str(tmp_path / "run"), "seed": 1,
        "data": {"train": str(tmp_path / "train.txt"), "validation": str(tmp_path / "dev.txt"),
                 "test": str(tmp_path / "test.txt"), "format": "conll", "max_length": 32},
        "train": {"epochs": 5, "batch_size": 16, "lr": 5e-3, "progress": False, "precision": "fp32"},
        "eval": {"baselines": ["most_frequent_tag"]},
    })
    result = train(cfg)
    report = json.loads((result.run_dir / "report.json").read_text())
    test = report["metrics"]["test"]
    assert set(test) >= {"f1", "precision", "recall", "per_class"}
    assert test["f1"] > 0.9
    assert test["f1"] > report["baselines"]["most_frequent_tag"]["f1"]
    pred = Predictor.from_run_dir(result.run_dir).predict(["mary works at google company in london"])[0]
    assert pred["entities"] == [{"text": "mary", "label": "PER", "start": 0, "end": 4},
                                {"text": "google company", "label": "ORG", "start": 14, "end": 28},
                                {"text": "london", "label": "LOC", "start": 32, "end": 38}]


@pytest.mark.shared
def test_real_conll2003_reads_with_standard_counts():
    from tests.conftest import shared_dataset

    folder = shared_dataset("conll2003")
    task = make()
    examples = task.parse(read_file(folder / "eng.testb", "conll"), BadRows())
    assert len(examples) == 3453  # sentences in the standard CoNLL-2003 test set
    assert sum(len(ex["tokens"]) for ex in examples) == 46435
    tags = {t for ex in examples for t in ex["tags"]}
    assert tags == {"O"} | {f"{p}-{t}" for t in ("PER", "LOC", "ORG", "MISC") for p in "BI"}
    assert sum(len(entity_spans(ex["tags"])) for ex in examples) == 5648  # standard test-set entity count
