"""Freezing policies: full, top_k layers, head_only and BitFit (biases + head)."""

from __future__ import annotations

from torch import nn

from tuneforge.config_typing import ConfigError

LAYER_LISTS = ("encoder.layer", "layers", "model.layers", "transformer.h", "h", "encoder.layers", "block")


def transformer_layers(backbone: nn.Module) -> list[nn.Module]:
    """The stack of transformer blocks of a HF body (BERT ``encoder.layer``, Llama ``layers``, GPT-2 ``h``)."""
    base = getattr(backbone, "base_model", backbone)
    for path in LAYER_LISTS:
        obj = base
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return list(obj)
    raise ValueError(f"cannot find the transformer layers of {type(backbone).__name__}; "
                     f"top_k freezing needs one of {LAYER_LISTS}")


def apply_freezing(model: nn.Module, policy: str, k: int = 2) -> dict[str, int]:
    """Set ``requires_grad`` by policy. ``model.backbone`` is the pretrained body; everything else is head.

    Returns trainable/total parameter counts.
    """
    backbone = model.backbone
    if policy == "full":
        pass
    elif policy == "head_only":
        backbone.requires_grad_(False)
    elif policy == "top_k":
        backbone.requires_grad_(False)
        layers = transformer_layers(backbone)
        if not 0 < k <= len(layers):
            raise ConfigError(f"freeze.k: {k} must be in [1, {len(layers)}] (the model has {len(layers)} layers)")
        for layer in layers[-k:]:
            layer.requires_grad_(True)
        for name, module in backbone.named_modules():  # a final norm after the stack belongs to the top
            if name.endswith(("final_layer_norm", "norm", "ln_f")) and not any(
                    c in name for c in ("layer.", "layers.", "h.")):
                module.requires_grad_(True)
        if getattr(backbone, "pooler", None) is not None:  # kept only for pooling pooler/mean_pooler: above the stack
            backbone.pooler.requires_grad_(True)
    elif policy == "bitfit":
        for name, p in backbone.named_parameters():
            p.requires_grad_(name.endswith("bias"))
    else:
        raise ValueError(f"unknown freeze policy {policy!r}; known: full, top_k, head_only, bitfit")
    return count_parameters(model)


def input_embeddings(backbone: nn.Module) -> nn.Module | None:
    """A HF body's input word-embedding module, or None when it has none (or a wrapper hides it)."""
    getter = getattr(backbone, "get_input_embeddings", None)
    try:
        return getter() if getter is not None else None
    except (NotImplementedError, AttributeError):
        return None


def word_embeddings(model: nn.Module) -> nn.Parameter | None:
    """The input word-embedding matrix of ``model.backbone``, or None."""
    weight = getattr(input_embeddings(model.backbone), "weight", None)
    return weight if isinstance(weight, nn.Parameter) else None


def tied_elsewhere(model: nn.Module, weight: nn.Parameter) -> bool:
    """True when ``weight`` is also used by another module (an LM head tied to the input embeddings)."""
    return sum(p is weight for _, p in model.named_parameters(remove_duplicate=False)) > 1


def freeze_word_embeddings(model: nn.Module, freeze: bool, vocab_grew: bool) -> bool:
    """Apply ``freeze.embeddings`` after the policy; returns whether the word-embedding matrix is now frozen.

    Refused when the task added tokens (their fresh rows must learn) or the matrix is tied to an output layer (that
    would freeze the LM head too).
    """
    weight = word_embeddings(model)
    if weight is None or not freeze:
        return weight is not None and not weight.requires_grad
    if tied_elsewhere(model, weight):
        raise ConfigError("freeze.embeddings=true: the word embeddings are tied to the output layer, so freezing "
                         "them would freeze the LM head too; use false")
    if vocab_grew:
        raise ValueError("freeze.embeddings=true: the task added tokens whose new embedding rows must train; "
                         "use false")
    weight.requires_grad_(False)
    return True


def count_parameters(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total}
