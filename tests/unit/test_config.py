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
