"""search.space parsing: each value form, and errors that name the key."""

from __future__ import annotations

import pytest

from tuneforge.config import config_from_dict
from tuneforge.config_typing import ConfigError
from tuneforge.search.space import default_point, parse_space, set_key


def test_forms_parse():
    params = parse_space({"train.lr": {"log_uniform": [1e-5, "1e-3"]}, "train.batch_size": [16, 32],
                          "train.warmup_ratio": {"uniform": [0.0, 0.2]}, "train.epochs": {"int": [1, 4]},
                          "train.scheduler": {"choice": ["linear", "cosine"]}})
    kinds = {p.key: p.kind for p in params}
    assert kinds == {"train.lr": "log_uniform", "train.batch_size": "choice", "train.warmup_ratio": "uniform",
                     "train.epochs": "int", "train.scheduler": "choice"}
    lr = params[0]
    assert (lr.low, lr.high) == (1e-5, 1e-3)
    assert params[1].choices == (16, 32)


@pytest.mark.parametrize(("space", "message"), [
    ({}, "nothing to search"),
    ({"train.lrr": [1, 2]}, "unknown config key 'train.lrr'; train has: epochs"),
    ({"nope": [1]}, "unknown config key 'nope'; the top level has: model"),
    ({"train": [1]}, "train is a section"),
    ({"train.lr.x": [1]}, "train.lr is a value, not a section"),
    ({"output_dir": ["a", "b"]}, "output_dir cannot be searched"),
    ({"train.lr": {"log_uniform": [0, 1e-3]}}, "search.space.train.lr: log_uniform needs low > 0"),
    ({"train.lr": {"uniform": [2, 1]}}, "search.space.train.lr: uniform needs low < high"),
    ({"train.lr": {"uniform": [1]}}, "needs [low, high]"),
    ({"train.lr": {"uniform": ["a", "b"]}}, "bounds must be numbers"),
    ({"train.epochs": {"int": [1, 2.5]}}, "int needs whole-number bounds"),
    ({"train.lr": {"normal": [1, 2]}}, "unknown kind 'normal'; known: choice, log_uniform"),
    ({"train.lr": []}, "the choice list is empty"),
    ({"train.lr": [1, 1]}, "repeats a value"),
    ({"train.lr": 3e-5}, "expected a list of choices"),
])
def test_errors_name_the_key(space, message):
    with pytest.raises(ConfigError) as e:
        parse_space(space)
    assert message in str(e.value)


def test_search_section_loads_and_default_point():
    cfg = config_from_dict({"train": {"lr": 4e-5, "batch_size": 16},
                            "search": {"space": {"train.lr": {"log_uniform": [1e-5, 1e-3]},
                                                 "train.batch_size": [16, 32], "train.epochs": {"int": [5, 9]}},
                                       "trials": 4, "pruner": "median"}})
    params = parse_space(cfg.search.space)
    # epochs 3 lies outside [5, 9]: left to the sampler rather than forced in
    assert default_point(params, cfg) == {"train.lr": 4e-5, "train.batch_size": 16}


def test_set_key_creates_sections():
    raw: dict = {"train": {"lr": 1}}
    set_key(raw, "train.early_stopping.patience", 2)
    set_key(raw, "train.lr", 3)
    assert raw == {"train": {"lr": 3, "early_stopping": {"patience": 2}}}
