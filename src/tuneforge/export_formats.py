"""The standard format each trained task model is written in, and how each one is read back for the parity check.

| task, head                                  | format                  | opened by (no TuneForge)                        |
|---------------------------------------------|-------------------------|-------------------------------------------------|
| classification, ``pooler``                  | sequence-classification | ``AutoModelForSequenceClassification`` (BERT)   |
| classification, ``mean``/``cls``/``last``/  | sentence-transformers   | ``SentenceTransformer`` (``encode`` = logits)   |
| ``mean_pooler``                             |                         |                                                 |
| ner                                         | token-classification    | ``AutoModelForTokenClassification``             |
| qa                                          | question-answering      | ``AutoModelForQuestionAnswering``               |
| relation (and any head no class matches)    | body+head               | ``AutoModel`` + ``head.safetensors`` (card code)|
| generation, classification_generative       | causal-lm               | ``AutoModelForCausalLM`` + chat template        |

A standard class is used only where its head computes exactly what TuneForge's head computes; the mapping is checked
structurally (every tensor finds its place) and then numerically. ``mean_pooler`` (mean of the token states beside
BERT's ``tanh(dense([CLS]))`` pooler) becomes two sentence-transformers ``Dense`` layers: the first applies the pooler
to the ``[CLS]`` half and ``tanh(EPS * x)`` to the mean half, the second undoes that scale (``tanh(EPS*x)/EPS = x``
to a relative 1e-8 for ``|x| < 100``) inside the classifier: no custom code, logits within fp32 rounding.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

STANDARD_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
EPS = 1e-4  # the mean half's scale inside tanh (see the module docstring)
ST_POOLING = {"mean": ("mean",), "cls": ("cls",), "last": ("lasttoken",), "mean_pooler": ("cls", "mean")}
ST_LEGACY_KEYS = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens",
                  "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
                  "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}
HF_CLASSES = {"sequence-classification": "AutoModelForSequenceClassification",
              "token-classification": "AutoModelForTokenClassification",
              "question-answering": "AutoModelForQuestionAnswering"}
LIBRARY = {"sentence-transformers": "sentence-transformers", "adapter": "peft"}


def head_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The task head's tensors: everything outside ``backbone`` (empty for causal-LM tasks)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()
            if not k.startswith("backbone.")}


def choose_format(task: Any, model: nn.Module) -> str:
    """The standard format for this task and head (before the structural check, which may fall back)."""
    if task.needs_lm_head:
        return "causal-lm"
    if task.name == "classification":
        if model.pooling == "pooler":
            return "sequence-classification"
        return "sentence-transformers" if not task.pair_col and _st_expressible(model) else "body+head"
    return {"ner": "token-classification", "qa": "question-answering"}.get(task.name, "body+head")


def _st_expressible(model: nn.Module) -> bool:
    if model.pooling not in ST_POOLING:
        return False
    if model.pooling != "mean_pooler":
        return True
    pooler = model.backbone.pooler  # BertPooler: tanh(dense(h[:, 0]))
    return isinstance(getattr(pooler, "dense", None), nn.Linear) and isinstance(getattr(pooler, "activation", None),
                                                                                 nn.Tanh)


# ---------------------------------------------------------------- transformers task classes
def hf_task_model(body: nn.Module, head: dict[str, torch.Tensor], fmt: str, labels: list[str] | None,
                  multi_label: bool = False) -> nn.Module | None:
    """``body`` + ``head`` as the transformers class of ``fmt``, or None when that class's head is shaped otherwise
    (a RoBERTa classification head, a Llama ``score`` without bias, ...)."""
    import transformers

    config = copy.deepcopy(body.config)
    if labels is not None:
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {lab: i for i, lab in enumerate(labels)}
    if multi_label:
        config.problem_type = "multi_label_classification"
    try:
        hf = getattr(transformers, HF_CLASSES[fmt]).from_config(config)
    except ValueError:  # no such class for this architecture
        return None
    target = hf.state_dict()
    body_state = {f"{hf.base_model_prefix}.{k}": v for k, v in body.state_dict().items()}
    dropped = [k for k in body_state if k not in target]
    if any(".pooler." not in k for k in dropped):  # only an unused pooler may stay behind
        return None
    state = {k: v for k, v in body_state.items() if k in target}
    rest = sorted(k for k in target if k not in state)
    if rest != sorted(head) or any(target[k].shape != head[k].shape for k in rest):
        return None
    state.update(head)
    hf.load_state_dict(state, strict=True)
    return hf.eval()


def hf_outputs(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers task model's outputs under TuneForge's names (``logits``, or ``start_logits``/``end_logits``)."""
    inputs = {k: v for k, v in batch.items() if k in STANDARD_INPUTS}
    with torch.inference_mode():
        out = model(**inputs)
    names = ("start_logits", "end_logits") if hasattr(out, "start_logits") else ("logits",)
    return {n: getattr(out, n).float() for n in names}


# ---------------------------------------------------------------- sentence-transformers
def write_sentence_transformers(folder: Path, model: nn.Module, max_length: int) -> None:
    """Transformer (the body, at the folder's root) + Pooling + Dense layers, in the module layout every
    sentence-transformers release reads (``modules.json``, ``1_Pooling/``, ``2_Dense/``, ...)."""
    from safetensors.torch import save_file

    body, pooling = model.backbone, model.pooling
    hidden = body.config.hidden_size
    modes = ST_POOLING[pooling]
    (folder / "1_Pooling").mkdir()
    _write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden, **{key: mode in modes for mode, key in ST_LEGACY_KEYS.items()}})
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    for i, (weight, bias, activation) in enumerate(_dense_layers(model), start=2):
        path = f"{i}_Dense"
        (folder / path).mkdir()
        _write_json(folder / path / "config.json", {
            "in_features": weight.shape[1], "out_features": weight.shape[0], "bias": True,
            "activation_function": f"torch.nn.modules.{activation}"})
        save_file({"linear.weight": weight.contiguous(), "linear.bias": bias.contiguous()},
                  str(folder / path / "model.safetensors"), metadata={"format": "pt"})
        modules.append({"idx": i, "name": str(i), "path": path, "type": "sentence_transformers.models.Dense"})
    _write_json(folder / "modules.json", modules)


def _dense_layers(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor, str]]:
    """(weight, bias, activation) of each Dense module after the pooling."""
    w = model.classifier.weight.detach().float().cpu()
    b = model.classifier.bias.detach().float().cpu()
    if model.pooling != "mean_pooler":
        return [(w.clone(), b.clone(), "linear.Identity")]
    dense = model.backbone.pooler.dense
    h = dense.weight.shape[0]
    first = torch.zeros(2 * h, 2 * h)  # input [cls; mean] → [tanh(P cls + p); tanh(EPS * mean)]
    first[:h, :h] = dense.weight.detach().float().cpu()
    first[h:, h:] = EPS * torch.eye(h)
    first_bias = torch.cat([dense.bias.detach().float().cpu(), torch.zeros(h)])
    second = torch.cat([w[:, h:], w[:, :h] / EPS], dim=1)  # TuneForge's order is [mean; pooler]
    return [(first, first_bias, "activation.Tanh"), (second, b.clone(), "linear.Identity")]


def st_outputs(folder: Path, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """The exported folder's logits on ``batch`` as sentence-transformers computes them (else as its module files
    say, read with transformers + safetensors when sentence-transformers is not installed)."""
    features = {k: v for k, v in batch.items() if k in STANDARD_INPUTS}
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return {"logits": st_forward_plain(folder, features)}, "transformers + safetensors (module files)"
    st = SentenceTransformer(str(folder), device="cpu", local_files_only=True).eval()
    with torch.inference_mode():
        out = st.forward(dict(features))
    return {"logits": out["sentence_embedding"].float()}, "sentence-transformers"


def st_forward_plain(folder: Path, features: dict[str, torch.Tensor]) -> torch.Tensor:
    """What a sentence-transformers folder of Transformer + Pooling (cls / mean / lasttoken) + Dense modules computes,
    in plain torch: the loader for users without sentence-transformers."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    body = AutoModel.from_pretrained(folder).eval()
    modules = json.loads((folder / "modules.json").read_text())
    with torch.inference_mode():
        x = body(**features).last_hidden_state  # (B, T, H)
        mask = features["attention_mask"].unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        for module in modules[1:]:
            config = json.loads((folder / module["path"] / "config.json").read_text())
            if module["type"].endswith("Pooling"):
                parts = []
                if config.get("pooling_mode_cls_token"):
                    parts.append(x[:, 0])
                if config.get("pooling_mode_mean_tokens"):
                    parts.append((x * mask).sum(1) / mask.sum(1).clamp(min=1e-9))
                if config.get("pooling_mode_lasttoken"):
                    last = features["attention_mask"].long().sum(1) - 1
                    parts.append(x[torch.arange(x.size(0)), last])
                x = torch.cat(parts, dim=-1)
            else:
                linear = load_file(str(folder / module["path"] / "model.safetensors"))
                x = x @ linear["linear.weight"].T + linear["linear.bias"]
                if config["activation_function"].endswith("Tanh"):
                    x = torch.tanh(x)
    return x.float()


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")
