"""Prompt templates and verbalisers as data: defaults from the label names, YAML files, chat and plain rendering."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.config_typing import ConfigError, read_yaml_mapping

DEFAULT_INSTRUCTION = "Classify the text. Answer with one of: {labels}."
DEFAULT_DESCRIPTION = "{word}"  # the label word itself; prompt files give sentences
PROMPT_KEYS = ("instruction", "input", "verbaliser", "description", "descriptions", "system_prompt")


def label_word(label: str) -> str:
    """How a label reads as a word: ``card_arrival`` → ``card arrival``."""
    return label.replace("_", " ").strip()


@dataclass
class PromptSpec:
    """One prompt design: the instruction, the input slot, label words (verbaliser) and label descriptions.

    >>> spec = PromptSpec.from_labels(["neg", "pos"]); spec.verbaliser["pos"]
    ['pos']
    """

    instruction: str = DEFAULT_INSTRUCTION  # ``{labels}`` → the first word of every label, comma-separated
    input: str = "{text}"  # ``{text}`` (and ``{text_pair}`` for pair tasks)
    verbaliser: dict[str, list[str]] = field(default_factory=dict)  # label → one or more answer words
    description: str = DEFAULT_DESCRIPTION  # the default description of a label, ``{word}`` = each label word
    descriptions: dict[str, list[str]] = field(default_factory=dict)  # label → sentences (encoder zero-shot)
    system_prompt: str | None = None

    @classmethod
    def from_labels(cls, labels: Sequence[str], where: str = "fewshot", **given: Any) -> PromptSpec:
        """Fill what ``given`` leaves out from the label names; a label the verbaliser misses is an error
        naming ``where`` (the config section or prompt file)."""
        spec = cls(**{k: v for k, v in given.items() if v is not None})
        spec.verbaliser = _per_label(spec.verbaliser, labels, f"{where}.verbaliser", lambda lab: [label_word(lab)])
        spec.descriptions = _per_label(
            spec.descriptions, labels, f"{where}.descriptions",
            lambda lab: [spec.description.format(word=w) for w in spec.verbaliser[lab]])
        return spec

    def label_list(self) -> str:
        return ", ".join(words[0] for words in self.verbaliser.values())

    def user_text(self, ex: dict[str, Any], with_instruction: bool = True) -> str:
        """The user turn for ``ex``: the instruction, then the input slot filled."""
        body = self.input.format(text=ex["text"], text_pair=ex.get("text_pair", ""))
        if ex.get("text_pair") and "{text_pair}" not in self.input:  # pair inputs: the second text follows
            body += f"\n\n{ex['text_pair']}"
        if not with_instruction:
            return body
        return f"{self.instruction.format(labels=self.label_list())}\n\n{body}"


def _per_label(given: dict[str, Any], labels: Sequence[str], where: str, default: Any) -> dict[str, list[str]]:
    if not given:
        return {lab: default(lab) for lab in labels}
    given = {str(k): v for k, v in given.items()}
    missing = [lab for lab in labels if lab not in given]
    if missing:
        raise ConfigError(f"{where}: no entry for label(s) {', '.join(map(repr, missing[:5]))}; "
                          f"it names {', '.join(map(repr, list(given)[:5]))}")
    out = {}
    for lab in labels:
        words = given[lab]
        words = [words] if isinstance(words, str) else list(words)
        if not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise ConfigError(f"{where}.{lab}: needs one or more non-empty strings, got {given[lab]!r}")
        out[lab] = words
    return out


def load_prompt_file(path: str | Path) -> dict[str, Any]:
    """A prompt YAML (``configs/prompting/*.yaml``): any of instruction, input, verbaliser, descriptions,
    system_prompt. Unknown keys are errors naming the file."""
    path = Path(path)
    raw = read_yaml_mapping(path, "fewshot.prompt: file")
    unknown = sorted(set(raw) - set(PROMPT_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; known: {', '.join(PROMPT_KEYS)}")
    for key in ("verbaliser", "descriptions"):
        if key in raw and not isinstance(raw[key], dict):
            raise ConfigError(f"{path}: {key} must map each label to words or sentences")
    return raw


def prompt_labels(fewshot: Any) -> list[str]:
    """The labels a prompt names (its verbaliser's keys, else its descriptions'), inline keys over the file's;
    ``[]`` when neither names any. Lets a model classify with no data at all."""
    raw = load_prompt_file(fewshot.prompt) if fewshot.prompt else {}
    for key in ("verbaliser", "descriptions"):
        given = getattr(fewshot, key, None) or raw.get(key)
        if given:
            return [str(k) for k in given]
    return []


def prompt_spec(fewshot: Any, labels: Sequence[str], base: str | Path | None = None) -> PromptSpec:
    """The ``fewshot`` section's prompt for ``labels``: the file ``fewshot.prompt`` (relative to ``base``), then
    the inline keys over it, then defaults from the label names."""
    raw: dict[str, Any] = {}
    where = "fewshot"
    if fewshot.prompt:
        path = Path(fewshot.prompt)
        if not path.is_absolute() and base is not None and (Path(base) / path).is_file():
            path = Path(base) / path
        raw = load_prompt_file(path)
        where = str(path)
    for key in PROMPT_KEYS:
        value = getattr(fewshot, key, None)
        if value:
            raw[key] = value
    return PromptSpec.from_labels(labels, where=where, **raw)


# ---------------------------------------------------------------- rendering
def conversation(spec: PromptSpec, ex: dict[str, Any], demos: Sequence[tuple[dict[str, Any], str]] = (),
                 answer: str | None = None) -> list[dict[str, str]]:
    """Chat messages: the system prompt, the instruction once, each demonstration as a user/assistant turn pair,
    then the query (and ``answer`` as the last assistant turn, for training or scoring)."""
    messages = [{"role": "system", "content": spec.system_prompt}] if spec.system_prompt else []
    for i, (demo, label) in enumerate(demos):
        messages.append({"role": "user", "content": spec.user_text(demo, with_instruction=i == 0)})
        messages.append({"role": "assistant", "content": spec.verbaliser[label][0]})
    messages.append({"role": "user", "content": spec.user_text(ex, with_instruction=not demos)})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def plain_prompt(spec: PromptSpec, ex: dict[str, Any], demos: Sequence[tuple[dict[str, Any], str]] = ()) -> str:
    """The same prompt for a model without a chat template: ``Input: ...\\nAnswer: word`` blocks."""
    head = spec.instruction.format(labels=spec.label_list())
    blocks = [f"Input: {spec.user_text(d, False)}\nAnswer: {spec.verbaliser[lab][0]}" for d, lab in demos]
    blocks.append(f"Input: {spec.user_text(ex, False)}\nAnswer:")
    return head + "\n\n" + "\n\n".join(blocks)
