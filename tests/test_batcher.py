"""The micro-batcher gathers concurrent requests into one forward, routes each its own results, keeps a bad
request's error to itself, refuses beyond its queue and answers everything it accepted, also on close."""

from __future__ import annotations

import threading
import time

import pytest

from tuneforge.inference.batcher import BatcherClosed, MicroBatcher, QueueFull, retry_after_seconds


class Gate:
    """A predict function that records each call's inputs and holds the first call until ``release`` is set."""

    def __init__(self, fail_on: str | None = None):
        self.calls: list[list[str]] = []
        self.entered, self.release = threading.Event(), threading.Event()
        self.fail_on = fail_on

    def __call__(self, items: list[str]) -> list[str]:
        self.entered.set()
        assert self.release.wait(10)
        self.calls.append(list(items))
        if self.fail_on in items:
            raise ValueError(f"bad input {self.fail_on}")
        return [s.upper() for s in items]


class Answers:
    def __init__(self):
        self.got: dict[int, tuple] = {}
        self.lock = threading.Lock()

    def cb(self, key: int):
        def done(results, error):
            with self.lock:
                self.got[key] = (results, error)
        return done


def wait_until(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.002)


def test_concurrent_requests_share_one_forward_and_get_their_own_results():
    gate, answers = Gate(), Answers()
    b = MicroBatcher(gate, max_batch_size=64, max_wait_s=0.001, max_queue=100)
    b.submit(["first"], answers.cb(-1))
    assert gate.entered.wait(5)  # the first forward is running; the rest queue behind it
    for i in range(20):
        b.submit([f"r{i}a", f"r{i}b"] if i % 2 else [f"r{i}"], answers.cb(i))
    assert b.queued == 30
    gate.release.set()
    b.close()
    assert [len(c) for c in gate.calls] == [1, 30]  # 21 requests, 2 forwards
    assert answers.got[-1] == (["FIRST"], None)
    for i in range(20):
        assert answers.got[i] == (([f"R{i}A", f"R{i}B"] if i % 2 else [f"R{i}"]), None)


def test_max_batch_size_caps_a_forward_without_splitting_a_request():
    gate, answers = Gate(), Answers()
    b = MicroBatcher(gate, max_batch_size=4, max_wait_s=0.0, max_queue=100)
    b.submit(["x"], answers.cb(0))
    assert gate.entered.wait(5)
    for i, n in enumerate([3, 3, 1, 6], start=1):
        b.submit([f"{i}-{k}" for k in range(n)], answers.cb(i))
    gate.release.set()
    b.close()
    assert [len(c) for c in gate.calls] == [1, 3, 4, 6]  # [3], [3+1], and the 6-input request alone
    assert all(err is None for _, err in answers.got.values()) and len(answers.got) == 5


def test_a_bad_request_fails_alone():
    gate, answers = Gate(fail_on="bad"), Answers()
    gate.release.set()
    b = MicroBatcher(gate, max_batch_size=64, max_wait_s=0.05, max_queue=100)
    for i, items in enumerate([["ok1"], ["bad"], ["ok2", "ok3"]]):
        b.submit(items, answers.cb(i))
    b.close()
    assert answers.got[0] == (["OK1"], None) and answers.got[2] == (["OK2", "OK3"], None)
    assert answers.got[1][0] is None and "bad input bad" in str(answers.got[1][1])


def test_full_queue_refuses_with_retry_after_and_loses_nothing_accepted():
    gate, answers = Gate(), Answers()
    b = MicroBatcher(gate, max_batch_size=8, max_wait_s=0.0, max_queue=5)
    b.submit(["a"], answers.cb(0))
    assert gate.entered.wait(5)
    b.submit(["b", "c", "d"], answers.cb(1))
    b.submit(["e", "f"], answers.cb(2))
    assert b.saturated
    with pytest.raises(QueueFull) as info:
        b.submit(["g"], answers.cb(3))
    assert info.value.retry_after >= 1 and "max_queue 5" in str(info.value)
    gate.release.set()
    b.close()
    assert b.queued == 0 and sorted(answers.got) == [0, 1, 2]
    assert all(err is None for _, err in answers.got.values())
    with pytest.raises(BatcherClosed):
        b.submit(["late"], answers.cb(4))


def test_retry_after_follows_the_measured_rate():
    assert retry_after_seconds(10, None) == 1
    assert retry_after_seconds(300, 100.0) == 3
    assert retry_after_seconds(10**6, 1.0) == 60


def test_a_broken_callback_does_not_stop_the_worker():
    answers = Answers()
    b = MicroBatcher(lambda xs: xs, max_wait_s=0.0)

    def boom(results, error):
        raise RuntimeError("callback bug")

    b.submit(["x"], boom)
    b.submit(["y"], answers.cb(1))
    b.close()
    assert answers.got[1] == (["y"], None)
