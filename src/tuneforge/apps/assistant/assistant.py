"""The assistant's decision: a confident intent answers with its template; otherwise the nearest FAQ answer when it
is similar enough; otherwise a hand-off to a human with the top candidate intents. Every reply has an id that
feedback refers to."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tuneforge.apps.assistant.answers import Answers, load_answers
from tuneforge.apps.assistant.feedback import FeedbackLog
from tuneforge.apps.assistant.retrieval import BiEncoder, FaqIndex
from tuneforge.apps.assistant.reword import Rewriter

PATHS = ("intent", "faq", "handoff")
DEFAULT_CONFIDENCE = 0.5  # for runs without a stored calibration: answer when the top probability is above it
KEEP_REPLIES = 10_000  # recent replies kept in memory so feedback can name one by id

Classify = Callable[[Sequence[str]], list[dict[str, Any]]]


class Assistant:
    """``reply(text)`` → a dict with ``id``, ``path`` (intent | faq | handoff), ``intent``, ``confidence``,
    ``answer`` and ``candidates``; ``feedback(reply_id, correct, ...)`` appends to the feedback log.

    ``classify`` returns Predictor-style rows (``label``, ``score``, ``scores`` and, for calibrated runs,
    ``unknown``). ``threshold`` overrides the run's stored abstention with a bound on the calibrated confidence.
    ``rewriter`` rewords intent and FAQ answers when its check accepts the rewrite (``reword`` in the reply).
    """

    def __init__(self, classify: Classify, answers: Answers, faq: FaqIndex | None = None,
                 threshold: float | None = None, faq_min_similarity: float = 0.75, top_k: int = 3,
                 feedback: FeedbackLog | None = None, columns: tuple[str, str] = ("text", "label"),
                 rewriter: Rewriter | None = None):
        self.classify, self.answers, self.faq, self.rewriter = classify, answers, faq, rewriter
        self.threshold, self.faq_min_similarity, self.top_k = threshold, faq_min_similarity, top_k
        self.feedback_log, self.columns = feedback, columns
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def confident(self, pred: dict[str, Any]) -> bool:
        if self.threshold is not None:
            return pred["score"] >= self.threshold
        if "unknown" in pred:
            return not pred["unknown"]
        return pred["score"] >= DEFAULT_CONFIDENCE

    def reply(self, text: str, slots: dict[str, str] | None = None) -> dict[str, Any]:
        text = text.strip()
        if not text:
            raise ValueError("text is empty")
        pred = self.classify([text])[0]
        ranked = sorted(pred["scores"].items(), key=lambda kv: -kv[1])[: self.top_k]
        out: dict[str, Any] = {"id": uuid.uuid4().hex, "text": text, "intent": pred["label"],
                               "confidence": round(float(pred["score"]), 4),
                               "candidates": [{"intent": k, "confidence": round(float(v), 4)} for k, v in ranked]}
        template = None
        if self.confident(pred) and pred["label"] in self.answers.templates:
            template = self.answers.templates[pred["label"]]
            out.update(path="intent", answer=self.answers.render(pred["label"], slots))
        else:
            match = self.faq.best(text) if self.faq is not None else None
            if match is not None and match.similarity >= self.faq_min_similarity:
                template = match.answer
                out.update(path="faq", answer=self.answers.render_text(match.answer, slots),
                           faq={"question": match.question, "similarity": round(match.similarity, 4)})
            else:
                out.update(path="handoff", answer=self.answers.render_text(self.answers.handoff, slots))
        if self.rewriter is not None and template is not None:
            keep = self.answers.slot_values(template, slots, pred["label"] if out["path"] == "intent" else None)
            reworded, info = self.rewriter.reword(text, out["answer"], keep)
            out["reword"] = {**info, "template_answer": out["answer"]}
            out["answer"] = reworded
        self._remember(out)
        return out

    def _remember(self, reply: dict[str, Any]) -> None:
        with self._lock:
            self._recent[reply["id"]] = reply
            while len(self._recent) > KEEP_REPLIES:
                self._recent.popitem(last=False)

    def feedback(self, reply_id: str, correct: bool, correct_intent: str | None = None,
                 comment: str | None = None, text: str | None = None) -> dict[str, Any]:
        """Record a judgement of reply ``reply_id``. A reply the server no longer remembers (restarted) needs
        ``text``. ``correct_intent`` makes the row usable as training data (``feedback.training_rows``)."""
        if self.feedback_log is None:
            raise RuntimeError("this assistant has no feedback log")
        with self._lock:
            reply = self._recent.get(reply_id)
        if reply is None and not text:
            raise KeyError(f"unknown reply id {reply_id!r}: send the reply's text with the feedback")
        if correct_intent is not None and correct_intent not in self.answers.templates:
            raise ValueError(f"unknown intent {correct_intent!r}; known: {', '.join(sorted(self.answers.templates))}")
        row = {"reply_id": reply_id, "correct": bool(correct), "text": reply["text"] if reply else text,
               "predicted_intent": reply["intent"] if reply else None, "path": reply["path"] if reply else None,
               "confidence": reply["confidence"] if reply else None, "correct_intent": correct_intent,
               "comment": comment}
        if correct_intent:  # the run's own column names: the file reads back as training rows directly
            row[self.columns[0]], row[self.columns[1]] = row["text"], correct_intent
        return self.feedback_log.append(row)

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, answers: str | Path | None = None, faq_encoder: str | None = None,
                     threshold: float | None = None, feedback: str | Path | None = None,
                     precision: str = "fp32", reword: str | None = None) -> Assistant:
        """The assistant configured by the run's ``assistant`` section; arguments override it."""
        from tuneforge.inference.predictor import Predictor

        predictor = Predictor.from_run_dir(run_dir, batch_size=8, precision=precision)
        return cls.from_predictor(predictor, answers, faq_encoder, threshold, feedback, reword)

    @classmethod
    def from_predictor(cls, predictor: Any, answers: str | Path | None = None, faq_encoder: str | None = None,
                       threshold: float | None = None, feedback: str | Path | None = None,
                       reword: str | None = None) -> Assistant:
        """The assistant on an already loaded classification ``Predictor`` (the server shares its model)."""
        run_dir = Path(predictor.run_dir)
        opts = predictor.cfg.assistant
        labels = getattr(predictor.task, "labels", None)
        if getattr(predictor.task, "name", None) != "classification" or not labels or \
                predictor.task.multi_label:
            raise ValueError(f"{run_dir}: the assistant needs a single-label classification run")
        loaded = load_answers(resolve_path(answers or opts.answers, run_dir, "assistant.answers"))
        loaded.check_labels(labels)
        faq = None
        if loaded.faq:
            faq = FaqIndex(faq_bi_encoder(faq_encoder or opts.faq_encoder, predictor, run_dir), loaded.faq)
        log = FeedbackLog(resolve_output(feedback or opts.feedback, run_dir))
        data = predictor.cfg.data
        source = reword or opts.reword
        rewriter = Rewriter.load(source, opts.reword_min_word_recall) if source else None
        return cls(predictor.predict, loaded, faq, threshold, opts.faq_min_similarity, opts.handoff_top_k, log,
                   (data.text_column, data.label_column), rewriter)


def faq_bi_encoder(name: str, predictor: Any, run_dir: Path) -> BiEncoder:
    """``run``: the classifier's own body and tokenizer; anything else: ``BiEncoder.load`` (a model name or a
    folder; relative folders are looked up in the run directory first)."""
    if name == "run":
        body = getattr(predictor.model, "backbone", None)
        if body is None:
            raise ValueError("assistant.faq_encoder run: this run's model has no plain body (PEFT or exported "
                             "runs); name an encoder instead, e.g. minilm")
        return BiEncoder(body, predictor.task.tokenizer)
    local = run_dir / name
    return BiEncoder.load(str(local) if local.is_dir() else name)


def resolve_path(value: str | Path | None, run_dir: Path, field: str) -> Path:
    """An input file named in the config: absolute, else relative to the current directory, else to the run."""
    if not value:
        raise ValueError(f"{field} is not set: name an answers file in the run's config or pass --answers")
    path = Path(value)
    for candidate in ([path] if path.is_absolute() else [Path.cwd() / path, run_dir / path]):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{field}: {value} not found (looked in {Path.cwd()} and {run_dir})")


def resolve_output(value: str | Path, run_dir: Path) -> Path:
    path = Path(value)
    return path if path.is_absolute() else run_dir / path
