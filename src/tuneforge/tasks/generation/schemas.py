"""Record shapes of generative data → validated conversations: Alpaca, ShareGPT, OpenAI messages, prompt/response,
DialogSum/SAMSum summaries and parallel-text translation pairs. Errors name the file, line and field."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuneforge.data.readers import LOC, BadRows, DataError, Record, split_loc
from tuneforge.registry import Registry

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}
Example = dict[str, Any]  # {"messages": [...], "references": [str, ...], "_loc": "file:line"}

ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
         "model": "assistant", "bot": "assistant", "chatgpt": "assistant"}
LANGUAGES = {"en": "English", "de": "German", "fr": "French", "cs": "Czech", "es": "Spanish", "it": "Italian",
             "zh": "Chinese", "ja": "Japanese", "ru": "Russian", "pt": "Portuguese", "nl": "Dutch"}
DEFAULT_INSTRUCTIONS = {"summarization": "Summarize the following dialogue.",
                        "translation": "Translate the following text from {source} to {target}."}


@dataclass(frozen=True)
class SchemaOptions:
    instruction: str | None = None  # overrides DEFAULT_INSTRUCTIONS
    system_prompt: str | None = None  # added when a conversation has no system message
    require_target: bool = True  # False for prediction inputs: the answer is what we generate


Converter = Callable[[Record, SchemaOptions], Example]
SCHEMAS: Registry[Converter] = Registry("generation schema")
ALIASES = {"dialogsum": "summarization", "samsum": "summarization", "openai": "messages", "parallel": "translation",
           "prompt_completion": "prompt_response"}


def fail(rec: Record, field: str | None, message: str) -> DataError:
    path, line = split_loc(rec.get(LOC, "?:?"))
    return DataError(path, line, message, field=field)


def text_field(rec: Record, name: str, what: str, required: bool = True) -> str:
    """A non-empty string field (line endings normalised), or "" when optional and absent/empty."""
    value = rec.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise fail(rec, name, f"missing {what}" if value is None else f"empty {what}")
        return ""
    if not isinstance(value, str):
        raise fail(rec, name, f"{what} must be a string, got {type(value).__name__}")
    return value.replace("\r\n", "\n").strip()


def resolve_schema(name: str) -> str:
    name = ALIASES.get(name, name)
    if name != "auto":
        SCHEMAS.get(name)  # unknown name → error listing the known ones
    return name


def detect_schema(rec: Record) -> str:
    """Guess the shape of one record from its keys."""
    keys = set(rec) - {LOC}
    for key, schema in (("messages", "messages"), ("conversations", "sharegpt"), ("instruction", "alpaca"),
                        ("dialogue", "summarization"), ("source", "translation"), ("prompt", "prompt_response")):
        if key in keys:
            return schema
    raise fail(rec, None, f"cannot tell the record shape from its keys {sorted(keys)}; set generation.schema "
                          f"(one of {', '.join(SCHEMAS.names())})")


def convert(rec: Record, schema: str, opts: SchemaOptions) -> tuple[str, Example]:
    """(schema used, example) for one record; ``schema`` may be ``auto``."""
    used = detect_schema(rec) if schema == "auto" else schema
    ex = SCHEMAS.get(used)(rec, opts)
    if opts.system_prompt and ex["messages"][0]["role"] != "system":
        ex["messages"].insert(0, {"role": "system", "content": opts.system_prompt})
    ex[LOC] = rec.get(LOC)
    return used, ex


def parse_records(records: list[Record], schema: str, opts: SchemaOptions, bad: BadRows) -> tuple[list[Example],
                                                                                                   dict[str, int]]:
    """Validate every record; returns the examples and how many records each schema read."""
    out: list[Example] = []
    used: dict[str, int] = {}
    for rec in records:
        try:
            name, ex = convert(rec, schema, opts)
        except DataError as e:
            bad.report(e)
            continue
        used[name] = used.get(name, 0) + 1
        out.append(ex)
    return out, used


def finish(rec: Record, messages: list[Message], field: str, opts: SchemaOptions,
           extra_refs: list[str] = ()) -> Example:
    """Check the turn structure; the last assistant turn is the target (and the first reference)."""
    if not messages:
        raise fail(rec, field, "empty conversation")
    for i, m in enumerate(messages):
        if m["role"] == "system" and i > 0:
            raise fail(rec, f"{field}[{i}]", "a system message may only come first")
    turns = [m for m in messages if m["role"] != "system"]
    if not turns or turns[0]["role"] != "user":
        raise fail(rec, field, "the conversation must start with a user turn (after an optional system message)")
    if not opts.require_target:
        if messages[-1]["role"] == "assistant":  # a given answer is the reference, not part of the prompt
            return {"messages": messages[:-1], "references": [messages[-1]["content"], *extra_refs]}
        return {"messages": messages, "references": list(extra_refs)}
    if messages[-1]["role"] != "assistant":
        raise fail(rec, f"{field}[{len(messages) - 1}]", "the conversation ends with a user turn: there is no "
                                                         "assistant answer to learn")
    return {"messages": messages, "references": [messages[-1]["content"], *extra_refs]}


def conversation(rec: Record, field: str, role_key: str, content_key: str, opts: SchemaOptions) -> Example:
    turns = rec.get(field)
    if not isinstance(turns, list):
        raise fail(rec, field, f"expected a list of turns, got {type(turns).__name__}")
    messages: list[Message] = []
    for i, turn in enumerate(turns):
        where = f"{field}[{i}]"
        if not isinstance(turn, dict):
            raise fail(rec, where, f"expected an object with {role_key!r} and {content_key!r}")
        raw_role = turn.get(role_key)
        role = ROLES.get(str(raw_role).lower()) if raw_role is not None else None
        if role is None:
            raise fail(rec, f"{where}.{role_key}", f"unknown role {raw_role!r}; known: {', '.join(sorted(ROLES))}")
        content = turn.get(content_key)
        if not isinstance(content, str) or not content.strip():
            what = "empty" if content is None or isinstance(content, str) else "non-text"
            raise fail(rec, f"{where}.{content_key}", f"{what} {role} turn")
        messages.append({"role": role, "content": content.replace("\r\n", "\n").strip()})
    system = text_field(rec, "system", "system prompt", required=False)
    if system and (not messages or messages[0]["role"] != "system"):
        messages.insert(0, {"role": "system", "content": system})
    return finish(rec, messages, field, opts)


def single_turn(rec: Record, user: str, answer_field: str | None, opts: SchemaOptions,
                extra_refs: list[str] = ()) -> Example:
    """A one-question conversation; ``answer_field`` holds the assistant turn (absent for prediction inputs)."""
    messages = [{"role": "user", "content": user}]
    system = text_field(rec, "system", "system prompt", required=False)
    if system:
        messages.insert(0, {"role": "system", "content": system})
    if answer_field:
        answer = text_field(rec, answer_field, "assistant turn", required=opts.require_target)
        if answer:
            messages.append({"role": "assistant", "content": answer})
    return finish(rec, messages, answer_field or "", opts, extra_refs)


@SCHEMAS.decorator("messages")
def openai_messages(rec: Record, opts: SchemaOptions) -> Example:
    """``{"messages": [{"role": "user", "content": ...}, {"role": "assistant", ...}, ...]}``."""
    return conversation(rec, "messages", "role", "content", opts)


@SCHEMAS.decorator("sharegpt")
def sharegpt(rec: Record, opts: SchemaOptions) -> Example:
    """``{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}], "system"?: ...}``."""
    return conversation(rec, "conversations", "from", "value", opts)


@SCHEMAS.decorator("alpaca")
def alpaca(rec: Record, opts: SchemaOptions) -> Example:
    """``{"instruction", "input"?, "output"}``: the user turn is the instruction, then the input if any."""
    instruction = text_field(rec, "instruction", "instruction")
    extra = text_field(rec, "input", "input", required=False)
    return single_turn(rec, f"{instruction}\n\n{extra}" if extra else instruction, "output", opts)


@SCHEMAS.decorator("prompt_response")
def prompt_response(rec: Record, opts: SchemaOptions) -> Example:
    """``{"prompt", "response"}`` (or ``"completion"`` / ``"output"``)."""
    prompt = text_field(rec, "prompt", "prompt")
    key = next((k for k in ("response", "completion", "output") if k in rec), "response")
    return single_turn(rec, prompt, key, opts)


@SCHEMAS.decorator("summarization")
def summarization(rec: Record, opts: SchemaOptions) -> Example:
    """DialogSum (``summary`` or ``summary1..3``) and SAMSum (``summary``): every summary is a reference; the first
    one is the training target."""
    dialogue = text_field(rec, "dialogue", "dialogue")
    keys = ["summary"] if "summary" in rec else sorted((k for k in rec if k.startswith("summary") and k[7:].isdigit()),
                                                       key=lambda k: int(k[7:]))
    if not keys and opts.require_target:
        raise fail(rec, "summary", f"missing summary; keys here: {', '.join(sorted(set(rec) - {LOC}))}")
    if not opts.require_target:
        keys = [k for k in keys if isinstance(rec.get(k), str) and rec[k].strip()]
    refs = [text_field(rec, k, "summary") for k in keys[1:]]
    instruction = opts.instruction or DEFAULT_INSTRUCTIONS["summarization"]
    return single_turn(rec, f"{instruction}\n\n{dialogue}", keys[0] if keys else None, opts, refs)


@SCHEMAS.decorator("translation")
def translation(rec: Record, opts: SchemaOptions) -> Example:
    """``{"source", "target"}``, e.g. from the ``parallel`` reader (which also sets the two language codes)."""
    source = text_field(rec, "source", "source text")
    src, tgt = rec.get("source_lang"), rec.get("target_lang")
    instruction = opts.instruction or DEFAULT_INSTRUCTIONS["translation"].format(
        source=LANGUAGES.get(src, src or "the source language"), target=LANGUAGES.get(tgt, tgt or "the target language"))
    return single_turn(rec, f"{instruction}\n\n{source}", "target" if "target" in rec else None, opts)


def record_for_text(schema: str, text: str) -> Record:
    """A bare prediction input as a record of ``schema`` (the dialogue to summarise, the sentence to translate...)."""
    key = {"summarization": "dialogue", "translation": "source", "alpaca": "instruction",
           "prompt_response": "prompt"}.get(schema)
    if key:
        return {key: text}
    field = "conversations" if schema == "sharegpt" else "messages"
    role_key, content_key = ("from", "value") if schema == "sharegpt" else ("role", "content")
    return {field: [{role_key: "user", content_key: text}]}
