"""Generation data: every record shape, every reader error (file, line, problem), assistant-only masks, packing."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import build_word_tokenizer, shared_dataset
from tuneforge.config import ConfigError, DataConfig, HeadConfig, LossConfig, config_from_dict
from tuneforge.data.readers import BadRows, DataError, ReadOptions, read_file
from tuneforge.tasks.base import TaskContext
from tuneforge.tasks.generation import data as gdata
from tuneforge.tasks.generation.metrics import generation_metrics
from tuneforge.tasks.generation.task import GenerationTask


def task(schema: str = "auto", **gen) -> GenerationTask:
    cfg = config_from_dict({"task": "generation", "generation": {"schema": schema, **gen}})
    return GenerationTask(TaskContext(DataConfig(max_length=64), HeadConfig(), LossConfig(),
                                      generation=cfg.generation))


def parse(path, schema="auto", fmt="auto", skip=False, target_suffix=None):
    bad = BadRows(skip=skip)
    t = task(schema)
    return t.parse(read_file(path, fmt, ReadOptions(target_suffix=target_suffix), bad), bad), bad


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def chat_tok(tmp_path_factory):
    return build_word_tokenizer(tmp_path_factory.mktemp("chat_tok"), chat=True)


# ---------------- record shapes ----------------
def test_every_schema_becomes_a_conversation(tmp_path):
    rows = [
        {"instruction": "close my account", "input": "now", "output": "done"},
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}], "system": "be nice"},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                      {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]},
        {"prompt": "p", "completion": "c"},
        {"dialogue": "#Person1#: hi\r\n#Person2#: bye", "summary1": "s1", "summary2": "s2", "summary3": "s3"},
        {"source": "a dog", "target": "ein Hund", "source_lang": "en", "target_lang": "de"},
    ]
    exs, _ = parse(write_jsonl(tmp_path / "mixed.jsonl", rows))
    alpaca, share, msgs, pr, dsum, trans = exs
    assert alpaca["messages"] == [{"role": "user", "content": "close my account\n\nnow"},
                                  {"role": "assistant", "content": "done"}]
    assert share["messages"][0] == {"role": "system", "content": "be nice"}
    assert [m["role"] for m in msgs["messages"]] == ["user", "assistant", "user", "assistant"]
    assert msgs["references"] == ["d"] and pr["references"] == ["c"]
    assert dsum["references"] == ["s1", "s2", "s3"]  # DialogSum test: three references
    assert "#Person1#: hi\n#Person2#: bye" in dsum["messages"][0]["content"]  # \r\n normalised
    assert dsum["messages"][0]["content"].startswith("Summarize the following dialogue.")
    assert trans["messages"][0]["content"].startswith("Translate the following text from English to German.")


def test_system_prompt_and_instruction_options(tmp_path):
    t = task("summarization", instruction="TL;DR:", system_prompt="You summarise.")
    bad = BadRows()
    ex = t.parse(read_file(write_jsonl(tmp_path / "d.jsonl", [{"dialogue": "x", "summary": "y"}]), "auto",
                           ReadOptions(), bad), bad)[0]
    assert ex["messages"][0] == {"role": "system", "content": "You summarise."}
    assert ex["messages"][1]["content"] == "TL;DR:\n\nx"


@pytest.mark.parametrize(("row", "field", "message"), [
    ({"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]}, "messages[1].role",
     "unknown role 'tool'"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "  "}]}, "conversations[1].value",
     "empty assistant turn"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}]}, "messages[1].content",
     "empty assistant turn"),
    ({"messages": [{"role": "assistant", "content": "a"}]}, "messages", "must start with a user turn"),
    ({"messages": [{"role": "user", "content": "a"}]}, "messages[0]", "ends with a user turn"),
    ({"messages": "hello"}, "messages", "expected a list of turns"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"},
                   {"role": "assistant", "content": "b"}]}, "messages[1]", "system message may only come first"),
    ({"instruction": "do it", "input": "", "output": ""}, "output", "empty assistant turn"),
    ({"instruction": "", "output": "x"}, "instruction", "empty instruction"),
    ({"prompt": "p"}, "response", "missing assistant turn"),
    ({"dialogue": "", "summary": "s"}, "dialogue", "empty dialogue"),
    ({"dialogue": "d", "topic": "t"}, "summary", "missing summary"),
    ({"text": "what is this"}, None, "cannot tell the record shape"),
])
def test_record_errors_name_file_line_field(tmp_path, row, field, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "fine", "response": "ok"}, row])
    with pytest.raises(DataError) as e:
        parse(path)
    assert e.value.path == str(path) and e.value.line == "2" and e.value.field == field
    assert message in str(e.value) and f"{path}:2" in str(e.value)


def test_skip_bad_rows_counts_them(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "response": "b"},
                                              {"messages": [{"role": "robot", "content": "x"}]}])
    exs, bad = parse(path, skip=True)
    assert len(exs) == 1 and bad.rows[0]["line"] == "2" and "unknown role" in bad.rows[0]["reason"]


def test_unknown_schema_lists_known_ones():
    with pytest.raises(KeyError, match="known: alpaca, messages, prompt_response, sharegpt"):
        task("chatml")


def test_generation_config_is_checked():
    with pytest.raises(ConfigError, match="generation.num_beams"):
        config_from_dict({"generation": {"num_beams": 0}})
    with pytest.raises(ConfigError, match="generation.top_p"):
        config_from_dict({"generation": {"top_p": 1.5}})


# ---------------- parallel text ----------------
def test_parallel_files_pair_by_suffix_and_sibling(tmp_path):
    (tmp_path / "train.en").write_text("a dog\n\na cat\n")
    (tmp_path / "train.de").write_text("ein Hund\n\neine Katze\n")
    exs, _ = parse(tmp_path / "train.en", fmt="parallel", target_suffix="de")
    assert [e["references"] for e in exs] == [["ein Hund"], ["eine Katze"]]
    assert exs[1]["_loc"].endswith("train.en:3")
    assert len(parse(tmp_path / "train.en", fmt="parallel")[0]) == 2  # the only sibling is the target


def test_parallel_errors(tmp_path):
    (tmp_path / "train.en").write_text("a\nb\nc\n")
    (tmp_path / "train.de").write_text("x\ny\n")
    with pytest.raises(DataError, match=r"train.de:3: 2 lines, but train.en has 3: parallel files must align"):
        parse(tmp_path / "train.en", fmt="parallel", target_suffix="de")
    (tmp_path / "train.fr").write_text("x\ny\nz\n")
    with pytest.raises(DataError, match=r"candidates: train.de, train.fr\); set data.target_suffix"):
        parse(tmp_path / "train.en", fmt="parallel")
    with pytest.raises(DataError, match="train.cs.*not found"):
        parse(tmp_path / "train.en", fmt="parallel", target_suffix="cs")
    (tmp_path / "train.fr").write_text("x\n\nz\n")
    with pytest.raises(DataError, match=r"train.fr:2 \[field 'target'\]: empty line where train.en has text"):
        parse(tmp_path / "train.en", fmt="parallel", target_suffix="fr")


@pytest.mark.shared
def test_shared_datasets_read(tmp_path):
    dsum, _ = parse(shared_dataset("dialogsum") / "dialogsum.test.jsonl")
    assert len(dsum) == 500 and all(len(e["references"]) == 3 for e in dsum)
    samsum, _ = parse(shared_dataset("samsum") / "val.json")
    assert len(samsum) == 818 and "\r" not in samsum[0]["messages"][0]["content"]
    mt, _ = parse(shared_dataset("multi30k_en_de") / "val.en", fmt="parallel", target_suffix="de")
    assert len(mt) == 1014 and "German" in mt[0]["messages"][0]["content"]
    alpaca, _ = parse(shared_dataset("instruct_small") / "alpaca_tiny.json")
    assert len(alpaca) == 100


# ---------------- chat template encoding ----------------
def test_loss_mask_covers_every_assistant_turn_only(chat_tok):
    msgs = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "where is my card"},
            {"role": "assistant", "content": "not arrived"}, {"role": "user", "content": "why"},
            {"role": "assistant", "content": "pending transfer"}]
    f = gdata.encode_chat(chat_tok, msgs, 200)
    trained = [t for t, lab in zip(f["input_ids"], f["labels"]) if lab != gdata.IGNORE]
    assert chat_tok.decode(trained) == "not arrived <|im_end|> pending transfer <|im_end|>"
    assert all(lab in (gdata.IGNORE, t) for t, lab in zip(f["input_ids"], f["labels"]))
    # the prompt of the last answer is exactly what generation is given for that conversation
    prompt = chat_tok(gdata.render(chat_tok, msgs[:-1], True), add_special_tokens=False)["input_ids"]
    assert f["prompt_ids"] == prompt == f["input_ids"][:len(prompt)]
    # a prediction input (no answer) is all prompt, nothing to learn
    g = gdata.encode_chat(chat_tok, msgs[:2], 200)
    assert set(g["labels"]) == {gdata.IGNORE} and g["prompt_ids"] == g["input_ids"]


def test_truncation_is_flagged_and_reported_by_the_audit(chat_tok):
    msgs = [{"role": "user", "content": "the " * 50}, {"role": "assistant", "content": "good"}]
    f = gdata.encode_chat(chat_tok, msgs, 16)
    assert f["truncated"] and f["length"] == 16 and len(f["prompt_ids"]) == 16
    t = task()
    t.setup([], chat_tok)
    text_of, labels_of = t.audit_view()
    text = text_of({"messages": msgs})
    assert text.startswith("<|im_start|>user") and labels_of({"messages": msgs}) == []
    from tuneforge.data.audit import audit_splits

    def count(texts):
        return [len(chat_tok(x, add_special_tokens=False)["input_ids"]) for x in texts]

    report = audit_splits({"train": [{"messages": msgs}]}, text_of, labels_of, count, max_length=16)
    assert report["splits"]["train"]["truncated"]["count"] == 1
    assert any("truncated" in w for w in report["warnings"])


def test_stop_tokens_include_end_of_turn(chat_tok):
    assert chat_tok.convert_tokens_to_ids("<|im_end|>") in gdata.stop_token_ids(chat_tok)


def test_fallback_template_for_tokenizers_without_one(tmp_path):
    tok = build_word_tokenizer(tmp_path)
    tok.eos_token = "[SEP]"
    gdata.ensure_chat_template(tok)
    f = gdata.encode_chat(tok, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "good"}], 64)
    assert tok.decode([t for t, lab in zip(f["input_ids"], f["labels"]) if lab != -100]) == "good [SEP]"
    assert gdata.stop_token_ids(tok) == [tok.sep_token_id]


# ---------------- packing ----------------
def test_pack_rows_first_fit_decreasing():
    assert gdata.pack_rows([5, 3, 4, 2], 8) == [[0, 1], [2, 3]]
    assert gdata.pack_rows([9], 8) == [[0]]  # never splits an example


def test_packed_collate_keeps_masks_positions_and_prompts(chat_tok):
    convs = [[{"role": "user", "content": w}, {"role": "assistant", "content": "good"}] for w in ("a", "b c d", "e")]
    feats = [gdata.encode_chat(chat_tok, c, 64) for c in convs]
    b = gdata.collate(feats, chat_tok.pad_token_id, packing=True, max_length=64)
    assert b["input_ids"].shape[0] == 1 and b["prompt_ids"].shape[0] == 3
    seg, pos = b["segment_ids"][0], b["position_ids"][0]
    for i, f in enumerate(feats):
        where = (seg == i).nonzero().flatten()
        assert len(where) == f["length"] and pos[where].tolist() == list(range(f["length"]))
        assert b["target_ids"][0, where].tolist() == f["labels"]
    assert gdata.target_count(b) == sum(sum(lab != -100 for lab in f["labels"]) for f in feats)
    unpacked = gdata.collate(feats, chat_tok.pad_token_id)
    assert "segment_ids" not in unpacked and gdata.target_count(unpacked) == gdata.target_count(b)
    assert torch.equal(unpacked["prompt_ids"], b["prompt_ids"])


# ---------------- metrics ----------------
def test_metrics_with_several_references():
    m = generation_metrics(["the cat sat on the mat", "a dog"], [["a cat sat on the mat", "the cat sat on the mat"],
                                                                  ["the dog barked"]])
    assert m["exact_match"] == 0.5 and m["count"] == 2 and m["references_per_example"] == 1.5
    assert 0 < m["rougeL"] < 1 and 0 < m["bleu"] <= 100 and 0 < m["chrf"] <= 100
    single = generation_metrics(["the cat sat on the mat"], [["a cat sat on the mat"]])
    best = generation_metrics(["the cat sat on the mat"], [["a cat sat on the mat", "the cat sat on the mat"]])
    assert best["rougeL"] == 1.0 > single["rougeL"] and best["bleu"] == pytest.approx(100.0)
