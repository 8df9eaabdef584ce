"""Saliency of the prompt for a span of a generated answer, on a tiny random causal LM: IG against its definition,
completeness, the span choice (token bounds, text, a given answer), the HTML, Predictor.explain and the CLI."""

import json

import pytest
import torch

pytest.importorskip("captum")

from tests.tiny_tasks import TINY_TASKS  # noqa: E402
from tuneforge.config import config_from_dict  # noqa: E402
from tuneforge.explain import ExplainError, explain_inputs  # noqa: E402
from tuneforge.explain.attribution import baseline_ids, integrated_gradients, word_embeddings  # noqa: E402
from tuneforge.explain.generation import prompt_tokens, span_target, word_groups  # noqa: E402
from tuneforge.explain.render import page  # noqa: E402

PROMPT = "is good positive or negative?"


def _config(model_dir, tmp_path, **extra):
    spec = TINY_TASKS["generation"](tmp_path)
    return config_from_dict({"model": str(model_dir), "task": "generation", "output_dir": str(tmp_path / "run"),
                             "seed": 1, "data": spec.data, "eval": {"baselines": []}, **spec.extra, **extra})


@pytest.fixture(scope="module")
def lm(tiny_llama_dir, tmp_path_factory):
    from tuneforge.run import prepare

    prepared = prepare(_config(tiny_llama_dir, tmp_path_factory.mktemp("gen_explain")))
    return prepared.build_model().model.eval(), prepared.task


def _log_probs(model, task, answer):
    """log p(answer token j | prompt, answer before j) for each j, from the full logits (no span shortcut)."""
    messages = task.parse_input(PROMPT)["messages"]
    prompt = prompt_tokens(task.tokenizer, messages, task.max_length)["ids"]
    ids = task.tokenizer(answer, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model.backbone(input_ids=torch.tensor([prompt + ids])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return [float(logp[len(prompt) + j - 1, t]) for j, t in enumerate(ids)]


def test_generated_answer_saliency_is_complete(lm):
    model, task = lm
    e = explain_inputs(model, task, [PROMPT], steps=50)[0]
    assert e["answer_source"] == "generated" and e["text"].startswith("<|im_start|>user")
    assert [w["text"] for w in e["words"]] == ["is", "good", "positive", "or", "negative", "?"]
    assert all(e["text"][w["start"]:w["end"]] == w["text"] for w in e["words"])
    n = len(e["answer_tokens"])
    assert 1 <= n <= 3 and e["span"] == {"start": 0, "end": n, "text": e["generated"].strip()}
    ig = e["integrated_gradients"]
    assert ig["steps"] == 50 and ig["relative_completeness_error"] < 0.01
    assert ig["sum"] == pytest.approx(sum(w["ig"] for w in e["words"]), abs=1e-6)  # template tokens: zero
    # the explained answer is what the model generates for the prompt (greedy, the run's decoding)
    messages = task.parse_input(PROMPT)["messages"]
    prompt = torch.tensor([prompt_tokens(task.tokenizer, messages, task.max_length)["ids"]])
    new = model.generate(prompt, torch.ones_like(prompt))[0].tolist()
    cut = next((i for i, t in enumerate(new) if t in model.stop_ids), len(new))
    assert cut == n and e["generated"] == task.tokenizer.decode(new[:cut], skip_special_tokens=True)


def test_generation_ig_matches_its_definition(lm):
    """Captum's attributions for the span log-probability against IG written out: (x - x') times the mean
    gradient along the straight path (midpoint rule, 256 points)."""
    model, task = lm
    messages = task.parse_input(PROMPT)["messages"]
    prompt = prompt_tokens(task.tokenizer, messages, task.max_length)
    answer = task.tokenizer("good great film", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt["ids"] + answer])
    mask = torch.ones_like(ids)
    keep = torch.ones_like(ids)
    for w in word_groups(prompt["text"], messages, prompt["offsets"]):
        keep[0, w["positions"]] = 0
    base = baseline_ids(ids, keep, task.tokenizer.pad_token_id)
    target = span_target(model.backbone, len(prompt["ids"]), answer, 1, 3)
    ig = integrated_gradients(target, model, ids, mask, None, base, steps=50)

    emb, n = word_embeddings(model), 256
    with torch.no_grad():
        x, b = emb(ids), emb(base)
    points = (b + ((torch.arange(n) + 0.5) / n).view(n, 1, 1) * (x - b)).requires_grad_()
    handle = emb.register_forward_hook(lambda m, i, o: points)
    try:
        grads = torch.autograd.grad(target(ids.repeat(n, 1), mask.repeat(n, 1), None).sum(), points)[0]
    finally:
        handle.remove()
    ref = ((x - b)[0] * grads.mean(0)).sum(-1).double()
    got = torch.tensor(ig.token_attributions, dtype=torch.float64)
    assert torch.allclose(got, ref, atol=2e-3 * float(ref.abs().max()) + 1e-6)
    assert (got[keep[0].bool()] == 0).all() and ig.completeness_error < 0.01


def test_span_choice(lm):
    model, task = lm
    per_token = _log_probs(model, task, "good great film")
    whole, = explain_inputs(model, task, [PROMPT], steps=20, answer="good great film")
    last_two, = explain_inputs(model, task, [PROMPT], steps=20, answer="good great film", span=(1, 3))
    film, = explain_inputs(model, task, [PROMPT], steps=20, answer="good great film", span_text="film")
    tail, = explain_inputs(model, task, [PROMPT], steps=20, answer="good great film", span=(-1, 1 << 30))
    assert whole["answer_source"] == "given" and [t["text"].strip() for t in whole["answer_tokens"]] == [
        "good", "great", "film"]
    assert (whole["span"]["start"], whole["span"]["end"]) == (0, 3)
    assert last_two["span"] == {"start": 1, "end": 3, "text": "great film"}
    assert film["span"] == tail["span"] == {"start": 2, "end": 3, "text": "film"}
    assert whole["log_probability"] == pytest.approx(sum(per_token), abs=1e-4)
    assert last_two["log_probability"] == pytest.approx(per_token[1] + per_token[2], abs=1e-4)
    assert film["log_probability"] == pytest.approx(per_token[2], abs=1e-4)
    assert last_two["words"] != whole["words"]  # another target, other attributions
    for e in (whole, last_two, film):
        assert e["integrated_gradients"]["relative_completeness_error"] < 0.01
    html = page([last_two])
    assert "given answer" in html and "great film" in html and html.count('class="w"') == 12
    with pytest.raises(ExplainError, match="selects no token"):
        explain_inputs(model, task, [PROMPT], answer="good great film", span=(3, 5))
    with pytest.raises(ExplainError, match="not in the answer"):
        explain_inputs(model, task, [PROMPT], answer="good great film", span_text="movie")
    with pytest.raises(ExplainError, match="not both"):
        explain_inputs(model, task, [PROMPT], answer="good film", span=(0, 1), span_text="good")
    with pytest.raises(ExplainError, match="--label does not apply"):
        explain_inputs(model, task, [PROMPT], label="positive")


def test_explain_command_on_a_generation_run(tiny_llama_dir, tmp_path, capsys):
    from tuneforge.cli import main
    from tuneforge.inference.predictor import Predictor
    from tuneforge.runner import train

    cfg = _config(tiny_llama_dir, tmp_path, train={"epochs": 1, "batch_size": 16, "progress": False,
                                                   "precision": "fp32", "trackers": []})
    run = train(cfg).run_dir
    got = Predictor.from_run_dir(run, precision="fp32").explain([PROMPT], answer="positive")[0]
    assert got["generated"] == "positive" and got["integrated_gradients"]["relative_completeness_error"] < 0.01
    out = tmp_path / "why.html"
    capsys.readouterr()  # the training run's output
    assert main(["explain", str(run), "--input", PROMPT, "--answer", "good great film", "--span", "1:",
                 "--steps", "20", "--html", str(out)]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert line["span"]["text"] == "great film" and line["integrated_gradients"]["steps"] == 20
    assert "log-probability difference" in out.read_text()
    assert main(["explain", str(run), "--input", PROMPT, "--label", "x"]) == 2
    assert "--label does not apply" in capsys.readouterr().err
