"""``tuneforge config fields|show``: the same field list as the reference page, and a config as a run resolves it."""

from __future__ import annotations

import yaml

from tuneforge.cli import main
from tuneforge.config import describe_fields


def test_fields_lists_every_key_with_type_default_and_help(capsys):
    assert main(["config", "fields"]) == 0
    out = capsys.readouterr().out
    keys = [key for key, *_ in describe_fields()]
    assert all(f"{key}  (" in out for key in keys)
    assert "train.lr  (float, default 5e-05)\n    Peak learning rate" in out


def test_fields_prefix_and_unknown_prefix(capsys):
    assert main(["config", "fields", "peft."]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert lines and all(line.startswith("peft.") for line in lines)
    assert main(["config", "fields", "nope"]) == 2
    assert "no config key starts with 'nope'" in capsys.readouterr().err


def test_show_resolves_overrides_and_defaults(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("model: minilm\ndata: {train: t.csv}\n")
    assert main(["config", "show", str(path), "train.lr=1e-4"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["lr"] == 1e-4 and shown["train"]["batch_size"] == 32 and shown["data"]["train"] == str(tmp_path / "t.csv")
    assert main(["config", "show", str(path), "train.lr=-1"]) == 2
    assert "train.lr" in capsys.readouterr().err
