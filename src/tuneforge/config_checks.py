"""Valid ranges of the numeric config fields and the checks that span several fields; each error names the field."""

from __future__ import annotations

import codecs
import dataclasses
import math
from typing import Any

from tuneforge.config_typing import ConfigError, field_hints

# Interval notation: "[" and "]" include the bound, "(" and ")" exclude it; "inf" means no bound. A value of null
# passes wherever the field's type allows it. NaN fails every range. A test checks that every numeric field of
# config_sections.py is listed here (or in UNBOUNDED), so a new field cannot skip its check.
RANGES: dict[str, str] = {
    "seed": "[0, 4294967295]",  # numpy's seed range; accelerate seeds numpy too
    "data.split.validation": "[0, 1)",
    "data.split.test": "[0, 1)",
    "data.split.seed": "[0, 4294967295]",
    "data.max_length": "[1, inf)",
    "data.limit": "[1, inf)",
    "data.validation_limit": "[1, inf)",
    "data.test_limit": "[1, inf)",
    "data.near_duplicate_threshold": "(0, 1]",
    "head.dropout": "[0, 1)",
    "loss.label_smoothing": "[0, 1)",
    "train.epochs": "[0, inf)",  # 0 without max_steps: no training, the untuned model is evaluated
    "train.max_steps": "[1, inf)",
    "train.batch_size": "[1, inf)",
    "train.batch_tokens": "[1, inf)",
    "train.grad_accum": "[1, inf)",
    "train.lr": "(0, inf)",
    "train.head_lr": "(0, inf)",
    "train.layer_lr_decay": "(0, 1]",
    "train.momentum": "[0, 1)",
    "train.weight_decay": "[0, inf)",
    "train.warmup_ratio": "[0, 1]",
    "train.max_grad_norm": "(0, inf)",
    "train.dropout": "[0, 1)",
    "train.attention_dropout": "[0, 1)",
    "train.ema_decay": "(0, 1)",
    "train.eval_every": "[0, inf)",
    "train.save_every": "[0, inf)",
    "train.keep_checkpoints": "[0, inf)",
    "train.num_threads": "[1, inf)",
    "train.log_every": "[1, inf)",
    "train.early_stopping.patience": "[1, inf)",
    "train.early_stopping.min_delta": "[0, inf)",
    "freeze.k": "[0, inf)",
    "peft.r": "[1, inf)",
    "peft.alpha": "[1, inf)",
    "peft.dropout": "[0, 1)",
    "peft.num_virtual_tokens": "[1, inf)",
    "peft.target_r": "[1, inf)",
    "peft.adapter_size": "[1, inf)",
    "data.shots_per_class": "[1, inf)",
    "eval.batch_size": "[1, inf)",
    "calibration.bins": "[1, inf)",
    "calibration.target": "(0, 1]",
    "assistant.faq_min_similarity": "[-1, 1]",  # a cosine similarity
    "assistant.handoff_top_k": "[1, inf)",
    "assistant.reword_min_word_recall": "[0, 1]",
    "recommend.test_fraction": "(0, 1)",
    "recommend.min_interactions": "[1, inf)",
    "recommend.history_length": "[1, inf)",
    "recommend.item_max_length": "[1, inf)",
    "recommend.targets_per_user": "[1, inf)",
    "recommend.hard_negatives": "[0, inf)",
    "recommend.negative_power": "[0, inf)",
    "recommend.temperature": "(0, inf)",
    "recommend.top_k": "[1, inf)",
    "recommend.cold_start_max": "[0, inf)",
    "recommend.bootstrap": "[0, inf)",
    "recommend.als_factors": "[1, inf)",
    "recommend.als_iterations": "[1, inf)",
    "recommend.als_regularization": "[0, inf)",
    "recommend.rerank_k": "[1, inf)",
    "recommend.rerank_negatives": "[1, inf)",
    "recommend.rerank_examples": "[1, inf)",
    "recommend.rerank_max_length": "[8, inf)",
    "recommend.rerank_epochs": "[1, inf)",
    "recommend.rerank_lr": "(0, inf)",
    "recommend.rerank_batch_size": "[1, inf)",
    "fewshot.k": "[0, inf)",
    "fewshot.max_prompt_tokens": "[1, inf)",
    "fewshot.setfit_iterations": "[1, inf)",
    "fewshot.setfit_epochs": "[1, inf)",
    "fewshot.setfit_batch_size": "[1, inf)",
    "fewshot.setfit_lr": "(0, inf)",
    "generation.max_new_tokens": "[1, inf)",
    "generation.num_beams": "[1, inf)",
    "generation.temperature": "(0, inf)",
    "generation.top_p": "(0, 1]",
    "generation.eval_batch_size": "[1, inf)",
    "span.doc_stride": "[0, inf)",  # and below data.max_length for qa (checked below)
    "span.max_answer_length": "[1, inf)",
    "span.max_question_length": "[1, inf)",
    "search.trials": "[1, inf)",
    "search.timeout": "(0, inf)",
    "span.null_score_threshold": "(-inf, inf)",
    "continual.replay_fraction": "[0, 1]",
    "continual.replay_size": "[0, inf)",
    "continual.replay_batch_size": "[1, inf)",
    "continual.ewc_lambda": "[0, inf)",
    "continual.ewc_gamma": "[0, 1]",
    "continual.ewc_samples": "[1, inf)",
    "continual.lwf_alpha": "[0, inf)",
    "continual.adapter_lr": "(0, inf)",
    "continual.lwf_temperature": "(0, inf)",
}
# numeric fields checked elsewhere (cross-field checks or their own section's validation)
UNBOUNDED: set[str] = {"loss.class_weights", "recommend.min_rating"}  # a rating scale is the data's own


@dataclasses.dataclass(frozen=True)
class Interval:
    lo: float
    hi: float
    lo_open: bool
    hi_open: bool

    @classmethod
    def parse(cls, text: str) -> Interval:
        """``"[0, 1)"`` → Interval(0, 1, lo_open=False, hi_open=True)."""
        lo, hi = (float(p) for p in text[1:-1].split(","))
        return cls(lo, hi, text[0] == "(", text[-1] == ")")

    def __contains__(self, x: float) -> bool:
        if math.isnan(x):
            return False
        above = x > self.lo if self.lo_open else x >= self.lo
        below = x < self.hi if self.hi_open else x <= self.hi
        return above and below

    def describe(self) -> str:
        if math.isinf(self.hi) and math.isinf(self.lo):
            return "a finite number"
        if math.isinf(self.hi):
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        return f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"


def _num(x: float) -> str:
    return str(int(x)) if x.is_integer() else str(x)


def _field(cfg: Any, key: str) -> tuple[Any, Any]:
    """(value, type hint) of a dotted field such as ``train.early_stopping.patience``."""
    *sections, name = key.split(".")
    obj = cfg
    for part in sections:
        obj = getattr(obj, part)
    return getattr(obj, name), field_hints(type(obj))[name]


def check_ranges(cfg: Any) -> None:
    """Every field in RANGES holds a value in its interval (null passes where the type allows it)."""
    for key, text in RANGES.items():
        value, hint = _field(cfg, key)
        if value is None:
            continue
        interval = Interval.parse(text)
        if value not in interval:
            null = " (or null)" if "None" in str(hint) else ""
            raise ConfigError(f"{key}: {value!r} must be {interval.describe()}{null}")


def check_cross_fields(cfg: Any) -> None:
    """Fields that are valid alone but not together, and text fields with a fixed form."""
    d = cfg.data
    held_out = d.split.validation + d.split.test
    if held_out >= 1:
        raise ConfigError(f"data.split.validation + data.split.test = {held_out:g} leaves nothing to train on; "
                          "their sum must be below 1")
    _check_freeze_with_peft(cfg)
    if cfg.peft.method == "adalora" and cfg.peft.target_r > cfg.peft.r:
        raise ConfigError(f"peft.target_r: {cfg.peft.target_r} is above peft.r={cfg.peft.r}; AdaLoRA prunes from "
                          "the initial rank r down to target_r")
    if cfg.task == "qa":
        room = d.max_length - cfg.span.max_question_length - 3  # [CLS] question [SEP] context [SEP]
        if cfg.span.doc_stride >= room:
            raise ConfigError(f"span.doc_stride: {cfg.span.doc_stride} must be below data.max_length - "
                              f"span.max_question_length - 3 = {room}, the context tokens of one window")
    if cfg.task == "classification_generative" and d.multi_label:
        raise ConfigError("data.multi_label: classification_generative is single-label; use task classification")
    _check_data_text_fields(d)
    _check_class_weights(cfg.loss.class_weights)


def _check_freeze_with_peft(cfg: Any) -> None:
    """A PEFT method decides what trains (the adapter and the head), so a freezing policy would be ignored."""
    if cfg.peft.method is None:
        return
    set_fields = [f"freeze.policy={cfg.freeze.policy}"] if cfg.freeze.policy != "full" else []
    if cfg.freeze.embeddings:
        set_fields.append("freeze.embeddings=true")
    if set_fields:
        raise ConfigError(f"{', '.join(set_fields)} and peft.method={cfg.peft.method} do not combine: with a PEFT "
                          "method only the adapter and the head train; drop the freeze settings or peft.method")


def _check_data_text_fields(d: Any) -> None:
    try:
        codecs.lookup(d.encoding)
    except LookupError:
        raise ConfigError(f"data.encoding: unknown encoding {d.encoding!r} (e.g. utf-8, latin-1, utf-16)") from None
    if not d.line_delimiter:
        raise ConfigError("data.line_delimiter: must not be empty")
    if d.label_delimiter is not None and not d.label_delimiter:
        raise ConfigError("data.label_delimiter: must not be empty (or null)")
    for key in ("text_column", "label_column"):
        if not getattr(d, key).strip():
            raise ConfigError(f"data.{key}: must name a column")
    columns = getattr(d, "columns", None)
    if columns is not None:
        if not isinstance(columns, dict) or not all(isinstance(k, str) and isinstance(v, str) and k.strip()
                                                    and v.strip() for k, v in columns.items()):
            raise ConfigError(f"data.columns: {columns!r}; expected a mapping of column names, e.g. "
                              "{question: prompt, answer: response}")
        targets = list(columns.values())
        twice = sorted({t for t in targets if targets.count(t) > 1})
        if twice:
            raise ConfigError(f"data.columns: several columns are renamed to {twice[0]!r}")


def _check_class_weights(weights: Any) -> None:
    if not isinstance(weights, list):
        return
    if not weights or any(not math.isfinite(w) or w < 0 for w in weights) or not any(w > 0 for w in weights):
        raise ConfigError(f"loss.class_weights: {weights!r}; each weight must be a finite number >= 0 and at least "
                          "one above 0")


# ---------------- the model's length limit (needs the resolved model) ----------------
def model_length_limit(model_path: str, tokenizer: Any = None) -> int | None:
    """The longest input, in tokens, the model was built for: its position table (``max_position_embeddings``,
    ``n_positions``), capped by the tokenizer's ``model_max_length`` when that is a real number (RoBERTa's table
    holds two padding slots more than it can use). None when neither says."""
    from transformers import AutoConfig  # lazily: importing transformers is slow

    limits = []
    try:
        mc = AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError):
        mc = None
    for name in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(mc, name, None)
        if isinstance(value, int) and value > 0:
            limits.append(value)
            break
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:  # transformers uses ~1e30 for "not set"
        limits.append(tok_max)
    return min(limits) if limits else None


def check_max_length(cfg: Any, model_max: int | None) -> None:
    """``data.max_length`` above what the model can take would index past its position table.

    >>> # check_max_length(cfg, model_length_limit(resolved.path, tokenizer))
    """
    if model_max is not None and cfg.data.max_length > model_max:
        raise ConfigError(f"data.max_length: {cfg.data.max_length} is above the model's limit of {model_max} "
                          f"tokens ({cfg.model}); set data.max_length <= {model_max}")
