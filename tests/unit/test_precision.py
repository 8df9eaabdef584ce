"""precision: auto takes bf16 on a CPU only where a bf16 matmul is measurably faster; resume keeps the recorded one."""

from __future__ import annotations

import json

import pytest
import torch

from tuneforge.training import precision as P


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


@pytest.mark.parametrize(("flags", "speedup", "expected"), [
    (True, 2.4, "bf16"),   # a 2-core EPYC: bf16 matmul 390 GFLOP/s vs fp32 160
    (True, 0.58, "fp32"),  # a 2-core Xeon with AVX-512 BF16 but slow bf16 matmuls
    (True, 1.1, "fp32"),   # faster, but not by enough to pay for autocast's casts
    (False, 9.0, "fp32"),  # no native bf16: never timed
])
def test_auto_follows_the_measured_speed(cpu_only, monkeypatch, flags, speedup, expected):
    monkeypatch.setattr(P, "cpu_supports_bf16", lambda: flags)
    monkeypatch.setattr(P, "cpu_bf16_speedup", lambda: speedup)
    assert P.resolve_precision("auto") == expected
    assert P.resolve_precision("fp32") == "fp32" and P.resolve_precision("bf16") == "bf16"
    assert ("x fp32's speed" in P.describe_auto()) == flags


def test_multi_process_cpu_runs_decide_by_flags_so_ranks_agree(cpu_only, monkeypatch):
    monkeypatch.setattr(P, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(P, "cpu_bf16_speedup", lambda: pytest.fail("a rank must not time"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert P.resolve_precision("auto") == "bf16"


def test_the_probe_times_real_matmuls():
    assert P.matmul_seconds(torch.float32, 64, 64, 64, repeats=2) > 0
    assert P.cpu_bf16_speedup() > 0  # cached for the process


def test_resume_keeps_the_checkpoints_precision(cpu_only, monkeypatch, tmp_path):
    monkeypatch.setattr(P, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(P, "cpu_bf16_speedup", lambda: 0.5)  # a fresh timing would say fp32
    root = tmp_path / "checkpoints"
    assert P.run_precision("auto", root) == "fp32"  # no checkpoint yet
    def checkpoint(step: int, progress: dict) -> None:
        """A complete checkpoint as resume sees it: the required files and a manifest of their checksums."""
        from tuneforge.training.checkpoint import STATE, WEIGHTS, write_manifest

        folder = root / f"step-{step}"
        folder.mkdir(parents=True)
        (folder / "progress.json").write_text(json.dumps(progress))
        for name in (WEIGHTS, STATE):
            (folder / name).write_bytes(b"stand-in")
        write_manifest(folder, "step")

    for step, recorded in ((10, "fp32"), (20, "bf16")):
        checkpoint(step, {"step": step, "precision": recorded})
    assert P.run_precision("auto", root) == "bf16"  # the newest checkpoint's
    assert P.run_precision("fp32", root) == "fp32"  # an explicit choice wins
    assert P.run_precision("auto", None) == "fp32"  # not resuming
    checkpoint(30, {"step": 30})  # written before precision was kept
    assert P.run_precision("auto", root) == "fp32"
    (root / "step-40").mkdir()
    (root / "step-40" / "progress.json").write_text(json.dumps({"step": 40, "precision": "bf16"}))
    assert P.run_precision("auto", root) == "fp32"  # an incomplete newest folder is not what resume loads
