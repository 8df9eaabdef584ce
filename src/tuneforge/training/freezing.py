"""Freezing policies: full, top_k layers, head_only and BitFit (biases + head)."""

from __future__ import annotations

from torch import nn

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
            raise ValueError(f"freeze.k={k} but the model has {len(layers)} layers")
        for layer in layers[-k:]:
            layer.requires_grad_(True)
        for name, module in backbone.named_modules():  # a final norm after the stack belongs to the top
            if name.endswith(("final_layer_norm", "norm", "ln_f")) and not any(
                    c in name for c in ("layer.", "layers.", "h.")):
                module.requires_grad_(True)
        if getattr(backbone, "pooler", None) is not None:  # kept only for head.pooling=pooler: above the stack
            backbone.pooler.requires_grad_(True)
    elif policy == "bitfit":
        for name, p in backbone.named_parameters():
            p.requires_grad_(name.endswith("bias"))
    else:
        raise ValueError(f"unknown freeze policy {policy!r}; known: full, top_k, head_only, bitfit")
    return count_parameters(model)


def count_parameters(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total}
