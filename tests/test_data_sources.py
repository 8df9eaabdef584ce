"""Data from the ecosystem: Parquet and Arrow files, ``save_to_disk`` folders, hub ids (offline: a clear error),
column renaming for every task, and the streamed (memory-mapped) encoding path. Every fixture is built here."""

from __future__ import annotations

import csv
import json

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from tuneforge.config import ConfigError, DataConfig, HeadConfig, LossConfig, config_from_dict, load_config  # noqa: E402
from tuneforge.data.columnar import open_columnar, parse_hub  # noqa: E402
from tuneforge.data.load import load_splits  # noqa: E402
from tuneforge.data.readers import BadRows, DataError, ReadOptions, read_file  # noqa: E402
from tuneforge.tasks.base import TaskContext  # noqa: E402
from tuneforge.tasks.classification.task import ClassificationTask  # noqa: E402
from tuneforge.tasks.generation.task import GenerationTask  # noqa: E402

ROWS = {"sentence": ["my card has not arrived", "where is my money", "the film was great", "terrible movie"],
        "label": ["card", "transfer", "positive", "negative"]}


def classification(**data) -> ClassificationTask:
    return ClassificationTask(TaskContext(DataConfig(**data), HeadConfig(), LossConfig()))


def generation(**data) -> GenerationTask:
    cfg = config_from_dict({"task": "generation"})
    return GenerationTask(TaskContext(DataConfig(max_length=64, **data), HeadConfig(), LossConfig(),
                                      generation=cfg.generation))


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    """A DatasetDict and a Dataset written by ``save_to_disk``, with ClassLabel columns (also a list of them)."""
    datasets = pytest.importorskip("datasets")
    root = tmp_path_factory.mktemp("hf")
    feats = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"]),
                               "tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER"]))})
    train = datasets.Dataset.from_dict({"text": ["good film", "bad film", "great", "awful"], "label": [1, 0, 1, 0],
                                        "tags": [[0, 1], [0, 0], [1], [0]]}, features=feats)
    dev = datasets.Dataset.from_dict({"text": ["fine"], "label": [1], "tags": [[1]]}, features=feats)
    test = datasets.Dataset.from_dict({"text": ["meh", "no label"], "label": [0, -1], "tags": [[0], [0]]},
                                      features=feats)
    datasets.DatasetDict({"train": train, "dev": dev, "test": test}).save_to_disk(str(root / "dd"))
    train.save_to_disk(str(root / "single"))
    train.to_parquet(str(root / "train.parquet"))
    return root


# ---------------- files ----------------
def test_parquet_file_reads_rows_with_their_row_number(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table(ROWS), path, row_group_size=2)  # two row groups: batches cross them
    recs = read_file(path)
    assert [r["sentence"] for r in recs] == ROWS["sentence"]
    assert recs[3]["_loc"] == f"{path}:row 3"
    assert read_file(path, "parquet") == recs  # data.format: parquet names it explicitly


def test_arrow_ipc_file_and_stream_are_both_read(tmp_path):
    table = pa.table(ROWS)
    with pa.ipc.new_file(str(tmp_path / "a.arrow"), table.schema) as w:
        w.write_table(table)
    with pa.ipc.new_stream(str(tmp_path / "b.arrow"), table.schema) as w:
        w.write_table(table)
    import pyarrow.feather as feather

    feather.write_feather(table, str(tmp_path / "c.feather"))
    for name in ("a.arrow", "b.arrow", "c.feather"):
        recs = read_file(tmp_path / name)
        assert [r["label"] for r in recs] == ROWS["label"], name
        assert recs[0]["_loc"].endswith(f"{name}:row 0")


def test_parquet_rows_are_parsed_with_errors_naming_row_and_field(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["ok", "also ok", ""], "label": ["a", "b", "a"]}), path)
    task = classification()
    with pytest.raises(DataError, match=r"t\.parquet:row 2 \[field 'text'\]"):
        task.parse(read_file(path), BadRows())
    bad = BadRows(skip=True)
    assert len(task.parse(read_file(path), bad)) == 2 and bad.rows[0]["line"] == "row 2"


@pytest.mark.parametrize("content, message", [(b"PAR1 not really", "not a readable Parquet file"),
                                              (b"hello", "not a readable Parquet file")])
def test_corrupt_parquet_is_a_data_error(tmp_path, content, message):
    path = tmp_path / "x.parquet"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_file(path)


def test_corrupt_arrow_is_a_data_error(tmp_path):
    path = tmp_path / "x.arrow"
    path.write_text("id,text\n1,a\n")
    with pytest.raises(DataError, match=r"x\.arrow: not an Arrow IPC file or stream"):
        read_file(path)


# ---------------- save_to_disk folders ----------------
def test_dataset_dict_folder_reads_the_split_named_like_the_field(hf_folders):
    folder = hf_folders / "dd"
    train = read_file(folder, role="train")
    assert [r["label"] for r in train] == ["pos", "neg", "pos", "neg"]  # ClassLabel ids → names
    assert train[0]["tags"] == ["O", "B-PER"]  # a list of ClassLabel ids too
    assert read_file(folder, role="validation")[0]["text"] == "fine"  # validation falls back to the `dev` split
    test = read_file(folder, role="test")
    assert test[1]["label"] is None  # datasets' -1: no label
    assert read_file(f"{folder}?split=dev")[0]["_loc"] == f"{folder / 'dev'}:row 0"


def test_single_dataset_folder_and_its_arrow_shard_and_parquet(hf_folders):
    single = read_file(hf_folders / "single")
    assert [r["text"] for r in single] == ["good film", "bad film", "great", "awful"]
    shard = next((hf_folders / "single").glob("*.arrow"))
    assert [r["label"] for r in read_file(shard)] == ["pos", "neg", "pos", "neg"]  # names from the schema metadata
    assert [r["label"] for r in read_file(hf_folders / "train.parquet")] == ["pos", "neg", "pos", "neg"]


@pytest.mark.parametrize("suffix, message", [
    ("dd?split=nope", "no split 'nope'; this dataset has train, dev, test"),
    ("dd?shard=1", "unknown option 'shard'"),
    ("single?split=train", "holds one Dataset, not a DatasetDict"),
    ("train.parquet?split=train", r"\?split= applies to save_to_disk folders"),
    ("missing.parquet", "file not found"),
])
def test_folder_and_option_errors(hf_folders, suffix, message):
    with pytest.raises(DataError, match=message):
        read_file(f"{hf_folders}/{suffix}", role="train")


def test_plain_folder_and_ambiguous_split_are_explained(hf_folders, tmp_path):
    with pytest.raises(DataError, match="save_to_disk"):
        read_file(tmp_path)
    with pytest.raises(DataError, match=r"holds the splits train, dev, test: name one with 'dd\?split=NAME'"):
        read_file(hf_folders / "dd")  # no role (tuneforge eval --data of a DatasetDict): ask


def test_config_loads_folders_relative_to_the_config_file(hf_folders, tiny_bert_dir):
    from tuneforge.run import prepare

    (hf_folders / "run.yaml").write_text(
        f"task: classification\nmodel: {tiny_bert_dir}\n"
        "data: {train: dd, validation: dd, test: 'dd?split=test', max_length: 16}\n")
    cfg = load_config(hf_folders / "run.yaml")
    assert cfg.data.test == f"{(hf_folders / 'dd').resolve()}?split=test"
    with pytest.raises(DataError, match=r"dd/test:row 1 \[field 'label'\]"):  # the unlabelled row, by its row
        prepare(cfg)
    cfg.data.skip_bad_rows = True
    p = prepare(cfg)
    assert {n: len(x) for n, x in p.splits.items()} == {"train": 4, "validation": 1, "test": 1}
    assert p.task.labels == ["neg", "pos"] and len(p.features["train"]) == 4


# ---------------- the hub ----------------
def test_hub_ids_parse_and_stay_unresolved():
    spec = parse_hub("hf://nyu-mll/glue?config=sst2&split=train&revision=main")
    assert (spec.name, spec.config, spec.split, spec.revision) == ("nyu-mll/glue", "sst2", "train", "main")
    cfg = config_from_dict({"data": {"train": "hf://nyu-mll/glue?config=sst2"}})
    from tuneforge.config import resolve_data_paths

    resolve_data_paths(cfg, __import__("pathlib").Path("/somewhere"))
    assert cfg.data.train == "hf://nyu-mll/glue?config=sst2"
    with pytest.raises(DataError, match="unknown option 'subset'; known: config, split, revision"):
        parse_hub("hf://nyu-mll/glue?subset=sst2")
    with pytest.raises(DataError, match="no dataset name"):
        parse_hub("hf://?split=train")


def test_hub_dataset_offline_is_a_clear_error(monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match=r"HF_HUB_OFFLINE is set and the dataset is not in the local datasets cache"):
        open_columnar("hf://tuneforge-test/no-such-dataset-anywhere?split=train", "train")


# ---------------- column mapping ----------------
def test_columns_rename_for_classification_from_any_source(tmp_path):
    pq.write_table(pa.table(ROWS), tmp_path / "train.parquet")
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"sentence": s, "label": lab}) + "\n"
                                                  for s, lab in zip(ROWS["sentence"], ROWS["label"])))
    for name in ("train.parquet", "train.jsonl"):
        data = DataConfig(train=str(tmp_path / name), columns={"sentence": "text"}, split=None)
        data.split.validation = data.split.test = 0.0
        loaded = load_splits(data, classification(), seed=0)
        assert [ex["text"] for ex in loaded.splits["train"]] == ROWS["sentence"], name


def test_columns_rename_for_generation_question_answer(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "where is my card", "answer": "on its way"}) + "\n")
    task = generation()
    with pytest.raises(DataError, match="cannot tell the record shape"):
        task.parse(read_file(path), BadRows())
    opts = ReadOptions(columns={"question": "prompt", "answer": "response"})
    ex = generation().parse(read_file(path, opts=opts), BadRows())[0]
    assert ex["messages"] == [{"role": "user", "content": "where is my card"},
                              {"role": "assistant", "content": "on its way"}]
    dialog = tmp_path / "dialog.parquet"  # a messages column under another name, from Parquet
    pq.write_table(pa.table({"dialog": [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]}),
                   dialog)
    ex = generation().parse(read_file(dialog, opts=ReadOptions(columns={"dialog": "messages"})), BadRows())[0]
    assert [m["role"] for m in ex["messages"]] == ["user", "assistant"]


def test_columns_rename_conflict_names_row_and_field(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"question": "q", "prompt": "p", "response": "r"}) + "\n")
    with pytest.raises(DataError, match=r"t\.jsonl:1 \[field 'question'\]: data.columns renames 'question' to "
                                        r"'prompt', but the record already has a 'prompt' column"):
        read_file(path, opts=ReadOptions(columns={"question": "prompt"}))
    swapped = read_file(path, opts=ReadOptions(columns={"prompt": "response", "response": "prompt"}))
    assert (swapped[0]["prompt"], swapped[0]["response"]) == ("r", "p")  # a swap is no conflict


def test_columns_config_is_checked():
    assert config_from_dict({}, ["data.columns={q: prompt, a: response}"]).data.columns == {"q": "prompt",
                                                                                           "a": "response"}
    with pytest.raises(ConfigError, match="several columns are renamed to 'text'"):
        config_from_dict({"data": {"columns": {"a": "text", "b": "text"}}})
    with pytest.raises(ConfigError, match="data.columns"):
        config_from_dict({"data": {"columns": {"a": ""}}})


def test_in_memory_records_take_the_column_mapping(tiny_bert_dir):
    from tuneforge.run import prepare

    cfg = config_from_dict({"task": "classification", "model": str(tiny_bert_dir),
                            "data": {"columns": {"sentence": "text"}, "max_length": 16}})
    rows = [{"sentence": s, "label": lab} for s, lab in zip(ROWS["sentence"], ROWS["label"])]
    p = prepare(cfg, records={"train": rows, "test": rows[:2]})
    assert p.splits["test"][0]["text"] == ROWS["sentence"][0]
    assert "sentence" in rows[0]  # the caller's records are not changed


# ---------------- streamed encoding ----------------
def test_streamed_encoding_matches_the_list_path(tmp_path, tiny_bert_dir):
    from tuneforge.data.stream import ArrowFeatures, encode_to_arrow, label_examples
    from tuneforge.models import load_tokenizer

    texts = [f"my card has not arrived {i}" if i % 3 else "where is my money" for i in range(23)]
    labels = [ROWS["label"][i % 4] for i in range(23)]
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"sentence": texts, "label": labels}), path, row_group_size=5)
    tok = load_tokenizer(str(tiny_bert_dir))
    listed = classification(max_length=8, columns={"sentence": "text"})
    examples = listed.parse(read_file(path, opts=ReadOptions(columns={"sentence": "text"})), BadRows())
    listed.setup(examples, tok)
    expected = [listed.encode(ex) for ex in examples]

    streamed = classification(max_length=8)
    source = open_columnar(path, "train")
    view = label_examples(source, "label")
    assert len(view) == 23 and sorted(ex["labels"][0] for ex in view) == sorted(labels)  # re-iterable
    streamed.setup(view, tok)
    assert streamed.labels == listed.labels
    feats = encode_to_arrow(source, streamed, tmp_path / "f.arrow", columns={"sentence": "text"}, batch_rows=4)
    assert isinstance(feats, ArrowFeatures) and len(feats) == 23
    assert list(feats) == expected and feats[-1] == expected[-1] and feats[2:4] == expected[2:4]
    assert feats.lengths() == [f["length"] for f in expected]
    assert list(ArrowFeatures(tmp_path / "f.arrow")) == expected  # reopened from disk
    with pytest.raises(DataError, match=r"no column 'intent'; columns: sentence, label"):
        label_examples(source, "intent")


def test_streamed_encoding_reports_bad_rows_by_row(tmp_path, tiny_bert_dir):
    from tuneforge.data.stream import encode_to_arrow
    from tuneforge.models import load_tokenizer

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["good", "bad", ""], "label": ["a", "b", "a"]}), path)
    task = classification(max_length=8)
    task.setup([{"labels": ["a"]}, {"labels": ["b"]}], load_tokenizer(str(tiny_bert_dir)))
    with pytest.raises(DataError, match=r"t\.parquet:row 2 \[field 'text'\]"):
        encode_to_arrow(open_columnar(path), task, tmp_path / "f.arrow", batch_rows=2)
    assert not list(tmp_path.glob("f.arrow*"))  # nothing half-written is left
    bad = BadRows(skip=True)
    assert len(encode_to_arrow(open_columnar(path), task, tmp_path / "f.arrow", bad=bad)) == 2
    assert bad.rows[0]["line"] == "row 2"


def test_fit_trains_on_streamed_features_as_on_the_list(tmp_path, tiny_bert_dir):
    """The loop takes the memory-mapped features where it takes the list: the same losses, step for step."""
    from tests.peft_harness import tiny_config
    from tests.tiny_tasks import TINY_TASKS
    from tuneforge.data.stream import encode_to_arrow
    from tuneforge.run import prepare
    from tuneforge.training.loop import fit

    spec = TINY_TASKS["classification"](tmp_path)
    train_csv = spec.data["train"]
    parquet = tmp_path / "train.parquet"
    with open(train_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    pq.write_table(pa.table({k: [r[k] for r in rows] for k in rows[0]}), parquet)
    losses = {}
    for kind in ("list", "arrow"):
        cfg = tiny_config("classification", None, tmp_path / kind, tiny_bert_dir, spec, train={"epochs": 2})
        p = prepare(cfg)
        train = p.features["train"]
        if kind == "arrow":
            train = encode_to_arrow(open_columnar(parquet, "train"), p.task, tmp_path / "train.features.arrow")
            assert list(train) == p.features["train"]
        built = p.build_model()
        fit(built.model, p.task, train, p.features["validation"], p.splits["validation"], cfg.train, cfg.seed,
            tmp_path / kind / "run")
        log = (tmp_path / kind / "run" / "metrics.jsonl").read_text().splitlines()
        losses[kind] = [json.loads(line)["loss"] for line in log if json.loads(line).get("split") == "train"]
    assert losses["arrow"] and losses["arrow"] == losses["list"]


def test_hub_dataset_is_read_through_load_dataset(monkeypatch, hf_folders):
    """The hub path with ``datasets.load_dataset`` answered from a local DatasetDict (no network in tests)."""
    datasets = pytest.importorskip("datasets")
    local = datasets.load_from_disk(str(hf_folders / "dd"))
    calls = []

    def fake_load(name, config=None, split=None, revision=None):
        calls.append((name, config, split, revision))
        return local[split] if split else local

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    recs = read_file("hf://owner/sentiment?config=default&revision=v1", role="validation")  # dev, by the alias
    assert [r["text"] for r in recs] == ["fine"] and recs[0]["label"] == "pos"
    assert recs[0]["_loc"] == "hf://owner/sentiment?config=default&revision=v1:row 0"
    assert read_file("hf://owner/sentiment?split=train", role="test")[1]["label"] == "neg"  # split= wins
    assert calls == [("owner/sentiment", "default", None, "v1"), ("owner/sentiment", None, "train", None)]
