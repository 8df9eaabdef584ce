"""Config: typed sections, overrides, errors that name the field, every shipped config loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.config import ConfigError, config_from_dict, describe_fields, load_config, save_config

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_and_overrides():
    cfg = config_from_dict({"data": {"train": "x.csv"}}, ["train.lr=3e-5", "train.epochs=2", "freeze.policy=top_k",
                                                            "data.labels=[a, b]", "train.max_grad_norm=null"])
    assert cfg.train.lr == 3e-5 and cfg.train.epochs == 2.0 and cfg.freeze.policy == "top_k"
    assert cfg.data.labels == ["a", "b"] and cfg.train.max_grad_norm is None
    assert cfg.train.early_stopping.patience == 3  # nested default section


def test_yaml_string_numbers_become_floats(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: 5e-5\n")  # YAML 1.1 reads this as a string
    assert load_config(p).train.lr == 5e-5


@pytest.mark.parametrize("raw,msg", [
    ({"train": {"lerning_rate": 1}}, "train.lerning_rate: unknown field; known: .*lr"),
    ({"train": {"batch_size": "big"}}, "train.batch_size: expected an integer"),
    ({"train": {"optimizer": "adam"}}, "train.optimizer: 'adam' is not one of adamw, sgd"),
    ({"freeze": {"policy": "some"}}, "freeze.policy"),
    ({"data": {"skip_bad_rows": "yes"}}, "data.skip_bad_rows: expected true/false"),
    ({"loss": {"class_weights": "inverse"}}, "loss.class_weights"),
    ({"data": "x.csv"}, "data: expected a mapping"),
    ({"train": {"batch_tokens": 0}}, "train.batch_tokens: 0 must be >= 1"),
    ({"train": {"batch_tokens": 512, "batching": "random"}}, "train.batch_tokens needs train.batching: length_grouped"),
])
def test_errors_name_the_field(raw, msg):
    with pytest.raises(ConfigError, match=msg):
        config_from_dict(raw)


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key.sub=value"):
        config_from_dict({}, ["train.lr"])


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "data.csv").write_text("text,label\n")
    p = tmp_path / "sub" / "c.yaml"
    p.write_text("data:\n  train: ../data.csv\n")
    assert load_config(p).data.train == str((tmp_path / "data.csv").resolve())


def test_saved_config_round_trips(tmp_path):
    cfg = config_from_dict({"data": {"train": "/abs/x.csv"}, "train": {"lr": 1e-4}})
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again.to_dict() == cfg.to_dict()


def test_every_field_is_documented():
    for key, _default, help_ in describe_fields():
        assert help_, f"{key} has no help text"


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_loads(path):
    if path.parent.name == "prompting":  # prompt files (fewshot.prompt), not run configs
        from tuneforge.prompting.templates import load_prompt_file

        assert load_prompt_file(path)
        return
    if path.parent.name == "study":  # study grids (tuneforge study) over a base run config
        from tuneforge.study.spec import load_study

        assert load_study(path)
        return
    if path.name.startswith("monitor_"):  # monitor configs (tuneforge monitor): runs + stream + detectors
        from tuneforge.apps.monitor.config import load_monitor_config

        assert load_monitor_config(path).sentiment_run
        return
    cfg = load_config(path)
    from tuneforge.tasks import TASKS

    assert cfg.task in TASKS
    assert cfg.data.train


def test_a_split_can_read_several_files_in_order(tmp_path):
    """data.train takes a list: each path resolves against the config, files are concatenated, meta hashes each."""
    from tuneforge.data.load import load_splits
    from tuneforge.data.readers import DataError
    from tuneforge.meta import build_meta
    from tuneforge.tasks.base import TaskContext, build_task

    (tmp_path / "a.csv").write_text("text,label\nfirst,x\nsecond,y\n")
    (tmp_path / "b.csv").write_text("text,label\nthird,x\n")
    (tmp_path / "t.csv").write_text("text,label\nfourth,y\n")
    p = tmp_path / "c.yaml"
    p.write_text("task: classification\ndata:\n  train: [a.csv, b.csv]\n  test: t.csv\n  split: {validation: 0}\n")
    cfg = load_config(p)
    assert cfg.data.train == [str((tmp_path / n).resolve()) for n in ("a.csv", "b.csv")]
    task = build_task("classification", TaskContext(data=cfg.data, head=cfg.head, loss=cfg.loss, model_kind="encoder"))
    loaded = load_splits(cfg.data, task, cfg.seed)
    assert [r["text"] for r in loaded.splits["train"]] == ["first", "second", "third"]
    meta = build_meta(loaded.files, 0, {"name": "m"}, "fp32")
    assert [e["path"] for e in meta["data"]["train"]] == cfg.data.train and meta["data"]["test"]["sha256"]

    (tmp_path / "b.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="b.csv"):
        load_splits(cfg.data, task, cfg.seed)


def test_limits_cut_each_split_after_carving(tmp_path):
    from tuneforge.data.load import load_splits
    from tuneforge.tasks.base import TaskContext, build_task

    rows = "".join(f"text {i},{'xy'[i % 2]}\n" for i in range(100))
    (tmp_path / "a.csv").write_text("text,label\n" + rows)
    cfg = config_from_dict({"task": "classification", "data": {
        "train": str(tmp_path / "a.csv"), "split": {"validation": 0.2, "test": 0.2},
        "limit": 10, "validation_limit": 5, "test_limit": 7}})
    task = build_task("classification", TaskContext(data=cfg.data, head=cfg.head, loss=cfg.loss, model_kind="encoder"))
    full = load_splits(config_from_dict({"task": "classification", "data": {
        "train": str(tmp_path / "a.csv"), "split": {"validation": 0.2, "test": 0.2}}}).data, task, cfg.seed).splits
    cut = load_splits(cfg.data, task, cfg.seed).splits
    assert {k: len(v) for k, v in cut.items()} == {"train": 10, "validation": 5, "test": 7}
    for name in cut:  # the same carve, then the first N rows of each split
        assert cut[name] == full[name][: len(cut[name])]


def test_split_seed_fixes_the_carve_while_the_run_seed_varies(tmp_path):
    from tuneforge.data.load import load_splits
    from tuneforge.tasks.base import TaskContext, build_task

    rows = "".join(f"text {i},{'xy'[i % 2]}\n" for i in range(100))
    (tmp_path / "a.csv").write_text("text,label\n" + rows)

    def carve(seed, split_seed=None):
        split = {"validation": 0.2, "test": 0.2}
        if split_seed is not None:
            split["seed"] = split_seed
        cfg = config_from_dict({"task": "classification", "seed": seed,
                                "data": {"train": str(tmp_path / "a.csv"), "split": split}})
        task = build_task("classification", TaskContext(data=cfg.data, head=cfg.head, loss=cfg.loss,
                                                        model_kind="encoder"))
        return {k: [ex["text"] for ex in v] for k, v in load_splits(cfg.data, task, cfg.seed).splits.items()}

    assert carve(42) != carve(43)  # without split.seed the run seed draws the carve
    assert carve(43, split_seed=42) == carve(42) == carve(7, split_seed=42)


@pytest.mark.parametrize("override,msg", [
    ("train.lr=0", r"train.lr: 0.0 must be > 0"),
    ("train.lr=-1e-5", r"train.lr: -1e-05 must be > 0"),
    ("train.lr=nan", r"train.lr: nan must be > 0"),
    ("train.head_lr=0", r"train.head_lr: 0.0 must be > 0 \(or null\)"),
    ("train.momentum=-0.5", r"train.momentum: -0.5 must be in \[0, 1\)"),
    ("data.max_length=0", r"data.max_length: 0 must be >= 1"),
    ("train.eval_every=-1", r"train.eval_every: -1 must be >= 0"),
    ("train.save_every=-2", r"train.save_every: -2 must be >= 0"),
    ("train.warmup_ratio=1.5", r"train.warmup_ratio: 1.5 must be in \[0, 1\]"),
    ("train.warmup_ratio=-0.1", r"train.warmup_ratio"),
    ("data.limit=-1", r"data.limit: -1 must be >= 1 \(or null\)"),
    ("data.limit=0", r"data.limit: 0 must be >= 1"),
    ("data.validation_limit=0", r"data.validation_limit"),
    ("data.test_limit=-3", r"data.test_limit"),
    ("train.keep_checkpoints=-1", r"train.keep_checkpoints: -1 must be >= 0"),
    ("train.batch_size=0", r"train.batch_size: 0 must be >= 1"),
    ("train.grad_accum=0", r"train.grad_accum"),
    ("train.epochs=-1", r"train.epochs: -1.0 must be >= 0"),
    ("train.log_every=0", r"train.log_every"),
    ("train.early_stopping.patience=0", r"train.early_stopping.patience: 0 must be >= 1 \(or null\)"),
    ("span.doc_stride=-1", r"span.doc_stride: -1 must be >= 0"),
    ("generation.top_p=0", r"generation.top_p: 0.0 must be in \(0, 1\]"),
    ("seed=-1", r"seed: -1 must be in \[0, 4294967295\]"),
    ("peft.r=0", r"peft.r"),
    ("calibration.rule=sometimes", r"calibration.rule: 'sometimes' is not one of"),
    ("data.encoding=klingon", r"data.encoding: unknown encoding 'klingon'"),
    ("data.line_delimiter=''", r"data.line_delimiter: must not be empty"),
    ("loss.class_weights=[1, -2]", r"loss.class_weights"),
    ("train.lr=[", r"train.lr: cannot read the value '\['"),
    ("train.lr=1e999999", r"train.lr: inf must be > 0"),
])
def test_out_of_range_values_name_the_field(override, msg):
    with pytest.raises(ConfigError, match=msg):
        config_from_dict({"data": {"train": "x.csv"}}, [override])


@pytest.mark.parametrize("overrides,msg", [
    (["data.split.validation=0.5", "data.split.test=0.5"],
     r"data.split.validation \+ data.split.test = 1 leaves nothing to train on"),
    (["freeze.policy=top_k", "peft.method=lora"], r"freeze.policy=top_k and peft.method=lora do not combine"),
    (["freeze.embeddings=true", "peft.method=lora"], r"freeze.embeddings=true and peft.method=lora"),
    (["task=qa", "data.max_length=128", "span.doc_stride=128"],
     r"span.doc_stride: 128 must be below data.max_length - span.max_question_length - 3 = 61"),
    (["peft.method=adalora", "peft.r=4", "peft.target_r=8"], r"peft.target_r: 8 is above peft.r=4"),
    (["task=classification_generative", "data.multi_label=true"], r"data.multi_label: classification_generative"),
])
def test_fields_that_do_not_combine_are_named(overrides, msg):
    with pytest.raises(ConfigError, match=msg):
        config_from_dict({"data": {"train": "x.csv"}}, overrides)


def test_values_at_the_edges_of_their_ranges_load():
    cfg = config_from_dict({"data": {"train": "x.csv"}}, [
        "train.warmup_ratio=0", "train.momentum=0", "train.eval_every=0", "train.keep_checkpoints=0",
        "data.limit=1", "train.early_stopping.patience=null", "span.doc_stride=0", "peft.method=lora",
        "task=qa", "data.max_length=384", "span.doc_stride=128"])
    assert cfg.train.warmup_ratio == 0 and cfg.data.limit == 1 and cfg.span.doc_stride == 128
    # epochs 0 without max_steps is the documented "evaluate the untuned model" run
    assert config_from_dict({}, ["train.epochs=0"]).train.epochs == 0


def test_every_numeric_field_has_a_range():
    """A new int or float field must say its valid interval in config_checks.RANGES (or be checked elsewhere)."""
    from tuneforge.config_checks import RANGES, UNBOUNDED, Interval

    numeric = {key for key, *_ in describe_fields() if _is_numeric_field(key)}
    assert numeric - set(RANGES) - UNBOUNDED == set()
    assert set(RANGES) - numeric == set()  # no stale entries
    for text in RANGES.values():
        Interval.parse(text)


def _is_numeric_field(key: str) -> bool:
    import dataclasses

    from tuneforge.config import RunConfig
    from tuneforge.config_typing import field_hints

    cls = RunConfig
    *sections, name = key.split(".")
    for part in sections:
        cls = next(a for a in (field_hints(cls)[part],) if dataclasses.is_dataclass(a))
    hint = str(field_hints(cls)[name])
    return any(t in hint.replace("list[float]", "") for t in ("int", "float"))


def test_max_length_above_the_model_limit_names_both(tiny_bert_dir):
    from transformers import AutoTokenizer

    from tuneforge.config import check_max_length, model_length_limit

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    assert model_length_limit(str(tiny_bert_dir), tok) == 128  # the position table, below the tokenizer's 512
    cfg = config_from_dict({"model": str(tiny_bert_dir)}, ["data.max_length=129"])
    with pytest.raises(ConfigError, match=r"data.max_length: 129 is above the model's limit of 128 tokens"):
        check_max_length(cfg, 128)
    check_max_length(config_from_dict({}, ["data.max_length=128"]), 128)
    check_max_length(cfg, None)  # no known limit: nothing to check


def test_prepare_refuses_max_length_above_the_model(tiny_bert_dir, tmp_path):
    from tuneforge.run import prepare

    (tmp_path / "a.csv").write_text("text,label\n" + "".join(f"t {i},{'xy'[i % 2]}\n" for i in range(20)))
    cfg = config_from_dict({"model": str(tiny_bert_dir), "data": {"train": str(tmp_path / "a.csv"),
                                                                  "max_length": 512}})
    with pytest.raises(ConfigError, match="data.max_length: 512 is above the model's limit of 128"):
        prepare(cfg, encode=False)


def test_typed_mappings_and_huge_numbers_are_checked():
    with pytest.raises(ConfigError, match="fewshot.verbaliser: expected a mapping"):
        config_from_dict({"fewshot": {"verbaliser": 5}})
    with pytest.raises(ConfigError, match=r"fewshot.verbaliser.pos: expected a list"):
        config_from_dict({"fewshot": {"verbaliser": {"pos": 3}}})
    with pytest.raises(ConfigError, match="train.lr: expected a number"):
        config_from_dict({"train": {"lr": 10 ** 400}})
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        config_from_dict([1, 2])  # type: ignore[arg-type]


def test_help_texts_state_behaviour_not_benchmark_results():
    import re

    narrated = re.compile(r"\d(\.\d+)?x (faster|cheaper|slower)|~\d+(\.\d+)?% (of|less|more)|measured on|"
                          r"\bon (SST-2|\d+ CPU cores)|\(README\)|dev accuracy (fell|rose)")
    offenders = [key for key, _default, help_ in describe_fields() if narrated.search(help_)]
    assert offenders == []
