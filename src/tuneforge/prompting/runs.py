"""How few-shot and prompting modes plug into a training run: the prompt given to the task, the k-shot ids saved,
zero-shot / in-context runs evaluated without training, and SetFit training in place of the loop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
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
    return untrained_probabilities(cfg, prepared.task, prepared.resolved.path, prepared.tokenizer,
                                   prepared.data.splits[split], prepared.data.splits.get("train", []))


def untrained_probabilities(cfg: Any, task: Any, model_path: str, tokenizer: Any, examples: list[dict[str, Any]],
                            pool: list[dict[str, Any]]) -> tuple[list[list[float]], dict[str, Any]]:
    """(N, L) label probabilities of parsed ``examples`` with no training: label-description similarity for an
    encoder, verbaliser likelihood for a decoder (with ``fewshot.k`` demonstrations from ``pool`` when the method
    is icl); and what the prompting did."""
    spec = task.prompt
    if not getattr(task, "needs_lm_head", False):
        if cfg.fewshot.method == "icl":
            raise ValueError("fewshot.method icl needs a decoder (task classification_generative, e.g. smollm2)")
        from tuneforge.evaluation.baselines import mean_pooled_embedder
        from tuneforge.prompting.zero_shot import description_scores

        embed = mean_pooled_embedder(model_path, tokenizer)
        scores = description_scores([ex["text"] for ex in examples], task.labels, spec, embed)
        return [row.tolist() for row in torch.softmax(scores / 0.05, -1)], {"mode": "description_similarity"}
    result = decoder_scores(cfg, model_path, task, examples, pool)
    return [row.tolist() for row in result.log_probs.exp()], {"mode": "icl" if cfg.fewshot.method == "icl" else
                                                              "zero_shot", **result.summary()}


def predict_untrained(cfg: Any, items: list[str | dict[str, Any]]) -> list[dict[str, Any]]:
    """``tuneforge predict --zero-shot CONFIG``: classify ``items`` with the config's untuned model, the way a
    zero-shot (or, with ``fewshot.method: icl``, in-context) run scores its test split; one row per item in the
    shape ``predict`` gives for a trained run. The label set is ``data.labels``, else the prompt's (verbaliser or
    descriptions), else the train file's labels; the train file is also the demonstration pool for icl."""
    import copy
    from types import SimpleNamespace

    from tuneforge.config_typing import ConfigError
    from tuneforge.models import load_tokenizer, resolve_model
    from tuneforge.prompting.templates import prompt_labels
    from tuneforge.run import make_task, prepare

    if cfg.task not in ("classification", "classification_generative"):
        raise ConfigError(f"prediction without training covers tasks classification and classification_generative; "
                          f"the config's task is {cfg.task}")
    if cfg.data.multi_label:
        raise ConfigError("prediction without training covers single-label classification (data.multi_label is set)")
    cfg = copy.deepcopy(cfg)
    labels = cfg.data.labels or prompt_labels(cfg.fewshot)
    if labels:
        cfg.data.labels = list(labels)
    pool: list[dict[str, Any]] = []
    if cfg.data.train and (not labels or cfg.fewshot.method == "icl"):  # labels or demonstrations from the data
        prepared = prepare(cfg, encode=False)
        task, model_path, tokenizer = prepared.task, prepared.resolved.path, prepared.tokenizer
        pool = prepared.data.splits["train"]
    elif labels:
        resolved = resolve_model(cfg.model)
        tokenizer = load_tokenizer(resolved.path)
        task, model_path = make_task(cfg, resolved), resolved.path
        task.setup([], tokenizer)
    else:
        raise ConfigError("prediction without training needs the label set: data.labels, a verbaliser or "
                          "descriptions in fewshot (or its prompt file), or data.train to read them from")
    setup_fewshot(cfg, SimpleNamespace(task=task, data=SimpleNamespace(splits={}, shots=None)), None)
    examples = [task.parse_input(item) for item in items]
    probs, _ = untrained_probabilities(cfg, task, model_path, tokenizer, examples, pool)
    return [task.format_prediction(p, ex) for p, ex in zip(probs, examples)]


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


def evaluate_untrained(cfg: Any, prepared: Any, baselines: dict[str, Any], run_dir: Path, main: bool,
                       baseline_predictions: dict[str, list[Any]] | None = None) -> dict:
    """The report of a run that trains nothing, in the usual shape: ``metrics.<split>`` are the prompted model's;
    ``report.html`` from the test split's probabilities and the baselines' predictions per test row."""
    from tuneforge.evaluation.report import build_report, comparison_table, write_report

    start = time.perf_counter()
    metrics, details, labels, probs = {}, {}, {}, {}
    for split in ("validation", "test"):
        if split in prepared.data.splits:
            probs[split], details[split] = untrained_predictions(cfg, prepared, split)
            metrics[split] = prepared.task.metrics(probs[split], prepared.data.splits[split])
            labels[split] = [prepared.task.labels[max(range(len(p)), key=p.__getitem__)] for p in probs[split]]
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
        write_untrained_page(cfg, prepared, run_dir, probs.get(test_name), baseline_predictions or {})
        print(f"\nWithout training, on the {test_name} split ({len(prepared.data.splits[test_name])} examples):")
        print(comparison_table(report, test_name))
        print(f"\nrun directory: {run_dir}")
    return report


def write_untrained_page(cfg: Any, prepared: Any, run_dir: Path, probs: list[list[float]] | None,
                         baseline_predictions: dict[str, list[Any]]) -> Path:
    """``predictions/`` (the prompted model's test rows and each baseline's), the counterfactual tests, then
    ``report.html``: the page a trained run gets, less what needs weights (curves, explanations)."""
    from tuneforge.evaluation import predictions as P
    from tuneforge.evaluation.analysis import peak_memory_mb, read_options
    from tuneforge.evaluation.html_report import write_html_report
    from tuneforge.evaluation.slices import read_columns
    from tuneforge.tracking import log_run_files

    start = time.perf_counter()
    task, test = prepared.task, prepared.data.splits.get(prepared.test_split, [])
    single_label = task.name == "classification_generative" or (task.name == "classification"
                                                                 and not task.multi_label)
    if single_label and probs is not None and test:
        meta = read_columns(test, cfg.eval.slices, read_options(cfg.data, task), cfg.data.format)
        rows = P.tuned_rows(test, np.asarray(probs), task.labels, meta)  # argmax, as the metrics decide
        P.save_predictions(run_dir, rows, {name: P.baseline_rows(preds, task.labels)
                                           for name, preds in baseline_predictions.items()})
        if cfg.eval.counterfactuals:
            _counterfactuals(cfg, prepared, run_dir)
        atomic_write_json(run_dir / P.FOLDER / "analysis.json", {
            "analysis_seconds": round(time.perf_counter() - start, 2), **peak_memory_mb()})
    page = write_html_report(run_dir)
    log_run_files(run_dir, cfg.train.trackers)
    return page


def recompute_untrained(run_dir: Path, cfg: Any) -> Path:
    """``tuneforge report --recompute`` for a run that trained nothing: the prompted model and the baselines score
    the test split again (there are no weights to load), then the page is rebuilt."""
    from tuneforge.evaluation.baselines import score_baselines
    from tuneforge.run import prepare

    prepared = prepare(cfg, encode=False)
    setup_fewshot(cfg, prepared, None)
    kept: dict[str, list[Any]] = {}
    score_baselines(cfg.eval.baselines, prepared.task, prepared.resolved, prepared.tokenizer,
                    prepared.data.splits["train"], prepared.data.splits.get(prepared.test_split, []), keep=kept)
    probs, _ = untrained_predictions(cfg, prepared, prepared.test_split)
    return write_untrained_page(cfg, prepared, run_dir, probs, kept)


def _counterfactuals(cfg: Any, prepared: Any, run_dir: Path) -> None:
    """The counterfactual template pairs scored by the prompted model, as a trained run scores them."""
    from tuneforge.evaluation.counterfactual import load_cases, resolve_template_file, run_counterfactuals

    task = prepared.task
    path = resolve_template_file(cfg.eval.counterfactuals, base=run_dir)

    def predict(texts: list[str]) -> Any:
        examples = [task.parse_input(t) for t in texts]
        return np.asarray(untrained_probabilities(cfg, task, prepared.resolved.path, prepared.tokenizer, examples,
                                                  prepared.data.splits.get("train", []))[0])

    result = run_counterfactuals(load_cases(path), predict, task.labels)
    atomic_write_json(run_dir / "counterfactuals.json", {"file": str(path), **result})


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
