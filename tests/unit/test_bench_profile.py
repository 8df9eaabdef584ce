"""bench_mfu's --profile summary: per-step self times, the top ops in order, shares of the measured step."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_mfu.py"


def load():
    spec = importlib.util.spec_from_file_location("bench_mfu_under_test", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeProfiler:
    def key_averages(self):  # self times in microseconds, as torch.profiler reports them
        return [SimpleNamespace(key="aten::copy_", self_cpu_time_total=20_000.0, count=100),
                SimpleNamespace(key="aten::mm", self_cpu_time_total=100_000.0, count=40),
                SimpleNamespace(key="aten::view", self_cpu_time_total=0.0, count=500),
                SimpleNamespace(key="aten::gelu", self_cpu_time_total=4_000.0, count=6)]


def test_op_profile_is_per_step_and_sorted():
    bench = load()
    prof = bench.op_profile(FakeProfiler(), [10.0, 10.1, 10.2], steps=2, top=2)
    assert prof["steps"] == 2
    assert abs(prof["step_ms"] - 100.0) < 1e-6  # 0.2 s over 2 steps
    assert abs(prof["self_ms_per_step"] - 62.0) < 1e-6  # (100 + 20 + 4) ms / 2; zero-time ops left out
    assert [op["op"] for op in prof["ops"]] == ["aten::mm", "aten::copy_"]
    assert prof["ops"][0]["self_ms_per_step"] == 50.0 and prof["ops"][0]["calls_per_step"] == 20.0
    lines = bench.profile_lines([{"side": "bf16:32", "repeat": 1, "profile": prof}, {"side": "fp32:32"}])
    assert lines[0].startswith("profile of bf16:32 (repeat 1), 2 steps: 100.0 ms a step")
    assert "aten::mm" in lines[1] and lines[1].rstrip().endswith("50.0%")
    assert len(lines) == 3  # the unprofiled run adds nothing
