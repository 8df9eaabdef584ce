"""How few-shot and prompting modes plug into a training run: the prompt given to the task, the k-shot ids saved,
zero-shot / in-context runs evaluated without training, and SetFit training in place of the loop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from tuneforge.io_utils import atomic_write_json
from tuneforge.prompting.templates import prompt_spec

UNTRAINED = ("zero_shot", "icl")


def trains_nothing(cfg: Any) -> bool:
    """``fewshot.method`` zero_shot or icl, or ``train.epochs: 0`` without max_steps: evaluate as is."""
    f = cfg.fewshot.method
    return f in UNTRAINED or (cfg.train.epochs == 0 and not cfg.train.max_steps and f != "setfit")


def setup_fewshot(cfg: Any, prepared: Any, run_dir: Path | None) -> None:
    """Give the task the configured prompt (zero-shot and in-context scoring use it; a decoder trained on label
    words learns its verbaliser) and record the k-shot draw."""
    f, task = cfg.fewshot, prepared.task
    configured = bool(f.prompt or f.instruction or f.verbaliser or f.descriptions)
    spec = prompt_spec(f, task.labels)
    if hasattr(task, "use_prompt"):  # classification_generative: its own instruction unless one is configured
        if not (f.prompt or f.instruction):
            spec.instruction = task.instruction_template
        spec.system_prompt = spec.system_prompt or task.system_prompt
        task.use_prompt(spec)
        if configured:  # prepare() encoded with the task's default words; the verbaliser's replace them
            prepared.features = {name: [task.encode(ex) for ex in exs] for name, exs in prepared.data.splits.items()}
    else:
        task.prompt = spec
    shots = getattr(prepared.data, "shots", None)
    if run_dir is not None and shots is not None:
        atomic_write_json(run_dir / "shots.json", {"shots_per_class": cfg.data.shots_per_class, "seed": cfg.seed,
                                                   "per_class": shots.per_class, "short_classes": shots.short_classes,
                                                   "ids": shots.ids})


# ---------------------------------------------------------------- predictions without training
def untrained_predictions(cfg: Any, prepared: Any, split: str) -> tuple[list[Any], dict[str, Any]]:
    """Label probabilities for one split from the untuned model, and what the prompting did (ICL overflow)."""
    task, spec = prepared.task, prepared.task.prompt
    examples = prepared.data.splits[split]
    if not getattr(task, "needs_lm_head", False):
        if cfg.fewshot.method == "icl":
            raise ValueError("fewshot.method icl needs a decoder (task classification_generative, e.g. smollm2)")
        from tuneforge.evaluation.baselines import mean_pooled_embedder
        from tuneforge.prompting.zero_shot import description_scores

        embed = mean_pooled_embedder(prepared.resolved.path, prepared.tokenizer)
        scores = description_scores([ex["text"] for ex in examples], task.labels, spec, embed)
        return [row.tolist() for row in torch.softmax(scores / 0.05, -1)], {"mode": "description_similarity"}
    result = decoder_scores(cfg, prepared.resolved.path, task, examples, prepared.data.splits["train"])
    return [row.tolist() for row in result.log_probs.exp()], {"mode": "icl" if cfg.fewshot.method == "icl" else
                                                              "zero_shot", **result.summary()}


def decoder_scores(cfg: Any, model_path: str, task: Any, examples: list[dict[str, Any]],
                   pool: list[dict[str, Any]]) -> Any:
    """``decoder_predict`` with the ``fewshot`` options; k = 0 unless the method is icl."""
    from tuneforge.models import load_backbone
    from tuneforge.prompting.icl import IclOptions, decoder_predict

    f = cfg.fewshot
    k = f.k if f.method == "icl" else 0
    model = load_backbone(model_path, causal_lm=True).eval()
    similarity = None
    if k and (f.selection == "nearest" or f.order == "similar_last"):
        similarity = _similarity(f.embedder, [ex["text"] for ex in examples], [ex["text"] for ex in pool])
    opts = IclOptions(k=k, selection=f.selection, order=f.order, calibrate=f.calibrate,
                      normalise=f.length_normalise, seed=cfg.seed, max_tokens=f.max_prompt_tokens)
    return decoder_predict(model, task.tokenizer, task.prompt, task.labels, examples, pool, opts, similarity)


def _similarity(embedder: str, queries: list[str], pool: list[str]) -> torch.Tensor:
    """(N, P) cosine similarity of queries to the demonstration pool, by a sentence encoder."""
    from tuneforge.evaluation.baselines import mean_pooled_embedder
    from tuneforge.models import load_tokenizer, resolve_model

    resolved = resolve_model(embedder)
    embed = mean_pooled_embedder(resolved.path, load_tokenizer(resolved.path))
    q = torch.nn.functional.normalize(embed(queries).float(), dim=-1)
    p = torch.nn.functional.normalize(embed(pool).float(), dim=-1)
    return q @ p.T


def evaluate_untrained(cfg: Any, prepared: Any, baselines: dict[str, Any], run_dir: Path, main: bool) -> dict:
    """The report of a run that trains nothing, in the usual shape: ``metrics.<split>`` are the prompted model's."""
    from tuneforge.evaluation.report import build_report, comparison_table, write_report

    start = time.perf_counter()
    metrics, details, labels = {}, {}, {}
    for split in ("validation", "test"):
        if split in prepared.data.splits:
            preds, details[split] = untrained_predictions(cfg, prepared, split)
            metrics[split] = prepared.task.metrics(preds, prepared.data.splits[split])
            labels[split] = [prepared.task.labels[max(range(len(p)), key=p.__getitem__)] for p in preds]
    test_name = prepared.test_split
    report = build_report(prepared.task.name, cfg.model, prepared.task.main_metric, metrics, baselines, {
        "test_split": test_name,
        "training": {"steps": 0, "train_seconds": 0.0, "trainable_parameters": 0,
                     "method": cfg.fewshot.method if cfg.fewshot.method in UNTRAINED else "zero_shot",
                     "inference_seconds": round(time.perf_counter() - start, 1)},
        "prompting": details,
    })
    if main:
        atomic_write_json(run_dir / "task.json", {"name": prepared.task.name, "state": prepared.task.state()})
        write_report(run_dir, report)
        atomic_write_json(run_dir / "predictions.json", labels)  # no weights to predict with later
        print(f"\nWithout training, on the {test_name} split ({len(prepared.data.splits[test_name])} examples):")
        print(comparison_table(report, test_name))
        print(f"\nrun directory: {run_dir}")
    return report


def decoder_zero_shot(task: Any, test: list[dict[str, Any]]) -> list[Any]:
    """The generative task's zero-shot baseline: its prompt (or the label names), no demonstrations."""
    from tuneforge.models import load_backbone
    from tuneforge.prompting.icl import decoder_predict
    from tuneforge.prompting.templates import PromptSpec

    if not task.model_path:
        raise ValueError("the zero-shot baseline needs TaskContext.model_path (the untuned model)")
    spec = getattr(task, "prompt", None) or PromptSpec.from_labels(task.labels)
    model = load_backbone(task.model_path, causal_lm=True).eval()
    result = decoder_predict(model, task.tokenizer, spec, task.labels, test)
    return [row.tolist() for row in result.log_probs.exp()]


# ---------------------------------------------------------------- SetFit in place of the loop
def fit_setfit_run(cfg: Any, prepared: Any, model: torch.nn.Module, run_dir: Path) -> Any:
    """``fewshot.method: setfit``: the SetFit body + head on the (k-shot) train split; a ``FitResult``."""
    from tuneforge.prompting.setfit import SetFitOptions, fit_setfit

    f = cfg.fewshot
    opts = SetFitOptions(iterations=f.setfit_iterations, epochs=f.setfit_epochs, batch_size=f.setfit_batch_size,
                         lr=f.setfit_lr)
    examples, features = list(prepared.data.splits["train"]), list(prepared.features["train"])
    if f.setfit_descriptions:  # the prompt's label descriptions join the labelled examples
        extra = [{"text": d, "labels": [lab]} for lab, descs in prepared.task.prompt.descriptions.items()
                 for d in descs]
        examples += extra
        features += [prepared.task.encode(ex) for ex in extra]
    return fit_setfit(model, prepared.task, features, examples, prepared.resolved.path, opts, cfg.seed, run_dir)
