"""Optional rewording of a chosen answer by a small causal LM, guarded so it can never change what is said.

The template (or FAQ answer) stays the source of truth: a rewrite is used only when it keeps every number, link,
e-mail address and filled-in slot value verbatim, keeps most of the answer's content words, adds no number or link
of its own and is not much longer. Otherwise the reply keeps the template and says why (``reword.kept_because``).
Greedy decoding, so the same question gets the same wording.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Messages = list[dict[str, str]]
Generate = Callable[[Messages, int], str]

SYSTEM = ("You rewrite customer-service answers so they read naturally. Keep every fact, number, name and link "
          "exactly as written. Do not add information, promises or questions. Reply with the rewritten answer only.")
_NUMBER = re.compile(r"\d+(?:[.,:/-]\d+)*")
_LINK = re.compile(r"(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+\.[\w.]+")
_WORD = re.compile(r"[^\W\d_]{4,}", re.UNICODE)
STOPWORDS = frozenset(
    "about after again also been before being below between both could does doing down during each from further "
    "have having here into just more most once only other over same should some such than that their theirs them "
    "then there these they this those through under until very were what when where which while will with would "
    "your yours you're please thank thanks".split())


def content_words(text: str) -> set[str]:
    """Lower-cased words of four or more letters that are not stopwords.

    >>> sorted(content_words("Your new card will arrive within 5 working days."))
    ['arrive', 'card', 'days', 'within', 'working']
    """
    return {w for w in (m.lower() for m in _WORD.findall(text)) if w not in STOPWORDS}


def _tokens(pattern: re.Pattern[str], text: str) -> set[str]:
    return {m.rstrip(".,;:!?)") for m in pattern.findall(text)}


def check_rewrite(original: str, rewrite: str, keep: Iterable[str] = (), min_word_recall: float = 0.6,
                  max_growth: float = 2.0) -> str | None:
    """None when ``rewrite`` says what ``original`` says, else the reason it does not.

    ``keep``: strings that must appear verbatim (the slot values filled into the template).

    >>> check_rewrite("Your card arrives in 5 days.", "Good news: your card arrives in 5 days!")
    >>> check_rewrite("Your card arrives in 5 days.", "Your card arrives in 7 days.")
    "drops '5'"
    """
    rewrite = rewrite.strip()
    if not rewrite:
        return "empty rewrite"
    for needed in sorted(_tokens(_NUMBER, original) | _tokens(_LINK, original) | {k for k in keep if k}):
        if needed not in rewrite:
            return f"drops {needed!r}"
    added = sorted((_tokens(_NUMBER, rewrite) | _tokens(_LINK, rewrite))
                   - (_tokens(_NUMBER, original) | _tokens(_LINK, original)))
    if added:
        return f"adds {added[0]!r}"
    words = content_words(original)
    if words:
        recall = len(words & content_words(rewrite)) / len(words)
        if recall < min_word_recall:
            return f"keeps {recall:.0%} of the answer's content words (needs {min_word_recall:.0%})"
    if len(rewrite.split()) > max_growth * len(original.split()) + 8:
        return f"{len(rewrite.split())} words for a {len(original.split())}-word answer"
    return None


PROMPT_LABELS = ("customer question:", "answer to rewrite:")


def echo_reason(rewrite: str, question: str) -> str | None:
    """A small model sometimes repeats its prompt: a rewrite holding the prompt's labels or the customer's question
    is not an answer.

    >>> echo_reason("Customer question: where is my card? Answer to rewrite: ...", "where is my card?")
    'repeats the prompt'
    """
    low = rewrite.lower()
    if any(label in low for label in PROMPT_LABELS) or (len(question) > 12 and question.strip().lower() in low):
        return "repeats the prompt"
    return None


@dataclass
class Rewriter:
    """``reword(question, answer, keep)`` → ``(text, info)``: the rewrite when :func:`check_rewrite` accepts it,
    else the answer unchanged; ``info`` = ``{"used": bool, "kept_because": reason}``."""

    generate: Generate
    min_word_recall: float = 0.6

    def reword(self, question: str, answer: str, keep: Iterable[str] = ()) -> tuple[str, dict[str, Any]]:
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"Customer question: {question}\nAnswer to rewrite: {answer}"}]
        budget = 2 * len(answer.split()) + 24  # words → a generous token budget; longer rewrites are refused anyway
        try:
            text = self.generate(messages, budget).strip()
        except Exception as e:  # a broken rewording model must not break the answer
            return answer, {"used": False, "kept_because": f"rewording failed: {type(e).__name__}: {e}"}
        reason = echo_reason(text, question) or check_rewrite(answer, text, keep, self.min_word_recall)
        if reason is not None:
            return answer, {"used": False, "kept_because": reason}
        return text, {"used": True}

    @classmethod
    def load(cls, source: str, min_word_recall: float = 0.6) -> Rewriter:
        """``source``: a generation run directory (its tuned model and chat template), or a model name / folder /
        hub id of a causal LM with a chat template (e.g. ``smollm2``)."""
        if (Path(source) / "task.json").is_file():
            from tuneforge.inference.openai_api import ChatGenerator
            from tuneforge.inference.predictor import Predictor

            chat = ChatGenerator(Predictor.from_run_dir(source, batch_size=1))
            return cls(lambda m, n: chat.complete(m, max_new_tokens=n, num_beams=1, do_sample=False)["text"],
                       min_word_recall)
        return cls(plain_causal_lm(source), min_word_recall)


def plain_causal_lm(name: str) -> Generate:
    """Greedy chat generation with an untuned causal LM (a TuneForge model name, a folder or a hub id)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tuneforge.evaluation.language import drop_partial_char
    from tuneforge.models import load_tokenizer, resolve_model

    resolved = resolve_model(name)
    if resolved.kind != "decoder":
        raise ValueError(f"assistant.reword: {name!r} is not a causal LM")
    tokenizer = load_tokenizer(resolved.path)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"assistant.reword: {name!r} has no chat template")
    model = AutoModelForCausalLM.from_pretrained(resolved.path).eval()

    def generate(messages: Messages, max_new_tokens: int) -> str:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        new = out[0, ids["input_ids"].shape[1]:]
        return drop_partial_char(tokenizer.decode(new, skip_special_tokens=True))

    return generate
