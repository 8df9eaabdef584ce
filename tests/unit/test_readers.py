"""Readers: every malformed input gets an error naming file, line and field; skip mode counts the rows."""

from __future__ import annotations

import pytest

from tuneforge.config import DataConfig, HeadConfig, LossConfig
from tuneforge.data.readers import BadRows, DataError, ReadOptions, read_file
from tuneforge.tasks.base import TaskContext
from tuneforge.tasks.classification import ClassificationTask


def task(**data) -> ClassificationTask:
    return ClassificationTask(TaskContext(DataConfig(**data), HeadConfig(), LossConfig()))


def parse(path, fmt="auto", skip=False, **data):
    bad = BadRows(skip=skip)
    t = task(**data)
    opts = ReadOptions(encoding=data.get("encoding", "utf-8"), text_column=t.text_col, label_column=t.label_col)
    return t.parse(read_file(path, fmt, opts, bad), bad), bad


def test_csv_tsv_json_jsonl_roundtrip(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n"hello, world",pos\nbad day,neg\n')
    (tmp_path / "a.tsv").write_text("text\tlabel\nhello world\tpos\n")
    (tmp_path / "a.json").write_text('[{"text": "x", "label": "pos"}]')
    (tmp_path / "a.jsonl").write_text('{"text": "x", "label": "pos"}\n\n{"text": "y", "label": "neg"}\n')
    assert [e["text"] for e in parse(tmp_path / "a.csv")[0]] == ["hello, world", "bad day"]
    assert parse(tmp_path / "a.tsv")[0][0]["labels"] == ["pos"]
    assert parse(tmp_path / "a.json")[0][0]["text"] == "x"
    exs = parse(tmp_path / "a.jsonl")[0]
    assert [e["_loc"].rsplit(":", 1)[1] for e in exs] == ["1", "3"]


def test_missing_column_names_file_line_field(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("sentence,label\nhi,pos\n")
    with pytest.raises(DataError) as e:
        parse(p)
    assert str(p) in str(e.value) and ":2" in str(e.value) and "'text'" in str(e.value)
    assert e.value.field == "text" and e.value.line == "2"


def test_empty_text_and_empty_label(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text,label\nfine,pos\n   ,neg\n")
    with pytest.raises(DataError, match=r"t.csv:3 \[field 'text'\]: empty text"):
        parse(p)
    p.write_text("text,label\nfine,\n")
    with pytest.raises(DataError, match=r"t.csv:2 \[field 'label'\]: empty label"):
        parse(p)


def test_bad_encoding_names_line(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes("text,label\nok,pos\ncaf\xe9,neg\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"t.csv:3: cannot decode byte 0xe9 as utf-8"):
        parse(p)
    exs, _ = parse(p, encoding="latin-1")
    assert exs[1]["text"] == "café"


def test_unparseable_jsonl_line(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    with pytest.raises(DataError, match=r"t.jsonl:2: unparseable JSON"):
        parse(p)


def test_jsonl_non_object_and_json_file_errors(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('["a", "b"]\n')
    with pytest.raises(DataError, match=r"t.jsonl:1: expected a JSON object"):
        parse(p)
    q = tmp_path / "t.json"
    q.write_text('[{"text": "a", "label": "x"},\n {"text": }]')
    with pytest.raises(DataError, match=r"t.json:2: unparseable JSON"):
        parse(q)


def test_csv_row_with_wrong_field_count(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text,label\nfine,pos\nextra,field,here\n")
    with pytest.raises(DataError, match=r"t.csv:3: expected 2 fields \(text, label\), found 3"):
        parse(p)


def test_csv_unparseable_quote(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text('text,label\n"unterminated "quote" here,pos\n')
    with pytest.raises(DataError, match=r"t.csv:2: unparseable row"):
        parse(p)


def test_lines_format_missing_delimiter(tmp_path):
    p = tmp_path / "fpb.txt"
    p.write_text("profit rose@positive\n1\nsales fell@negative\n")
    with pytest.raises(DataError, match=r"fpb.txt:2 \[field 'label'\]: no '@'"):
        parse(p, fmt="lines")


def test_skip_bad_rows_counts_every_reason(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text,label\nfine,pos\n,neg\nextra,field,here\nok,\ngood,neg\n")
    exs, bad = parse(p, skip=True)
    assert [e["text"] for e in exs] == ["fine", "good"]
    assert [r["line"] for r in bad.rows] == [4, "3", "5"]  # reader errors first, then field checks
    assert all("t.csv" in r["reason"] for r in bad.rows)


def test_single_label_cell_with_delimiter_is_rejected_unless_multi_label(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"text": "a", "label": ["x", "y"]}\n')
    with pytest.raises(DataError, match="2 labels in a single-label task"):
        parse(p)
    exs, _ = parse(p, multi_label=True)
    assert exs[0]["labels"] == ["x", "y"]
    q = tmp_path / "m.csv"
    q.write_text("text,label\na,x|y\n")
    assert parse(q, multi_label=True, label_delimiter="|")[0][0]["labels"] == ["x", "y"]


def test_unknown_extension_and_missing_file(tmp_path):
    p = tmp_path / "t.xyz"
    p.write_text("x")
    with pytest.raises(DataError, match="cannot tell the format"):
        parse(p)
    with pytest.raises(DataError, match="file not found"):
        parse(tmp_path / "nope.csv")


@pytest.mark.parametrize("labels,msg", [
    ([1, "1", 0], r"m.jsonl:2 \[field 'label'\]: label '1' is a string but .*m.jsonl:1 has the integer 1"),
    ([True, False], r"m.jsonl:1 \[field 'label'\]: label True is a boolean"),
    (["a", float("nan")], r"m.jsonl:2 \[field 'label'\]: label nan is not a finite number"),
    ([1, 2.5], r"m.jsonl:2 \[field 'label'\]: label 2.5 is a number but .* has the integer 1"),
    (["a", {"x": 1}], r"m.jsonl:2 \[field 'label'\]: a label must be a string or a number, got dict"),
])
def test_label_values_are_never_silently_coerced(tmp_path, labels, msg):
    import json

    p = tmp_path / "m.jsonl"
    p.write_text("".join(json.dumps({"text": f"t{i}", "label": lab}) + "\n" for i, lab in enumerate(labels)))
    with pytest.raises(DataError, match=msg):
        parse(p)


def test_labels_of_one_kind_load(tmp_path):
    p = tmp_path / "ints.jsonl"
    p.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n')
    assert [e["labels"] for e in parse(p)[0]] == [["1"], ["0"]]
    q = tmp_path / "multi.jsonl"
    q.write_text('{"text": "a", "label": ["x", "y"]}\n{"text": "b", "label": ["x", 3]}\n')
    with pytest.raises(DataError, match=r"multi.jsonl:2 \[field 'label'\]: label 3 is an integer"):
        parse(q, multi_label=True)


def test_nul_bytes_are_errors_with_line_and_field(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes(b"text,label\nfine,pos\nbro\x00ken,neg\n")
    with pytest.raises(DataError, match=r"t.csv:3: NUL byte at column 4: .*set data.encoding"):
        parse(p)
    utf16 = tmp_path / "u.csv"  # UTF-16 read as UTF-8 is full of NULs: the message points at data.encoding
    utf16.write_bytes("text,label\nhi,pos\n".encode("utf-16-le"))
    with pytest.raises(DataError, match="UTF-16"):
        parse(utf16)
    assert parse(utf16, encoding="utf-16-le")[0][0]["text"] == "hi"
    q = tmp_path / "t.jsonl"  # an escaped \u0000 survives decoding: caught per field
    q.write_text('{"text": "ok", "label": "a"}\n{"text": "x\\u0000y", "label": "b"}\n')
    with pytest.raises(DataError, match=r"t.jsonl:2 \[field 'text'\]: NUL character at position 1"):
        parse(q)


def test_csv_fields_above_the_default_limit_are_read_whole(tmp_path):
    import csv

    big = "word " * 60_000  # 300 KB, over the csv module's 128 KiB default
    p = tmp_path / "big.csv"
    p.write_text(f"text,label\n{big},pos\nshort,neg\n")
    before = csv.field_size_limit()
    exs, _ = parse(p)
    assert len(exs[0]["text"]) == len(big.strip()) and exs[1]["text"] == "short"
    assert csv.field_size_limit() == before  # the process-wide limit is restored


@pytest.mark.parametrize("name", ["train.conll", "wnut.iob", "data.bio", "x.IOB2", "sentences.txt"])
def test_auto_format_recognises_conll_for_ner(tmp_path, name):
    from tuneforge.data.readers import detect_format

    p = tmp_path / name
    p.write_text("-DOCSTART- O\n\nEU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\n")
    assert detect_format(p, task="ner") == "conll"
    recs = read_file(p, "auto", ReadOptions(task="ner"))
    assert [r["tags"] for r in recs] == [["B-ORG", "O"], ["B-PER"]]


def test_txt_stays_lines_unless_ner_and_conll_shaped(tmp_path):
    from tuneforge.data.readers import detect_format

    p = tmp_path / "fpb.txt"
    p.write_text("profit rose@positive\nsales fell@negative\n")
    assert detect_format(p, task="ner") == "lines"  # not token/tag columns
    q = tmp_path / "c.txt"
    q.write_text("EU B-ORG\nrejects O\n")
    assert detect_format(q, task="classification") == "lines"
    assert detect_format(q, task="ner") == "conll"


def test_unknown_encoding_and_deep_json_are_data_errors(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text,label\na,b\n")
    with pytest.raises(DataError, match="unknown encoding 'nope'"):
        read_file(p, "csv", ReadOptions(encoding="nope"))
    q = tmp_path / "deep.json"
    q.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match="deep.json: unparseable JSON: JSON nested too deeply"):
        read_file(q)
    r = tmp_path / "long.jsonl"
    r.write_text('{"text": "a", "label": ' + "9" * 5000 + "}\n")
    with pytest.raises(DataError, match=r"long.jsonl:1: unparseable JSON"):
        read_file(r)
