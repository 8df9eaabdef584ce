"""The assistant on a tiny trained intent run: calibration in the report and in predictions, the three resolution
paths, the answers file's errors, the HTTP routes, the terminal loop and feedback that survives SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap

import pytest

from tuneforge.apps.assistant import AnswersError, Assistant, BiEncoder, FaqIndex, FeedbackLog, load_answers
from tuneforge.apps.assistant.feedback import read_feedback, training_rows
from tuneforge.config import config_from_dict
from tuneforge.inference.predictor import Predictor
from tuneforge.runner import train

INTENTS = {"card_arrival": "my card has not arrived yet where", "lost_card": "lost stolen card help",
           "exchange_rate": "what exchange rate euro", "change_pin": "change pin please new",
           "top_up_failed": "top up failed money"}
OOS_TEXTS = ["movie film love", "great terrible film", "the movie it hate", "love film great", "film hate movie"]

ANSWERS = textwrap.dedent("""\
    slots:
      app: the app
      days: "3 to 5 working days"
    intents:
      card_arrival:
        answer: "Cards arrive within {days}; track yours in {app}."
      lost_card: "Freeze your card in {app} now."
      exchange_rate:
        answer: "We use the {source} rate."
        slots: {source: interbank}
      change_pin: "Change your PIN at any ATM."
      top_up_failed: "Check your card limits in {app}."
      unused_intent: "Not predicted by this run."
    faq:
      - question: "what are your opening hours"
        answer: "We answer chats {hours}."
      - question: "can i close my account"
        answer: "Yes, under Profile in {app}."
    handoff: "Passing you to a colleague."
    """).replace("{hours}", "every day")


def _rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(sorted(INTENTS))
        words = INTENTS[label].split()
        rng.shuffle(words)
        rows.append({"text": " ".join(words[: rng.randint(2, len(words))]), "label": label})
    return rows


@pytest.fixture(scope="module")
def intent_run(tiny_bert_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("assistant")
    (folder / "answers.yaml").write_text(ANSWERS)
    oos = [{"text": t, "label": "oos"} for t in OOS_TEXTS]
    files = {}
    for name, rows in (("train", _rows(160, 0)), ("validation", _rows(40, 1) + oos), ("test", _rows(40, 2) + oos)):
        files[name] = str(folder / f"{name}.jsonl")
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = config_from_dict({
        "model": str(tiny_bert_dir), "output_dir": str(folder / "run"), "seed": 3,
        "data": {"max_length": 32, **files},
        "train": {"epochs": 4, "batch_size": 8, "lr": 3e-3, "progress": False, "precision": "fp32"},
        "eval": {"baselines": [], "oos_label": "oos"},
        "calibration": {"target": 0.6},
        "assistant": {"answers": str(folder / "answers.yaml"), "faq_encoder": str(tiny_bert_dir)},
    })
    return train(cfg).run_dir


def test_report_holds_calibration_and_oos_metrics(intent_run):
    report = json.loads((intent_run / "report.json").read_text())
    for split in ("validation", "test"):
        m = report["metrics"][split]
        for key in ("ece", "ece_before_calibration", "oos_recall", "in_scope_accuracy", "in_scope_coverage",
                    "threshold", "threshold_rule", "coverage_risk", "oos_curve"):
            assert key in m, (split, key)
        assert 0 <= m["in_scope_accuracy"] <= m["in_scope_coverage"] <= 1
    assert report["metrics"]["validation"]["oos_recall"] >= 0.6  # the rule's target, met on validation
    assert report["metrics"]["validation"]["threshold_rule"].startswith("oos_recall 0.6")
    stored = json.loads((intent_run / "calibration.json").read_text())
    assert stored["temperature"] > 0 and stored["oos_score"] in ("max_softmax", "energy", "distance")
    assert (intent_run / "reliability_test.svg").read_text().startswith("<svg")


def test_predictor_returns_calibrated_probabilities_and_unknown(intent_run):
    stored = json.loads((intent_run / "calibration.json").read_text())
    pred = Predictor.from_run_dir(intent_run, precision="fp32")
    out = pred.predict(["my card has not arrived yet", "movie film love"])
    for row in out:
        assert abs(sum(row["scores"].values()) - 1) < 1e-4
        assert row["confidence"] == row["score"] and isinstance(row["unknown"], bool)
        assert row["unknown"] == (row["oos_score"] < stored["threshold"])
    import numpy as np

    from tuneforge.evaluation.calibrate_run import collect_logits
    from tuneforge.evaluation.calibration import softmax

    z = collect_logits(pred.model, pred.task, [pred.task.encode({"text": "my card has not arrived yet"})])
    expected = softmax(z, stored["temperature"])[0]
    assert np.allclose([out[0]["scores"][lab] for lab in pred.task.labels], expected, atol=1e-5)


def _assistant(intent_run, tiny_bert_dir, **kw):
    answers = load_answers(intent_run.parent / "answers.yaml")
    pred = Predictor.from_run_dir(intent_run, precision="fp32")
    faq = FaqIndex(BiEncoder.load(str(tiny_bert_dir)), answers.faq)
    return Assistant(pred.predict, answers, faq, feedback=FeedbackLog(intent_run.parent / "fb.jsonl"), **kw)


def test_three_resolution_paths(intent_run, tiny_bert_dir):
    sure = _assistant(intent_run, tiny_bert_dir, threshold=0.0)
    r = sure.reply("my card has not arrived yet", slots={"days": "2 days"})
    assert r["path"] == "intent" and r["intent"] == "card_arrival"
    assert r["answer"] == "Cards arrive within 2 days; track yours in the app."  # request slot over the default
    assert set(r) >= {"id", "intent", "confidence", "path", "answer", "candidates"}

    never = _assistant(intent_run, tiny_bert_dir, threshold=1.01, faq_min_similarity=0.99)
    r = never.reply("can i close my account")  # the FAQ question itself: similarity 1
    assert r["path"] == "faq" and r["answer"] == "Yes, under Profile in the app."
    assert r["faq"]["question"] == "can i close my account" and r["faq"]["similarity"] > 0.99

    nobody = _assistant(intent_run, tiny_bert_dir, threshold=1.01, faq_min_similarity=1.01)
    r = nobody.reply("movie film love")
    assert r["path"] == "handoff" and r["answer"] == "Passing you to a colleague."
    confs = [c["confidence"] for c in r["candidates"]]
    assert len(confs) == 3 and confs == sorted(confs, reverse=True) and r["intent"] == r["candidates"][0]["intent"]


def test_from_run_dir_uses_the_stored_threshold(intent_run):
    a = Assistant.from_run_dir(intent_run)
    stored = json.loads((intent_run / "calibration.json").read_text())
    for text in ("my card has not arrived yet", "movie film love", "exchange rate euro"):
        r = a.reply(text)
        pred = a.classify([text])[0]
        assert (r["path"] == "intent") == (pred["oos_score"] >= stored["threshold"])
    assert a.feedback_log.path == intent_run / "feedback.jsonl"


@pytest.mark.parametrize("text, line, field", [
    ("intents:\n  a: 'x {nope}'\n", 2, "intents.a: slot {nope}"),
    ("slots: {x: 1}\nintents:\n  a:\n    text: hi\n", 4, "text: unknown key"),
    ("intents:\n  a:\n    slots: {b: c}\n", 3, "intents.a: missing `answer`"),
    ("intents:\n  a: one\n  a: two\n", 3, "intents.a: defined twice"),
    ("intents:\n  a: 'x {'\n", 2, "intents.a"),
    ("intents:\n  a: hi\nfaq:\n  - question: q\n", 4, "faq[0]: missing `answer`"),
    ("intent:\n  a: hi\n", 1, "intent: unknown key"),
    ("intents:\n  a: [hi\n", 3, "invalid YAML"),
])
def test_answers_file_errors_name_file_and_line(tmp_path, text, line, field):
    path = tmp_path / "answers.yaml"
    path.write_text(text)
    with pytest.raises(AnswersError) as err:
        load_answers(path)
    assert str(err.value).startswith(f"{path}:{line}: ") and field in str(err.value)


def test_answers_must_cover_every_run_intent(tmp_path):
    path = tmp_path / "answers.yaml"
    path.write_text("intents:\n  a: hi\n  b: ho\n")
    answers = load_answers(path)
    assert answers.check_labels(["a"]) == ["b"]
    with pytest.raises(AnswersError, match="no answer for 1 intent.*: c"):
        answers.check_labels(["a", "c"])


def test_http_routes_and_feedback_rows(intent_run, tiny_bert_dir, tmp_path):
    from fastapi.testclient import TestClient

    from tuneforge.commands.assist import build_app

    a = _assistant(intent_run, tiny_bert_dir, threshold=0.0)
    a.feedback_log = FeedbackLog(tmp_path / "fb.jsonl")
    client = TestClient(build_app(a))
    r = client.post("/v1/assist", json={"text": "lost stolen card"}).json()
    assert r["path"] == "intent" and r["id"]
    ok = client.post("/v1/feedback", json={"id": r["id"], "correct": False, "intent": "change_pin"})
    assert ok.status_code == 200 and ok.json()["stored"]
    assert client.post("/v1/feedback", json={"id": "nope", "correct": True}).status_code == 404
    assert client.post("/v1/feedback", json={"id": r["id"], "correct": False, "intent": "x"}).status_code == 422
    assert client.post("/v1/assist", json={"text": ""}).status_code == 422
    rows = read_feedback(tmp_path / "fb.jsonl")
    assert rows[0]["predicted_intent"] == r["intent"] and rows[0]["text"] == "lost stolen card"
    assert training_rows(tmp_path / "fb.jsonl") == [{"text": "lost stolen card", "label": "change_pin"}]


def test_terminal_loop(intent_run, tiny_bert_dir, tmp_path):
    from tuneforge.commands.assist import assist_loop

    a = _assistant(intent_run, tiny_bert_dir, threshold=0.0)
    a.feedback_log = FeedbackLog(tmp_path / "fb.jsonl")
    out: list[str] = []
    assert assist_loop(a, ["/wrong", "where is my card", "/wrong change_pin", "/exit", "ignored"], out.append) == 1
    text = "".join(out)
    assert "nothing to judge" in text and "assistant> " in text and "feedback saved" in text
    assert read_feedback(tmp_path / "fb.jsonl")[0]["correct_intent"] == "change_pin"


WRITER = """
import sys
from tuneforge.apps.assistant.feedback import FeedbackLog
log = FeedbackLog(sys.argv[1])
i = 0
while True:
    log.append({"reply_id": f"r{i}", "correct": False, "text": "where is my card " * 20, "correct_intent": "x"})
    print(i, flush=True)
    i += 1
"""


def test_feedback_survives_sigkill(tmp_path):
    path = tmp_path / "feedback.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    acked = -1
    for line in proc.stdout:
        acked = int(line)
        if acked >= 150:
            break
    proc.send_signal(signal.SIGKILL)  # mid-stream: the writer is still appending
    proc.wait(timeout=30)
    rows = read_feedback(path)
    ids = {r["reply_id"] for r in rows}
    assert {f"r{i}" for i in range(acked + 1)} <= ids  # every acknowledged record is on disk
    FeedbackLog(path).append({"reply_id": "after", "correct": True})  # the file stays appendable
    assert read_feedback(path)[-1]["reply_id"] == "after"


def test_calibrate_command_refits_a_finished_run(intent_run, capsys):
    from tuneforge.cli import main as cli_main

    path = intent_run / "calibration.json"
    before = json.loads(path.read_text())
    path.unlink()
    assert cli_main(["calibrate", str(intent_run)]) == 0
    after = json.loads(path.read_text())
    assert after["temperature"] == pytest.approx(before["temperature"], rel=1e-6)
    assert after["threshold"] == pytest.approx(before["threshold"], rel=1e-6)
    assert "validation: ECE" in capsys.readouterr().out


def test_serve_adds_the_assistant_routes_next_to_predict(intent_run, tmp_path):
    from fastapi.testclient import TestClient

    from tuneforge.apps.routes import add_run_routes
    from tuneforge.inference.server import create_app

    predictor = Predictor.from_run_dir(intent_run, precision="fp32")
    app = create_app(predictor)
    assert add_run_routes(app, predictor) == ["/v1/assist", "/v1/feedback"]
    with TestClient(app) as client:
        reply = client.post("/v1/assist", json={"text": "change pin please"}).json()
        assert reply["path"] in ("intent", "faq", "handoff") and reply["candidates"]
        assert client.post("/v1/feedback", json={"id": reply["id"], "correct": True}).json()["stored"]
        pred = client.post("/predict", json={"inputs": ["change pin please"]}).json()["predictions"][0]
        assert pred["label"] == reply["intent"] and "unknown" in pred


def test_faq_bi_encoder_fine_tuning_brings_questions_to_their_answers(tiny_bert_dir, tmp_path):
    pairs = [("where is my card", "it has not arrived yet"), ("what is the exchange rate", "the euro rate is good"),
             ("close my account", "please help close account"), ("i lost my money", "refund pending transfer")]
    enc = BiEncoder.load(str(tiny_bert_dir))

    def hits() -> int:
        sims = enc.embed([q for q, _ in pairs]) @ enc.embed([a for _, a in pairs]).T
        return int((sims.argmax(-1) == __import__("torch").arange(len(pairs))).sum())

    losses = enc.fine_tune(pairs, epochs=30, lr=3e-3, batch_size=4)
    assert losses[-1] < losses[0] * 0.5 and hits() == len(pairs)
    enc.save(tmp_path / "faq")
    again = BiEncoder.load(str(tmp_path / "faq"))
    assert again.embed(["where is my card"]).allclose(enc.embed(["where is my card"]), atol=1e-5)


def test_assist_command_exports_feedback_and_tunes_the_faq(intent_run, capsys, tmp_path):
    from tuneforge.cli import main as cli_main

    fb = tmp_path / "fb.jsonl"
    log = FeedbackLog(fb)
    log.append({"reply_id": "a", "correct": False, "text": "my pin", "correct_intent": "change_pin"})
    log.append({"reply_id": "b", "correct": True, "text": "lost card"})
    out = tmp_path / "extra.jsonl"
    assert cli_main(["assist", str(intent_run), "--feedback", str(fb), "--export-feedback", str(out)]) == 0
    assert [json.loads(x) for x in out.read_text().splitlines()] == [{"text": "my pin", "label": "change_pin"}]
    assert cli_main(["assist", str(intent_run), "--tune-faq", str(tmp_path / "faq"), "--epochs", "1"]) == 0
    assert (tmp_path / "faq" / "config.json").is_file() and "FAQ bi-encoder tuned" in capsys.readouterr().out


def test_distance_score_is_stored_and_applied_at_prediction(intent_run, tmp_path):
    import shutil

    import numpy as np

    from tuneforge.evaluation.calibrate_run import CENTROIDS, collect_outputs, load_centroids, recalibrate
    from tuneforge.evaluation.calibration import distance_score

    run = tmp_path / "run"
    shutil.copytree(intent_run, run)
    cfg = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(cfg.replace("oos_score: auto", "oos_score: distance"))
    extra = recalibrate(run)
    assert extra["test"]["oos_score"] == "distance" and set(extra["test"]["oos_auroc"]) == {
        "max_softmax", "energy", "distance"}
    pred = Predictor.from_run_dir(run, precision="fp32")
    texts = ["my card has not arrived yet", "movie film love", "change pin"]
    out = pred.predict(texts)
    _, emb = collect_outputs(pred.model, pred.task, [pred.task.encode({"text": t}) for t in texts], embeddings=True)
    expected = distance_score(emb, load_centroids(run / CENTROIDS))
    stored = json.loads((run / "calibration.json").read_text())
    assert np.allclose([r["oos_score"] for r in out], expected, atol=1e-5)
    assert [r["unknown"] for r in out] == [bool(e < stored["threshold"]) for e in expected]


# ----- optional rewording: a rewrite is used only when it says what the template says -----


@pytest.mark.parametrize("rewrite, reason", [
    ("Good news! Cards arrive within 2 days, and you can track yours in the app.", None),
    ("Cards arrive within 3 days; track yours in the app.", "drops '2"),
    ("Cards arrive within 2 days; call 555-0100 or track yours in the app.", "adds '555-0100'"),
    ("Thanks for asking about 2 days in the app.", "content words"),
    ("", "empty rewrite"),
])
def test_rewrite_check(rewrite, reason):
    from tuneforge.apps.assistant.reword import check_rewrite

    got = check_rewrite("Cards arrive within 2 days; track yours in the app.", rewrite, keep=["2 days", "the app"])
    assert got is None if reason is None else reason in got


def test_rewording_keeps_the_template_when_the_rewrite_changes_a_fact(intent_run, tiny_bert_dir):
    from tuneforge.apps.assistant.reword import Rewriter

    seen = []

    def good(messages, budget):
        seen.append((messages, budget))
        return "Sure! Cards arrive within 2 days - you can track yours in the app."

    bot = _assistant(intent_run, tiny_bert_dir, threshold=0.0, rewriter=Rewriter(good))
    r = bot.reply("my card has not arrived yet", slots={"days": "2 days"})
    assert r["answer"] == "Sure! Cards arrive within 2 days - you can track yours in the app."
    assert r["reword"] == {"used": True, "template_answer": "Cards arrive within 2 days; track yours in the app."}
    assert "my card has not arrived yet" in seen[0][0][-1]["content"] and seen[0][1] > 10

    bad = _assistant(intent_run, tiny_bert_dir, threshold=0.0,
                     rewriter=Rewriter(lambda m, n: "Cards arrive within 10 days; track yours in the app."))
    r = bad.reply("my card has not arrived yet", slots={"days": "2 days"})
    assert r["answer"] == "Cards arrive within 2 days; track yours in the app."
    assert r["reword"]["used"] is False and "drops '2" in r["reword"]["kept_because"]

    def broken(messages, budget):
        raise RuntimeError("model crashed")

    r = _assistant(intent_run, tiny_bert_dir, threshold=0.0, rewriter=Rewriter(broken)).reply("change pin please")
    assert r["answer"] == r["reword"]["template_answer"] and "model crashed" in r["reword"]["kept_because"]
    echo = _assistant(intent_run, tiny_bert_dir, threshold=0.0, rewriter=Rewriter(
        lambda m, n: "Customer question: my card has not arrived yet\nAnswer to rewrite: Cards arrive within 2 days; "
                     "track yours in the app."))
    r = echo.reply("my card has not arrived yet", slots={"days": "2 days"})
    assert r["reword"] == {"used": False, "kept_because": "repeats the prompt",
                           "template_answer": "Cards arrive within 2 days; track yours in the app."}
    # the hand-off message is never reworded
    nobody = _assistant(intent_run, tiny_bert_dir, threshold=1.01, faq_min_similarity=1.01, rewriter=Rewriter(good))
    assert "reword" not in nobody.reply("movie film love")


def test_rewording_with_a_real_causal_lm_never_changes_the_facts(intent_run, tiny_llama_dir, tiny_bert_dir):
    """A random tiny LM writes noise: the check must refuse it and the template answers."""
    from tuneforge.apps.assistant.reword import Rewriter

    bot = Assistant.from_run_dir(intent_run, threshold=0.0, reword=str(tiny_llama_dir))
    r = bot.reply("my card has not arrived yet")
    assert r["answer"] == "Cards arrive within 3 to 5 working days; track yours in the app."
    assert r["reword"]["used"] is False
    with pytest.raises(ValueError, match="not a causal LM"):
        Rewriter.load(str(tiny_bert_dir))
