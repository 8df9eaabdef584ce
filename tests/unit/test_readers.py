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
