"""The answers file: intent → answer template with {slots}, FAQ question-answer pairs and the hand-off message,
read from YAML and checked with errors that name the file, line and field."""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TOP_KEYS = ("slots", "intents", "faq", "handoff")
DEFAULT_HANDOFF = "I'm not sure I understood. I'm passing your question to a colleague."


class AnswersError(ValueError):
    """A malformed answers file; the message starts with ``file:line``."""


@dataclass
class Answers:
    """A checked answers file. ``render(intent, slots)`` fills an intent's template."""

    path: str
    templates: dict[str, str]
    slots: dict[str, str] = field(default_factory=dict)  # file-wide defaults
    intent_slots: dict[str, dict[str, str]] = field(default_factory=dict)
    faq: list[tuple[str, str]] = field(default_factory=list)
    handoff: str = DEFAULT_HANDOFF

    def render(self, intent: str, slots: dict[str, str] | None = None) -> str:
        return fill(self.templates[intent], {**self.slots, **self.intent_slots.get(intent, {}), **(slots or {})})

    def render_text(self, template: str, slots: dict[str, str] | None = None) -> str:
        return fill(template, {**self.slots, **(slots or {})})

    def slot_values(self, template: str, slots: dict[str, str] | None = None, intent: str | None = None) -> list[str]:
        """The values :meth:`render` / :meth:`render_text` put into ``template`` (what a rewording must keep)."""
        merged = {**self.slots, **(self.intent_slots.get(intent, {}) if intent else {}), **(slots or {})}
        return [str(merged[name]) for name in placeholders(template) if name in merged]

    def check_labels(self, labels: Iterable[str]) -> list[str]:
        """Every intent the classifier can answer needs a template; returns the file's intents it cannot answer."""
        labels = list(labels)
        missing = [lab for lab in labels if lab not in self.templates]
        if missing:
            raise AnswersError(f"{self.path}: intents: no answer for {len(missing)} intent(s) the run predicts: "
                               f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
        return sorted(set(self.templates) - set(labels))


def placeholders(template: str) -> list[str]:
    """The ``{slot}`` names of a template; ValueError for a malformed one (a lone brace, ``{}``, ``{a.b}``)."""
    names = []
    for _, name, spec, conv in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conv:
            raise ValueError(f"placeholder {{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}} must be "
                             "a plain {name}")
        names.append(name)
    return names


def fill(template: str, slots: dict[str, str]) -> str:
    """``template`` with its placeholders replaced; a missing slot is an error, never left as braces."""
    missing = [n for n in placeholders(template) if n not in slots]
    if missing:
        raise KeyError(f"slot(s) {', '.join(missing)} have no value")
    return template.format_map({k: str(v) for k, v in slots.items()})


def load_answers(path: str | Path) -> Answers:
    """Read and check an answers file (see data/apps/banking77_answers.yaml for the layout)."""
    path = Path(path)
    if not path.is_file():
        raise AnswersError(f"{path}: answers file not found")
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise AnswersError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    r = _Reader(str(path))
    top = r.mapping(root, "the file", allowed=TOP_KEYS)
    slots = r.str_map(top["slots"], "slots") if "slots" in top else {}
    if "intents" not in top:
        raise AnswersError(f"{path}:1: intents: missing (intent → answer template)")
    templates, intent_slots = r.intents(top["intents"], slots)
    faq = r.faq(top["faq"], slots) if "faq" in top else []
    handoff = r.template(top["handoff"], "handoff", slots, {}) if "handoff" in top else DEFAULT_HANDOFF
    return Answers(str(path), templates, slots, intent_slots, faq, handoff)


class _Reader:
    """Walks composed YAML nodes so every error carries the node's line."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, node: yaml.Node | None, where: str, msg: str) -> AnswersError:
        line = node.start_mark.line + 1 if node is not None else 1
        return AnswersError(f"{self.path}:{line}: {where}: {msg}")

    def mapping(self, node: yaml.Node | None, where: str, allowed: Iterable[str] | None = None) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, where, "expected a mapping (key: value lines)")
        out: dict[str, yaml.Node] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if not name:
                raise self.fail(key, where, "keys must be non-empty strings")
            if name in out:
                raise self.fail(key, f"{where}.{name}" if where != "the file" else name, "defined twice")
            if allowed is not None and name not in allowed:
                raise self.fail(key, name, f"unknown key; known: {', '.join(allowed)}")
            out[name] = value
        return out

    def string(self, node: yaml.Node, where: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag.endswith(":null") or not str(node.value).strip():
            raise self.fail(node, where, "expected a non-empty string")
        return str(node.value)

    def str_map(self, node: yaml.Node, where: str) -> dict[str, str]:
        return {k: self.string(v, f"{where}.{k}") for k, v in self.mapping(node, where).items()}

    def template(self, node: yaml.Node, where: str, slots: dict[str, str], own: dict[str, str]) -> str:
        text = self.string(node, where)
        try:
            names = placeholders(text)
        except ValueError as e:
            raise self.fail(node, where, str(e)) from None
        unknown = [n for n in names if n not in slots and n not in own]
        if unknown:
            raise self.fail(node, where, f"slot {{{unknown[0]}}} has no value in `slots`")
        return text

    def intents(self, node: yaml.Node, slots: dict[str, str]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        templates: dict[str, str] = {}
        own_slots: dict[str, dict[str, str]] = {}
        for name, value in self.mapping(node, "intents").items():
            where = f"intents.{name}"
            if isinstance(value, yaml.ScalarNode):  # the short form: intent: "answer"
                templates[name] = self.template(value, where, slots, {})
                continue
            entry = self.mapping(value, where, allowed=("answer", "slots"))
            if "answer" not in entry:
                raise self.fail(value, where, "missing `answer`")
            own = self.str_map(entry["slots"], f"{where}.slots") if "slots" in entry else {}
            templates[name] = self.template(entry["answer"], f"{where}.answer", slots, own)
            if own:
                own_slots[name] = own
        if not templates:
            raise self.fail(node, "intents", "no intents")
        return templates, own_slots

    def faq(self, node: yaml.Node, slots: dict[str, str]) -> list[tuple[str, str]]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, "faq", "expected a list of {question, answer} entries")
        out = []
        for i, item in enumerate(node.value):
            entry = self.mapping(item, f"faq[{i}]", allowed=("question", "answer"))
            for key in ("question", "answer"):
                if key not in entry:
                    raise self.fail(item, f"faq[{i}]", f"missing `{key}`")
            out.append((self.string(entry["question"], f"faq[{i}].question"),
                        self.template(entry["answer"], f"faq[{i}].answer", slots, {})))
        return out


def answers_as_dict(answers: Answers) -> dict[str, Any]:
    """The file's content as plain data (for ``GET /v1/assist/info``)."""
    return {"intents": sorted(answers.templates), "faq": len(answers.faq), "slots": sorted(answers.slots)}
