"""Every shipped configs/generation/*.yaml loads, builds its task and points at data that the task can read."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.config import load_config
from tuneforge.data.readers import BadRows, ReadOptions, read_file
from tuneforge.tasks.base import TaskContext, build_task

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "generation").glob("*.yaml"))


def test_there_are_generation_configs():
    assert {p.stem for p in CONFIGS} >= {"alpaca", "dialogsum", "multi30k_en_de"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_generation_config_loads_and_reads(path):
    cfg = load_config(path)
    task = build_task(cfg.task, TaskContext(cfg.data, cfg.head, cfg.loss, "decoder", generation=cfg.generation))
    for split in ("train", "validation", "test"):
        file = getattr(cfg.data, split)
        if file is None:
            continue
        if not Path(file).exists():
            pytest.skip(f"{file} is not available (../shared/datasets)")
        opts = ReadOptions(encoding=cfg.data.encoding, target_suffix=cfg.data.target_suffix)
        bad = BadRows(skip=cfg.data.skip_bad_rows)
        records = read_file(file, cfg.data.format, opts, bad)[:200]
        assert len(task.parse(records, bad)) >= 150, (split, bad.rows[:3])
