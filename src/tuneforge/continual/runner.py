"""``tuneforge continual``: train the stages in order with one strategy, score every stage after each, resume."""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tuneforge.config import RunConfig, save_config
from tuneforge.continual.masking import MaskedLoss, class_masks
from tuneforge.continual.metrics import summarise
from tuneforge.continual.stages import SHARED_HEAD, Stage, check_continual, load_stages
from tuneforge.continual.strategies import Replay, Strategy, build_strategy
from tuneforge.evaluation.evaluate import predict_features
from tuneforge.io_utils import atomic_write_json
from tuneforge.run import set_threads
from tuneforge.tasks.base import Feature
from tuneforge.training.checkpoint import WEIGHTS, list_checkpoints, save_best
from tuneforge.training.loop import fit
from tuneforge.training.precision import run_precision

STATE = "continual_state.json"


class HeadSwap(nn.Module):
    """The shared backbone of ``model`` under another stage's head: pooled features → dropout → ``head``."""

    def __init__(self, model: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, **_: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.model.features(input_ids, attention_mask, token_type_ids)  # (B, H)
        return {"logits": self.head(self.model.dropout(pooled))}


@dataclass
class Context:
    """What strategies see of the sequence: stages, the model in training, earlier heads and label indices."""

    stages: list[Stage]
    scenario: str
    index: int = 0
    model: nn.Module | None = None
    heads: dict[int, nn.Module] = field(default_factory=dict)  # stage -> its trained head (a head per stage)
    device: torch.device = torch.device("cpu")
    loss_mask: str = "none"

    @property
    def shared_head(self) -> bool:
        return self.scenario in SHARED_HEAD

    def train_features(self, s: int) -> list[Feature]:
        return self.stages[s].prepared.features["train"]

    def task_of(self, s: int) -> Any:
        return self.stages[s].prepared.task

    def label_of(self, s: int, r: int) -> Any:
        return self.train_features(s)[r]["labels"]

    def head_model(self, s: int) -> nn.Module:
        return self.model if self.shared_head else HeadSwap(self.model, self.heads[s])

    def shared_parameter_names(self) -> list[str]:
        return [n for n, p in self.model.named_parameters()
                if p.requires_grad and (self.shared_head or n.startswith("backbone."))]

    def earlier_heads(self) -> list[nn.Module]:
        if self.shared_head:
            return [_frozen(self.model.classifier)]
        return [self.heads[s] for s in range(self.index)]

    def stage_labels(self, s: int) -> set[str]:
        return {lab for ex in self.stages[s].prepared.splits["train"] for lab in ex["labels"]}

    def old_classes(self) -> list[int] | None:
        """A shared head's output indices of the classes seen before this stage (None with a head per stage)."""
        if not self.shared_head:
            return None
        seen = set().union(*(self.stage_labels(s) for s in range(self.index)))
        return [i for i, lab in enumerate(self.task_of(self.index).labels) if lab in seen]

    def loss_task(self, s: int) -> Any:
        """Stage ``s``'s task as its training loss sees it: with one head and ``loss_mask``, over the allowed logits."""
        task = self.task_of(s)
        if self.loss_mask == "none" or not self.shared_head:
            return task
        earlier = set().union(*(self.stage_labels(j) for j in range(s)))
        return MaskedLoss(task, self.loss_mask, *class_masks(task.labels, self.stage_labels(s), earlier))


def _frozen(module: nn.Module) -> nn.Module:
    out = copy.deepcopy(module)
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def accuracy(model: nn.Module, stage: Stage, batch_size: int) -> float:
    p = stage.prepared
    preds = predict_features(model, p.task, p.features[p.test_split], batch_size)
    return float(p.task.metrics(preds, p.splits[p.test_split])["accuracy"])


def run_continual(cfg: RunConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train ``cfg.continual.stages`` in order and write RUN/report.json with the accuracy matrix and its scores.

    >>> # report = run_continual(load_config("configs/continual/task_incremental.yaml"))
    """
    check_continual(cfg)
    set_threads(cfg.train.num_threads)
    run_dir = Path(cfg.output_dir)
    state = _open(run_dir, cfg, resume, overwrite)
    stages = load_stages(cfg, run_dir)
    cc = cfg.continual
    strategy = build_strategy(cc.strategy, cc, cfg.seed)
    # joint trains on every row seen so far at once: a stage's own rows scored over its own classes alone would never
    # compete with the earlier ones (its newest classes came out under-predicted), so the reference uses "seen"
    mask = "seen" if cc.strategy == "joint" and cc.loss_mask == "current" else cc.loss_mask
    ctx = Context(stages, cc.scenario, loss_mask=mask)
    fresh = _fresh_heads(stages, ctx.shared_head)
    if state["before"] is None:
        state["before"] = [accuracy(HeadSwap(fresh["model"], fresh[j]), st, cfg.eval.batch_size)
                           for j, st in enumerate(stages)]
    carried, stage_models = _restore(run_dir, stages, state["done"], ctx, strategy,
                                     cc.strategy == "adapter_per_stage")
    for i in range(state["done"], len(stages)):
        ctx.index = i
        row, cost, carried = _train_stage(cfg, stages[i], ctx, strategy, carried, fresh, stage_models, run_dir)
        strategy.save(run_dir / "strategy")
        state["R"].append(row)
        state["cost"].append(cost)
        state["done"] = i + 1
        atomic_write_json(run_dir / STATE, state)
        print(f"after stage {i} ({stages[i].name}): " + "  ".join(f"{st.name} {a:.4f}" for st, a in zip(stages, row)))
    if not ctx.shared_head and cc.strategy != "adapter_per_stage":
        _write_final_heads(run_dir, stages, ctx)
    return _report(run_dir, cfg, stages, state)


def _open(run_dir: Path, cfg: RunConfig, resume: bool, overwrite: bool) -> dict[str, Any]:
    state_path = run_dir / STATE
    if resume and state_path.is_file():
        state = json.loads(state_path.read_text())
        print(f"resuming the sequence at stage {state['done']} of {len(cfg.continual.stages)}")
        return state
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{run_dir} exists and is not empty; pass --resume to continue it or --overwrite "
                                  f"to start again")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    state = {"done": 0, "R": [], "cost": [], "before": None}
    atomic_write_json(state_path, state)
    return state


def _fresh_heads(stages: list[Stage], shared: bool) -> dict[Any, nn.Module]:
    """The untrained model (pretrained backbone) and each stage's freshly initialised head: the "before" row, and
    the head a not-yet-trained stage is scored with (forward transfer)."""
    out: dict[Any, nn.Module] = {}
    for j, st in enumerate(stages):
        model = st.prepared.build_model().model
        out.setdefault("model", model)
        out[j] = _frozen(model.classifier) if not shared or j == 0 else out[0]
    return out


def _restore(run_dir: Path, stages: list[Stage], done: int, ctx: Context, strategy: Strategy,
             adapters: bool) -> tuple[dict[str, torch.Tensor] | None, dict[int, nn.Module]]:
    """After a restart: the weights and heads of the stages already finished, and the strategy's memory."""
    from safetensors.torch import load_file

    carried, stage_models = None, {}
    for j in range(done):
        weights = load_file(str(run_dir / "stages" / stages[j].folder / "best" / WEIGHTS))
        model = stages[j].prepared.build_model().model
        model.load_state_dict(weights, strict=False)
        ctx.heads[j] = _frozen(model.classifier)
        ctx.model = model
        if adapters:
            stage_models[j] = model
        carried = {k: v for k, v in model.state_dict().items()}
        if isinstance(strategy, Replay):
            ctx.index = j
            strategy.finish(ctx)
    strategy.load(run_dir / "strategy")
    return carried, stage_models


def _train_stage(cfg: RunConfig, stage: Stage, ctx: Context, strategy: Strategy,
                 carried: dict[str, torch.Tensor] | None, fresh: dict[Any, nn.Module],
                 stage_models: dict[int, nn.Module], run_dir: Path) -> tuple[list[float], dict, dict]:
    p, scfg = stage.prepared, stage.prepared.cfg
    stage_dir = Path(scfg.output_dir)
    built = p.build_model()
    model = built.model
    per_stage_adapter = cfg.continual.strategy == "adapter_per_stage"
    if carried is not None and not per_stage_adapter:  # a head per stage: only the backbone carries over
        keep = carried if ctx.shared_head else {k: v for k, v in carried.items() if k.startswith("backbone.")}
        model.load_state_dict(keep, strict=False)
    ctx.model = model
    plan = strategy.plan(ctx)
    _write_stage_files(stage_dir, p)
    scfg.train.resume = bool(list_checkpoints(stage_dir / "checkpoints"))  # a stage a kill interrupted
    precision = run_precision(scfg.train.precision, stage_dir / "checkpoints" if scfg.train.resume else None)
    from tuneforge.run import new_accelerator

    t0 = time.perf_counter()
    result = fit(model, ctx.loss_task(stage.index), p.features["train"] + plan.extra_train, p.features[p.validation_split],
                 p.splits[p.validation_split], scfg.train, scfg.seed, stage_dir, accelerator=new_accelerator(precision),
                 step_hooks=built.step_hooks, eval_batch_size=cfg.eval.batch_size,
                 loss_terms=[*built.loss_terms, *plan.loss_terms], batch_hooks=plan.batch_hooks)
    seconds = time.perf_counter() - t0
    model.eval()
    ctx.heads[stage.index] = _frozen(model.classifier)
    if per_stage_adapter:  # the frozen base under each stage's own adapter stays in memory for scoring
        stage_models[stage.index] = model
    strategy.finish(ctx)
    row = _score_row(cfg, ctx, stage.index, fresh, stage_models)
    cost = {"stage": stage.name, "seconds": round(seconds, 1), "steps": result.global_step,
            "train_rows": len(p.features["train"]) + len(plan.extra_train),
            "trainable_parameters": built.parameters["trainable"], **plan.cost}
    if per_stage_adapter:
        cost["extra_parameters"] = built.parameters["trainable"]
    return row, cost, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _score_row(cfg: RunConfig, ctx: Context, i: int, fresh: dict[Any, nn.Module],
               stage_models: dict[int, nn.Module]) -> list[float]:
    """R[i][j] for every stage j: trained stages with their own head, later ones with a fresh head."""
    row = []
    for j, st in enumerate(ctx.stages):
        if cfg.continual.strategy == "adapter_per_stage":  # the frozen base under stage j's own adapter
            model = stage_models[j] if j <= i else HeadSwap(fresh["model"], fresh[j])
        elif ctx.shared_head:
            model = ctx.model
        else:
            model = HeadSwap(ctx.model, ctx.heads[j] if j <= i else fresh[j])
        row.append(accuracy(model, st, cfg.eval.batch_size))
    return row


def _write_stage_files(stage_dir: Path, p: Any) -> None:
    """What makes a stage folder a run directory Predictor.from_run_dir opens: config, task state, tokenizer."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    save_config(p.cfg, stage_dir / "config.yaml")
    atomic_write_json(stage_dir / "task.json", {"name": p.task.name, "state": p.task.state()})
    p.tokenizer.save_pretrained(stage_dir / "tokenizer")


def _write_final_heads(run_dir: Path, stages: list[Stage], ctx: Context) -> None:
    """A head per stage: RUN/final/<i>-<name>/ holds the final backbone under stage i's head, as a run directory."""
    for j, st in enumerate(stages):
        folder = run_dir / "final" / st.folder
        _write_stage_files(folder, st.prepared)
        model = st.prepared.build_model().model
        state = {k: v for k, v in ctx.model.state_dict().items() if k.startswith("backbone.")}
        model.load_state_dict(state, strict=False)
        model.classifier.load_state_dict(ctx.heads[j].state_dict())
        save_best(folder / "best", model, {"step": None, "stage": st.name})


def _report(run_dir: Path, cfg: RunConfig, stages: list[Stage], state: dict[str, Any]) -> dict[str, Any]:
    from tuneforge.continual.plots import format_table, write_heatmap

    names = [st.name for st in stages]
    report = {"strategy": cfg.continual.strategy, "scenario": cfg.continual.scenario, "model": cfg.model,
              "stages": names, "R": state["R"], "before": state["before"],
              **summarise(state["R"], state["before"]), "cost": state["cost"],
              "total_seconds": round(sum(c["seconds"] for c in state["cost"]), 1),
              "models": _model_dirs(run_dir, cfg, stages)}
    atomic_write_json(run_dir / "report.json", report)
    report["heatmap"] = str(write_heatmap(report, run_dir / "heatmap"))
    atomic_write_json(run_dir / "report.json", report)
    print(format_table(report))
    return report


def _model_dirs(run_dir: Path, cfg: RunConfig, stages: list[Stage]) -> dict[str, str]:
    """Stage name -> the run directory that predicts it after the last stage."""
    if cfg.continual.scenario in SHARED_HEAD:
        last = run_dir / "stages" / stages[-1].folder
        return {st.name: str(last) for st in stages}
    if cfg.continual.strategy == "adapter_per_stage":
        return {st.name: str(run_dir / "stages" / st.folder) for st in stages}
    return {st.name: str(run_dir / "final" / st.folder) for st in stages}
