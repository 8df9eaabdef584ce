"""Every registered task × every PEFT method: the loss falls, a checkpoint round-trips exactly, the head is saved.

Tasks come from the TASKS registry and their tiny data from ``tests/tiny_tasks.py``; a task without a factory
there is skipped with a message saying so.
"""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from tests.peft_harness import outputs_of, probe_batch, tiny_config, train_pair
from tests.tiny_tasks import TINY_TASKS
from tuneforge.inference.predictor import Predictor
from tuneforge.peft_methods import PEFT_METHODS
from tuneforge.tasks import TASKS

PAIRS = [(task, method) for task in TASKS.names() for method in PEFT_METHODS.names()]


@pytest.fixture
def model_for(request, tiny_bert_dir):
    def pick(kind: str):
        if kind == "encoder":
            return tiny_bert_dir
        return request.getfixturevalue("tiny_llama_dir")
    return pick


@pytest.mark.parametrize(("task", "method"), PAIRS, ids=[f"{t}-{m}" for t, m in PAIRS])
def test_task_method_pair(task, method, tmp_path, monkeypatch, model_for, no_network):
    if task not in TINY_TASKS:
        pytest.skip(f"no tiny data for task {task!r}: add a factory to tests/tiny_tasks.py")
    spec = TINY_TASKS[task](tmp_path)
    cfg = tiny_config(task, method, tmp_path, model_for(spec.model_kind), spec)
    trained = train_pair(cfg, monkeypatch)

    # a few steps: finite, falling loss
    assert len(trained.losses) >= 5
    assert all(math.isfinite(v) for v in trained.losses), trained.losses
    assert trained.losses[-1] < trained.losses[0], trained.losses

    # save → load: the Predictor rebuilds the same model from the run directory
    predictor = Predictor.from_run_dir(trained.run_dir)
    batch = probe_batch(predictor.task, cfg)
    expected, got = outputs_of(trained.model, batch), outputs_of(predictor.model, batch)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=0, msg=f"{task}/{method}: {key}")

    # the checkpoint holds exactly the trainable tensors: adapter (under backbone.) and task head (outside it)
    saved = load_file(str(trained.run_dir / "best" / "model.safetensors"))
    trainable = {n for n, p in trained.model.named_parameters() if p.requires_grad}
    assert set(saved) == trainable
    head = {n for n, _ in trained.model.named_parameters() if not n.startswith("backbone.")}  # none for an LM
    assert head <= set(saved), "the task head must be saved with the adapter"
    assert any(k.startswith("backbone.") for k in saved), "the adapter must be saved"
    total = sum(p.numel() for p in trained.model.parameters())
    assert sum(t.numel() for t in saved.values()) < 0.5 * total
