"""Relation extraction: SemEval reader, spans, marker insertion and positions, the official score, train → predict."""

from __future__ import annotations

import json
import random

import pytest

from tuneforge.config import DataConfig, HeadConfig, LossConfig, SpanConfig, config_from_dict
from tuneforge.data.readers import BadRows, DataError, read_file
from tuneforge.tasks.base import TaskContext
from tuneforge.tasks.relation import RelationTask
from tuneforge.tasks.relation import data as rdata
from tuneforge.tasks.relation.metrics import relation_metrics, semeval_scores, undirected

SEMEVAL = (
    '1\t"The system has an arrayed <e1>configuration</e1> of antenna <e2>elements</e2>."\r\n'
    "Component-Whole(e2,e1)\r\nComment: Not a collection.\r\n\r\n"
    '2\t"The <e1>child</e1> was wrapped into the <e2>cradle</e2>."\r\nOther\r\nComment:\r\n\r\n'
)


def make(max_length: int = 32) -> RelationTask:
    return RelationTask(TaskContext(DataConfig(max_length=max_length), HeadConfig(), LossConfig(), span=SpanConfig()))


def test_semeval_reader_and_tag_stripping(tmp_path):
    path = tmp_path / "TRAIN_FILE.TXT"
    path.write_bytes(SEMEVAL.encode())
    records = read_file(path, "semeval")
    assert [(r["id"], r["relation"]) for r in records] == [("1", "Component-Whole(e2,e1)"), ("2", "Other")]
    assert records[1]["_loc"].endswith("TRAIN_FILE.TXT:5")
    ex = make().parse(records, BadRows())[0]
    assert ex["text"] == "The system has an arrayed configuration of antenna elements."
    assert ex["text"][slice(*ex["head"])] == "configuration"
    assert ex["text"][slice(*ex["tail"])] == "elements"


def test_semeval_missing_label_names_the_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text('7\t"a <e1>b</e1> <e2>c</e2>"\n\n8\t"x <e1>y</e1> <e2>z</e2>"\nOther\n')
    with pytest.raises(DataError, match=r"t.txt:2.*no relation label after sentence 7"):
        read_file(path, "semeval")


def test_jsonl_spans_and_their_errors():
    task = make()
    ex = task.parse([{"text": "john works at google", "head": {"start": 0, "end": 4}, "tail": [14, 20],
                      "relation": "employee_of", "_loc": "r.jsonl:1"}], BadRows())[0]
    assert (ex["head"], ex["tail"], ex["relation"]) == ((0, 4), (14, 20), "employee_of")
    cases = [
        ({"text": "john works", "head": [0, 4], "tail": [5, 30], "relation": "x"}, r"r.jsonl:9.*'tail'.*outside"),
        ({"text": "john works", "head": [0, 4], "tail": [2, 8], "relation": "x"}, "overlap"),
        ({"text": "john works", "head": {"start": 0, "end": 4, "text": "mary"}, "tail": [5, 10], "relation": "x"},
         "does not match"),
        ({"text": "john works", "head": [0, 4], "tail": [5, 10]}, r"'label'.*missing"),
        ({"text": "<e1>john</e1> works"}, "exactly once"),
        ({"text": "<e1>john <e2>works</e1> here</e2>", "relation": "x"}, "nested or crossed"),
    ]
    for rec, pattern in cases:
        with pytest.raises(DataError, match=pattern):
            task.parse([{**rec, "_loc": "r.jsonl:9"}], BadRows())


def test_marker_insertion_and_positions(tiny_bert_dir):
    from transformers import AutoTokenizer

    assert rdata.mark("mary works at apple", (14, 19), (0, 4)) == "[E2] mary [/E2] works at [E1] apple [/E1]"
    task = make()
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    n = len(tok)
    task.setup([{"relation": "a"}, {"relation": "b"}], tok)
    assert len(tok) == n + 4  # the four markers, added as special tokens
    ex = task.parse_input("the <e1>card</e1> has <e2>money</e2>")
    feat = task.encode(ex)
    pieces = tok.convert_ids_to_tokens(feat["input_ids"])
    assert pieces == ["[CLS]", "the", "[E1]", "card", "[/E1]", "has", "[E2]", "money", "[/E2]", "[SEP]"]
    assert (feat["e1_pos"], feat["e2_pos"]) == (2, 6)
    task.setup([{"relation": "a"}], tok)
    assert len(tok) == n + 4  # adding them again changes nothing


def test_long_inputs_are_cropped_around_the_markers(tiny_bert_dir):
    from transformers import AutoTokenizer

    task = make(max_length=12)
    task.setup([{"relation": "a"}], AutoTokenizer.from_pretrained(tiny_bert_dir))
    text = "the " * 20 + "<e1>card</e1> has <e2>money</e2>" + " the" * 20
    feat = task.encode(task.parse_input(text))
    pieces = task.tokenizer.convert_ids_to_tokens(feat["input_ids"])
    assert len(pieces) == 12 and pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    assert pieces[feat["e1_pos"]] == "[E1]" and pieces[feat["e2_pos"]] == "[E2]"


def test_build_model_resizes_embeddings_and_pools_marker_starts(tiny_bert_dir):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tuneforge.tasks.relation.head import marker_states

    task = make()
    task.setup([{"relation": "a"}, {"relation": "b"}], AutoTokenizer.from_pretrained(tiny_bert_dir))
    model = task.build_model(AutoModel.from_pretrained(tiny_bert_dir))
    assert model.backbone.get_input_embeddings().num_embeddings == len(task.tokenizer)
    batch = task.collate([task.encode(task.parse_input("the <e1>card</e1> has <e2>money</e2>"))])
    assert model(**{k: v for k, v in batch.items() if k != "labels"})["logits"].shape == (1, 2)
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float).view(2, 3, 2)  # (B=2, T=3, H=2)
    pooled = marker_states(hidden, torch.tensor([0, 2]), torch.tensor([1, 0]))
    assert pooled.tolist() == [[0, 1, 2, 3], [10, 11, 6, 7]]


def test_semeval_official_score_matches_hand_computation():
    gold = ["Cause-Effect(e1,e2)", "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Message-Topic(e1,e2)",
            "Other", "Other"]
    pred = ["Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Cause-Effect(e2,e1)", "Other",
            "Message-Topic(e1,e2)", "Other"]
    m = relation_metrics(pred, gold)
    # Cause-Effect: 2 right; proposed 2 + 1 wrong direction → P = 2/3, R = 2/3. Message-Topic: P = 0/1, R = 0/1.
    assert m["per_class"]["Cause-Effect"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["Cause-Effect"]["recall"] == pytest.approx(2 / 3)
    assert m["per_class"]["Message-Topic"]["f1"] == 0.0
    assert m["semeval_macro_f1"] == pytest.approx((2 / 3 + 0) / 2)  # Other is left out
    assert m["semeval_micro_f1"] == pytest.approx(0.5)  # 2 right of 4 proposed, of 4 gold
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert undirected("Cause-Effect(e2,e1)") == "Cause-Effect" and undirected("Other") == "Other"


def test_semeval_score_ignores_relations_absent_from_gold():
    # the scorer averages over the relations in the key; a relation only predicted adds nothing
    assert semeval_scores(["Cause-Effect(e1,e2)", "Entity-Origin(e1,e2)"],
                          ["Cause-Effect(e1,e2)", "Other"])["semeval_macro_f1"] == pytest.approx(1.0)
    assert semeval_scores(["Other"], ["Cause-Effect(e1,e2)"])["semeval_macro_f1"] == 0.0


# ---------------- train → report → predict on a tiny random BERT ----------------
TEMPLATES = [  # (sentence with slots, relation); direction depends on which marker sits where
    ("<e1>{p}</e1> works at <e2>{o}</e2>", "Member-Collection(e1,e2)"),
    ("<e1>{o}</e1> has <e2>{p}</e2>", "Member-Collection(e2,e1)"),
    ("<e1>{p}</e1> was born in <e2>{c}</e2>", "Entity-Origin(e1,e2)"),
    ("<e1>{p}</e1> and <e2>{p2}</e2>", "Other"),
]


def write_toy_semeval(path, n, seed):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        template, label = TEMPLATES[i % len(TEMPLATES)]
        text = template.format(p=rng.choice(["john", "mary"]), p2=rng.choice(["john", "mary"]),
                               o=rng.choice(["google", "apple"]), c=rng.choice(["paris", "london"]))
        rows.append(f'{i + 1}\t"{text}"\r\n{label}\r\nComment:\r\n\r\n')
    path.write_bytes("".join(rows).encode())


def test_train_report_predict(tiny_bert_dir, tmp_path):
    from tuneforge.inference.predictor import Predictor
    from tuneforge.runner import train

    write_toy_semeval(tmp_path / "train.txt", 96, 0)
    write_toy_semeval(tmp_path / "test.txt", 24, 1)
    cfg = config_from_dict({
        "model": str(tiny_bert_dir), "task": "relation", "output_dir": str(tmp_path / "run"), "seed": 1,
        "data": {"train": str(tmp_path / "train.txt"), "test": str(tmp_path / "test.txt"), "format": "semeval",
                 "max_length": 24, "split": {"validation": 0.25}},
        "train": {"epochs": 8, "batch_size": 8, "lr": 5e-3, "progress": False, "precision": "fp32"},
        "eval": {"baselines": ["majority"]},
    })
    result = train(cfg)
    report = json.loads((result.run_dir / "report.json").read_text())
    test = report["metrics"]["test"]
    assert {"semeval_macro_f1", "accuracy"} <= set(test)
    assert test["semeval_macro_f1"] > report["baselines"]["majority"]["semeval_macro_f1"]
    assert test["accuracy"] > 0.9
    tok = json.loads((result.run_dir / "tokenizer" / "tokenizer.json").read_text())
    assert {"[E1]", "[E2]"} <= {t["content"] for t in tok["added_tokens"]}  # saved with the run
    pred = Predictor.from_run_dir(result.run_dir).predict(["<e1>apple</e1> has <e2>mary</e2>"])[0]
    assert pred["relation"] == "Member-Collection(e2,e1)"
    assert pred["head"] == {"text": "apple", "start": 0, "end": 5}


@pytest.mark.shared
def test_real_semeval_files_parse_with_19_labels():
    from tests.conftest import shared_dataset

    folder = shared_dataset("semeval2010_task8")
    task = make()
    train = task.parse(read_file(folder / "SemEval2010_task8_training" / "TRAIN_FILE.TXT", "semeval"), BadRows())
    test = task.parse(read_file(folder / "SemEval2010_task8_testing_keys" / "TEST_FILE_FULL.TXT", "semeval"),
                      BadRows())
    assert (len(train), len(test)) == (8000, 2717)
    assert len({ex["relation"] for ex in train}) == 19
    assert test[0]["text"][slice(*test[0]["head"])] == "audits"


def test_crash_then_resume_matches_an_uninterrupted_run(tiny_bert_dir, tmp_path, monkeypatch):
    """A crash mid-epoch (step 8 of 5-batch epochs), then resume: the resized marker embeddings, the head, the data
    order and the dropout RNG all come back, so the final weights equal an uninterrupted run's."""
    from safetensors.torch import load_file

    from tuneforge.runner import train
    from tuneforge.training import checkpoint

    write_toy_semeval(tmp_path / "train.txt", 64, 0)

    def cfg(out: str, resume: bool = False):
        return config_from_dict({
            "model": str(tiny_bert_dir), "task": "relation", "output_dir": str(tmp_path / out), "seed": 3,
            "data": {"train": str(tmp_path / "train.txt"), "format": "semeval", "max_length": 24,
                     "split": {"validation": 0.2, "test": 0.2}},
            "train": {"epochs": 3, "batch_size": 8, "lr": 5e-3, "progress": False, "precision": "fp32",
                      "eval_every": 4, "resume": resume, "early_stopping": {"patience": None}},
            "eval": {"baselines": []},
        })

    train(cfg("straight"))
    save = checkpoint.save_checkpoint

    def crash_after_step_8(path, *args, **kwargs):
        save(path, *args, **kwargs)
        if path.name == "step-8":
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(checkpoint, "save_checkpoint", crash_after_step_8)
    with pytest.raises(KeyboardInterrupt):
        train(cfg("broken"))
    monkeypatch.setattr(checkpoint, "save_checkpoint", save)
    train(cfg("broken", resume=True))
    # the last step's weights: a resume that only matched up to the best checkpoint would not pass
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "step-15" / "model.safetensors"))
    b = load_file(str(tmp_path / "broken" / "checkpoints" / "step-15" / "model.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


def test_marker_rows_are_the_same_every_time_the_model_is_built(tiny_bert_dir):
    """Frozen (head_only, PEFT) embeddings are not checkpointed, so serving must rebuild identical marker rows."""
    import torch
    from transformers import AutoModel

    from tuneforge.tasks.relation.head import add_marker_embeddings

    rows = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        backbone = AutoModel.from_pretrained(tiny_bert_dir)
        n = backbone.get_input_embeddings().num_embeddings
        add_marker_embeddings(backbone, n + 4)
        rows.append(backbone.get_input_embeddings().weight[n:].detach().clone())
    assert torch.equal(rows[0], rows[1]) and rows[0].shape == (4, 32)
    assert len({tuple(r.tolist()) for r in rows[0]}) == 4  # four distinct markers
