"""Property-based tests: whatever the bytes of a data file or the text of a config override, TuneForge either loads
it or raises its own error (DataError, ConfigError) naming where; never a bare Python exception."""

from __future__ import annotations

import contextlib
import json
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import tuneforge.tasks  # noqa: F401  (registers every reader)
from tests.conftest import build_word_tokenizer
from tuneforge.config import ConfigError, RunConfig, config_from_dict, describe_fields
from tuneforge.data.readers import READERS, BadRows, DataError, ReadOptions, read_file
from tuneforge.models import ResolvedModel
from tuneforge.run import make_task

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# which tasks read the records of each format (json/jsonl records may be any task's)
TASKS_OF = {"csv": ["classification"], "tsv": ["classification"], "lines": ["classification"],
            "json": ["classification", "ner", "qa", "relation"], "jsonl": ["classification", "ner", "qa", "relation"],
            "conll": ["ner"], "squad": ["qa"], "semeval": ["relation"], "parallel": ["generation"],
            "parquet": ["classification"], "arrow": ["classification"]}
ALPHABET = string.ascii_letters + string.digits + " \t,;|@\"'{}[]:-_.\n\\" + "éß中\u00a0\u2028"


def _tasks():
    out = {}
    for name in ("classification", "ner", "qa", "relation", "generation"):
        cfg = config_from_dict({"task": name, "data": {"label_delimiter": "|", "max_length": 384}})
        kind = "decoder" if name == "generation" else "encoder"
        out[name] = make_task(cfg, ResolvedModel(name="none", path="none", kind=kind))
    return out


TASKS = _tasks()
TOKENIZER = build_word_tokenizer(Path(tempfile.mkdtemp(prefix="fuzz_tok")))


def _load(fmt: str, content: bytes, skip: bool, target: bytes | None = None) -> None:
    """Read ``content`` as ``fmt`` and parse it with every task that reads that format; only DataError may escape."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("train.en" if fmt == "parallel" else f"train.{fmt}")
        path.write_bytes(content)
        if target is not None:
            (Path(tmp) / "train.de").write_bytes(target)
        opts = ReadOptions(target_suffix="de" if fmt == "parallel" else None)
        for task_name in TASKS_OF.get(fmt, ["classification"]):
            bad = BadRows(skip=skip)
            task = TASKS[task_name]
            try:
                examples = task.parse(read_file(path, fmt, opts, bad), bad)
            except DataError as e:
                assert tmp in str(e) or "<" in str(e)  # the message says which file (or input)
                continue
            if examples and task_name != "generation":  # what parses, the task can set up on and encode
                task.setup(examples, TOKENIZER)
                for ex in examples[:10]:
                    task.encode(ex)


# ---------------- readers ----------------
def _delimited(delim: str):
    cell = st.text(alphabet=ALPHABET, max_size=12)
    row = st.lists(cell, min_size=1, max_size=4)
    return st.lists(row, max_size=8).map(lambda rows: "\n".join(delim.join(r) for r in [["text", "label"], *rows]))


_json_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(ALPHABET, max_size=10)
_json_value = st.recursive(_json_scalar, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.sampled_from(["text", "label", "tokens", "tags", "entities",
                                                              "question", "context", "answers", "answer_start",
                                                              "head", "tail", "relation", "data", "paragraphs",
                                                              "qas", "is_impossible", "start", "end"]) | st.text(
                                                                  max_size=5), inner, max_size=5), max_leaves=20)
_conll = st.lists(st.lists(st.sampled_from(["EU", "rejects", "O", "B-PER", "I-LOC", "-DOCSTART-", "B-", "x y",
                                            "\t", ""]), max_size=4).map(" ".join), max_size=12).map("\n".join)


@FUZZ
@given(fmt=st.sampled_from(sorted(READERS.names())), content=st.binary(max_size=400), skip=st.booleans(),
       target=st.binary(max_size=200))
def test_any_bytes_load_or_raise_a_data_error(fmt, content, skip, target):
    _load(fmt, content, skip, target if fmt == "parallel" else None)


@FUZZ
@given(fmt=st.sampled_from(sorted(READERS.names())), text=st.text(alphabet=ALPHABET, max_size=300),
       skip=st.booleans())
@example(fmt="json", text="[" * 5000, skip=False)  # nesting deeper than the recursion limit
@example(fmt="jsonl", text='{"text": "a", "label": ' + "9" * 5000 + "}", skip=False)  # an int too long to convert
@example(fmt="jsonl", text='{"text": "a\\ud800", "label": "x"}\n{"text": "b", "label": "y"}', skip=False)  # half a pair
@example(fmt="csv", text="text,label\n" + "x" * 200_000 + ",a\nb,c", skip=False)  # a field over csv's 128 KiB
def test_any_text_loads_or_raises_a_data_error(fmt, text, skip):
    _load(fmt, text.encode("utf-8"), skip, text.encode("utf-8") if fmt == "parallel" else None)


@FUZZ
@given(fmt=st.sampled_from(["csv", "tsv"]), skip=st.booleans(), data=st.data())
def test_delimited_files_load_or_raise_a_data_error(fmt, skip, data):
    text = data.draw(_delimited("," if fmt == "csv" else "\t"))
    _load(fmt, text.encode("utf-8"), skip)


@FUZZ
@given(value=_json_value, skip=st.booleans(), as_lines=st.booleans())
def test_json_shaped_records_load_or_raise_a_data_error(value, skip, as_lines):
    if as_lines:
        rows = value if isinstance(value, list) else [value]
        _load("jsonl", "\n".join(json.dumps(v) for v in rows).encode("utf-8"), skip)
    else:
        _load("json", json.dumps(value).encode("utf-8"), skip)
        _load("squad", json.dumps({"data": value if isinstance(value, list) else [value]}).encode("utf-8"), skip)


@FUZZ
@given(text=_conll, skip=st.booleans())
def test_conll_shaped_text_loads_or_raises_a_data_error(text, skip):
    _load("conll", text.encode("utf-8"), skip)


# ---------------- config ----------------
KEYS = [key for key, *_ in describe_fields(RunConfig)]
_yaml_value = (st.sampled_from(["0", "-1", "1e-5", "nan", "inf", "-inf", "null", "true", "[", "]", "{a: 1}", "[1, 2]",
                                "''", "1e999", "10" * 30, "yes", "~", "!!python/name:os.system", "&a", "*a", "%"])
               | st.text(alphabet=ALPHABET, max_size=12))


@FUZZ
@given(overrides=st.lists(st.tuples(st.sampled_from(KEYS) | st.text(ALPHABET, max_size=12), _yaml_value)
                          .map(lambda kv: f"{kv[0]}={kv[1]}"), max_size=4))
def test_any_override_loads_or_raises_a_config_error(overrides):
    try:
        cfg = config_from_dict({"data": {"train": "x.csv"}}, overrides)
    except ConfigError:
        return
    assert config_from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()  # what loads, saves and loads again


_section = st.sampled_from(["train", "data", "peft", "freeze", "span", "generation", "head", "loss", "eval",
                            "fewshot", "calibration", "data.split", "train.early_stopping"])


@FUZZ
@given(raw=st.dictionaries(st.sampled_from(KEYS + ["train", "data", "nope"]) | st.text(max_size=6), _json_value,
                           max_size=5))
def test_any_config_mapping_loads_or_raises_a_config_error(raw):
    nested: dict = {}
    for key, value in raw.items():  # dotted keys become nested sections, as in a YAML file
        *path, last = key.split(".") if key else [key]
        d = nested
        for part in path:
            d = d.setdefault(part, {}) if isinstance(d.get(part, {}), dict) else {}
        d[last] = value
    with contextlib.suppress(ConfigError):
        config_from_dict(nested)


def test_the_fuzz_covers_every_reader():
    assert set(READERS.names()) <= set(TASKS_OF)


@pytest.mark.parametrize("override", ["train.lr=!!python/name:os.system", "seed=!!python/object/apply:os.getpid []"])
def test_overrides_never_construct_python_objects(override):
    with pytest.raises(ConfigError):
        config_from_dict({}, [override])
