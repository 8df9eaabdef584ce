"""Checkpoints read nothing that can run code, carry checksums, fall back past a damaged one, and are replaced whole."""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.test_smoke_pipeline import write_toy_csv
from tuneforge.config import config_from_dict
from tuneforge.io_utils import replace_dir
from tuneforge.training import checkpoint as ckpt
from tuneforge.training.checkpoint import (
    MANIFEST,
    PICKLED_STATE,
    PROGRESS,
    STATE,
    WEIGHTS,
    CheckpointError,
    clean_leftovers,
    list_checkpoints,
    load_weights,
    rng_state,
    save_best,
    save_checkpoint,
    set_rng_state,
)
from tuneforge.training.ema import FILE as EMA_FILE
from tuneforge.training.ema import WeightAverage
from tuneforge.training.optim import build_scheduler
from tuneforge.training.state_codec import StateFormatError, load_state, save_state


class Planted:
    """What a hostile run directory would ship: unpickling it runs a command that leaves a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plant(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"optimizer": Planted(marker)}))


def trainer(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return model, optimizer, build_scheduler(optimizer, "linear", 0.2, 10)


def step(model, optimizer, scheduler) -> None:
    model(torch.randn(5, 4)).pow(2).mean().backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def three_checkpoints(root: Path, extra=None):
    """step-1..3 of a small AdamW run; returns the trainer and each step's weights."""
    model, optimizer, scheduler = trainer()
    saved = {}
    for n in (1, 2, 3):
        step(model, optimizer, scheduler)
        if extra is not None:
            extra.update()
        save_checkpoint(root / f"step-{n}", model, optimizer, scheduler, {"step": n}, keep=0, extra=extra)
        saved[n] = {k: v.clone() for k, v in model.state_dict().items()}
    return saved


def test_trainer_state_round_trips_exactly_without_pickle(tmp_path):
    model, optimizer, scheduler = trainer()
    for _ in range(3):
        step(model, optimizer, scheduler)
    random.random(), np.random.rand(), torch.rand(1)
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(),
             "odd": {1: (2.5, float("inf")), "$x": [np.float32(0.1)], "nan": float("nan")}}
    save_state(state, tmp_path / STATE)
    back = load_state(tmp_path / STATE)
    assert back["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert isinstance(back["optimizer"]["param_groups"][0]["betas"], tuple)
    for k, v in state["optimizer"]["state"].items():
        assert all(torch.equal(v[name], back["optimizer"]["state"][k][name]) for name in v)
    assert back["scheduler"] == state["scheduler"]
    assert back["odd"][1] == (2.5, float("inf")) and back["odd"]["$x"][0] == np.float32(0.1)
    assert back["odd"]["$x"][0].dtype == np.float32 and np.isnan(back["odd"]["nan"])
    # RNG: the draws after restoring equal the draws after saving, for every generator
    expected = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(back["rng"])
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])
    # and it opens as plain data: not a pickle
    assert not (tmp_path / STATE).read_bytes().startswith(b"\x80")


def test_state_that_is_not_plain_data_is_refused_when_saving(tmp_path):
    with pytest.raises(StateFormatError, match=r"state\.scheduler\.fn: a function"):
        save_state({"scheduler": {"fn": lambda s: s}}, tmp_path / STATE)


def test_resume_falls_back_past_a_truncated_weights_file(tmp_path):
    saved = three_checkpoints(tmp_path)
    weights = tmp_path / "step-3" / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-40])
    model, optimizer, scheduler = trainer(seed=1)
    lines = []
    folder, progress, _ = ckpt.resume(tmp_path, model, optimizer, scheduler, log=lines.append)
    assert folder.name == "step-2" and progress == {"step": 2}
    assert all(torch.equal(model.state_dict()[k], saved[2][k]) for k in saved[2])
    assert "step-3" in lines[0] and "model.safetensors" in lines[0] and "truncated" in lines[0]
    assert lines[-1] == "falling back to step-2, the newest intact checkpoint"


@pytest.mark.parametrize("damage", ["flip", "manifest", "missing"])
def test_resume_falls_back_past_damaged_trainer_state(tmp_path, damage):
    three_checkpoints(tmp_path)
    state = tmp_path / "step-3" / STATE
    if damage == "flip":  # same size, one byte changed: only the checksum can tell
        data = bytearray(state.read_bytes())
        data[len(data) // 2] ^= 0xFF
        state.write_bytes(bytes(data))
    elif damage == "manifest":
        (tmp_path / "step-3" / MANIFEST).write_text('{"format": 2, "fil')
    else:
        state.unlink()
    lines = []
    folder, _, _ = ckpt.resume(tmp_path, *trainer(), log=lines.append)
    assert folder.name == "step-2"
    assert "step-3" in lines[0]


def test_every_checkpoint_damaged_is_one_clear_error(tmp_path):
    three_checkpoints(tmp_path)
    for n in (1, 2, 3):
        (tmp_path / f"step-{n}" / PROGRESS).write_text("{}")
    with pytest.raises(CheckpointError, match="no usable checkpoint") as err:
        ckpt.resume(tmp_path, *trainer(), log=lambda _: None)
    assert all(f"; step-{n}/{PROGRESS}: 2 bytes where" in str(err.value) for n in (1, 2))
    assert f": step-3/{PROGRESS}: 2 bytes where" in str(err.value) and "train.overwrite=true" in str(err.value)


def test_planted_pickle_in_the_newest_checkpoint_is_never_opened(tmp_path):
    three_checkpoints(tmp_path)
    marker = tmp_path / "marker"
    plant(tmp_path / "step-3" / PICKLED_STATE, marker)
    lines = []
    folder, _, _ = ckpt.resume(tmp_path, *trainer(), log=lines.append)
    assert folder.name == "step-2"
    assert f"step-3/{PICKLED_STATE}: a pickle file" in lines[0] and "never loaded" in lines[0]
    assert not marker.exists()
    pickle.loads((tmp_path / "step-3" / PICKLED_STATE).read_bytes())  # the planted file is live: it would have run
    assert marker.exists()


def test_weight_average_load_names_a_damaged_file(tmp_path):
    model = nn.Linear(3, 2)
    avg = WeightAverage(model, 0.9)
    three_checkpoints(tmp_path, extra=avg)
    (tmp_path / "step-3" / EMA_FILE).write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match=f"step-3/{EMA_FILE}: cannot read"):
        avg.load(tmp_path / "step-3")
    other = WeightAverage(nn.Linear(3, 2), 0.9)
    ckpt.resume(tmp_path, *trainer(), extra=other, log=lambda _: None)  # step-3's sha256 fails: step-2's average
    assert other.updates == 2


def test_best_holds_weights_only_and_a_damaged_best_is_named(tmp_path):
    model, optimizer, scheduler = trainer()
    step(model, optimizer, scheduler)
    save_best(tmp_path / "best", model, {"step": 1})
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) == [MANIFEST, WEIGHTS, PROGRESS]
    assert sorted(load_weights(nn.Linear(4, 3), tmp_path / "best")) == ["bias", "weight"]
    weights = tmp_path / "best" / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=f"best/{WEIGHTS}: .* bytes where"):
        load_weights(nn.Linear(4, 3), tmp_path / "best")


def test_best_is_replaced_whole_and_an_interrupted_swap_is_undone(tmp_path, monkeypatch):
    model, optimizer, scheduler = trainer()
    save_best(tmp_path / "best", model, {"step": 1})
    first = (tmp_path / "best" / WEIGHTS).read_bytes()
    step(model, optimizer, scheduler)
    real_replace, calls = os.replace, []

    def killed_before_the_new_folder_is_renamed_in(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_before_the_new_folder_is_renamed_in)
    with pytest.raises(KeyboardInterrupt):
        save_best(tmp_path / "best", model, {"step": 2})
    monkeypatch.setattr(os, "replace", real_replace)
    assert not (tmp_path / "best").exists()  # the old best is aside, whole, under a temp name
    lines = clean_leftovers(tmp_path)
    assert any(line.startswith("restored") for line in lines)
    assert (tmp_path / "best" / WEIGHTS).read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["best"]
    save_best(tmp_path / "best", model, {"step": 2})  # an uninterrupted replacement
    assert json.loads((tmp_path / "best" / PROGRESS).read_text()) == {"step": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


def test_replace_dir_onto_an_absent_target(tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "f").write_text("x")
    replace_dir(tmp_path / "new", tmp_path / "dst")
    assert (tmp_path / "dst" / "f").read_text() == "x" and not (tmp_path / "new").exists()


def test_leftover_temp_folders_are_removed(tmp_path):
    three_checkpoints(tmp_path / "checkpoints")
    for name in (".step-4.k2j_x9", ".step-2.old-abc123"):
        (tmp_path / "checkpoints" / name / "step-2").mkdir(parents=True)
    (tmp_path / ".best.q1w2e3").mkdir()
    (tmp_path / ".cache").mkdir()  # not ours: kept
    lines = clean_leftovers(tmp_path)
    assert len(lines) == 3 and not any(line.startswith("restored") for line in lines)  # step-2 exists: not restored
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-1", "step-2", "step-3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cache", "checkpoints"]


def test_pruning_keeps_the_newest(tmp_path):
    model, optimizer, scheduler = trainer()
    for n in range(1, 5):
        save_checkpoint(tmp_path / f"step-{n}", model, optimizer, scheduler, {"step": n}, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-3", "step-4"]  # and no temp folder left
    assert list_checkpoints(tmp_path)[-1].name == "step-4"


# ---- through training: a run directory with a planted pickle, an old-format run, and best/ for serving ----

def _cfg(tiny_bert_dir: Path, tmp_path: Path, resume: bool) -> object:
    return config_from_dict({
        "model": str(tiny_bert_dir), "output_dir": str(tmp_path / "run"), "seed": 3,
        "data": {"train": str(tmp_path / "toy.csv"), "split": {"validation": 0.2, "test": 0.2}},
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "progress": False, "precision": "fp32",
                  "save_every": 2, "eval_every": 4, "keep_checkpoints": 0, "resume": resume, "num_threads": 1,
                  "early_stopping": {"patience": None}},
        "eval": {"baselines": []},
    })


@pytest.fixture(scope="module")
def trained_run(tiny_bert_dir, tmp_path_factory) -> Path:
    from tuneforge.runner import train

    tmp = tmp_path_factory.mktemp("ckpt_run")
    write_toy_csv(tmp / "toy.csv", n=60)
    train(_cfg(tiny_bert_dir, tmp, resume=False))
    return tmp


def _copy(trained_run: Path, tmp_path: Path) -> None:
    shutil.copytree(trained_run / "run", tmp_path / "run")
    shutil.copy(trained_run / "toy.csv", tmp_path / "toy.csv")


def test_best_serves_and_holds_no_optimizer_state(trained_run):
    from tuneforge.inference.predictor import Predictor

    best = trained_run / "run" / "best"
    assert sorted(p.name for p in best.iterdir()) == [MANIFEST, WEIGHTS, PROGRESS]
    steps = list_checkpoints(trained_run / "run" / "checkpoints")
    assert len(steps) >= 2 and all((s / STATE).is_file() and (s / MANIFEST).is_file() for s in steps)
    out = Predictor.from_run_dir(trained_run / "run", precision="fp32").predict(["good movie"])
    assert out[0]["label"] in ("positive", "negative")


def test_resume_refuses_an_old_format_run_with_a_planted_pickle(trained_run, tiny_bert_dir, tmp_path, capsys):
    from tuneforge.runner import train

    _copy(trained_run, tmp_path)
    marker = tmp_path / "marker"
    for folder in list_checkpoints(tmp_path / "run" / "checkpoints"):  # as an older version wrote them
        (folder / MANIFEST).unlink()
        (folder / STATE).unlink()
        plant(folder / PICKLED_STATE, marker)
    with pytest.raises(CheckpointError, match=f"{PICKLED_STATE}: a pickle file .* never loaded") as err:
        train(_cfg(tiny_bert_dir, tmp_path, resume=True))
    assert "no usable checkpoint" in str(err.value)
    assert not marker.exists()


def test_resume_cleans_leftovers_and_skips_a_damaged_newest(trained_run, tiny_bert_dir, tmp_path, capsys):
    from tuneforge.runner import train

    _copy(trained_run, tmp_path)
    root = tmp_path / "run" / "checkpoints"
    steps = list_checkpoints(root)
    (root / f".step-{len(steps) + 9}.abc123").mkdir()  # a save a kill interrupted
    newest = steps[-1] / WEIGHTS
    newest.write_bytes(newest.read_bytes()[:-7])
    train(_cfg(tiny_bert_dir, tmp_path, resume=True))
    out = capsys.readouterr().out
    assert f"removed .step-{len(steps) + 9}.abc123" in out
    assert f"checkpoint {steps[-1].name} refused" in out and f"falling back to {steps[-2].name}" in out
    assert not (root / f".step-{len(steps) + 9}.abc123").exists()
    ckpt.verify(list_checkpoints(root)[-1])  # the newest was rewritten whole by the resumed run


def test_setfit_refuses_a_model_folder_with_a_pickled_head(tmp_path):
    pytest.importorskip("setfit")
    from tuneforge.prompting.setfit import SetFitOptions, _body_trainer

    marker = tmp_path / "marker"
    (tmp_path / "model").mkdir()
    plant(tmp_path / "model" / "model_head.pkl", marker)  # setfit's from_pretrained would joblib.load it
    with pytest.raises(ValueError, match="model_head.pkl: a pickle file, which is never loaded"):
        _body_trainer(str(tmp_path / "model"), ([], []), SetFitOptions(), 0, tmp_path)
    assert not marker.exists()
