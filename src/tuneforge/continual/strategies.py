"""Continual-learning strategies (naive, replay, ewc, lwf, adapter_per_stage, joint) and the maths they rest on."""

from __future__ import annotations

import random
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tuneforge.evaluation.evaluate import model_inputs
from tuneforge.registry import Registry
from tuneforge.tasks.base import Feature

# ---------------------------------------------------------------- replay buffers


class ReservoirBuffer:
    """Algorithm R (Vitter, 1985): after n offers, each item is kept with probability k/n, whatever the order.

    Written here because it is a dozen lines and must be seeded and resumable, which library samplers are not.

    >>> b = ReservoirBuffer(2, seed=0); [b.offer(i) for i in range(10)] and len(b.items)
    2
    """

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity, self.seen, self.items = capacity, 0, []
        self.rng = random.Random(seed)

    def offer(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append(item)
            return
        slot = self.rng.randrange(self.seen)  # uniform over 0..seen-1: replace with probability capacity/seen
        if slot < self.capacity:
            self.items[slot] = item

    def resize(self, capacity: int) -> None:
        """A shrinking budget drops a uniform random subset (uniformity is kept); a growing one fills later."""
        if capacity < len(self.items):
            self.items = self.rng.sample(self.items, capacity)
        self.capacity = capacity


def class_balanced(items: Sequence[Any], label_of: Callable[[Any], Any], capacity: int, seed: int) -> list[Any]:
    """Up to ``capacity`` items with the labels as equal as the data allows (round-robin over shuffled classes).

    >>> sorted(class_balanced(["a1", "a2", "a3", "b1"], lambda s: s[0], 2, seed=0))[1]
    'b1'
    """
    rng = random.Random(seed)
    by_label: dict[Any, list[Any]] = defaultdict(list)
    for item in items:
        by_label[label_of(item)].append(item)
    pools = [rng.sample(v, len(v)) for _, v in sorted(by_label.items(), key=lambda kv: str(kv[0]))]
    out: list[Any] = []
    while len(out) < capacity and any(pools):
        for pool in pools:
            if pool and len(out) < capacity:
                out.append(pool.pop())
    return out


# ---------------------------------------------------------------- EWC


def fisher_diagonal(model: nn.Module, loss_of: Callable[[Feature], torch.Tensor], rows: Sequence[Feature],
                    names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Empirical diagonal Fisher: the mean over ``rows`` of each row's squared gradient of its loss, for the
    parameters ``names``; scaled to mean 1 over them so ``ewc_lambda`` depends less on the model's size."""
    params = dict(model.named_parameters())
    fisher = {n: torch.zeros_like(params[n], dtype=torch.float32) for n in names}
    was_training = model.training
    model.eval()  # no dropout: the curvature of the model as it will be used
    for row in rows:
        model.zero_grad(set_to_none=True)
        loss_of(row).backward()
        for n in names:
            if params[n].grad is not None:
                fisher[n] += params[n].grad.detach().float() ** 2
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    total = sum(float(f.sum()) for f in fisher.values())
    count = sum(f.numel() for f in fisher.values())
    scale = count / total if total > 0 else 1.0
    return {n: f * scale for n, f in fisher.items()}


def ewc_penalty(params: dict[str, torch.Tensor], fisher: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor],
                lam: float) -> torch.Tensor:
    """lam / 2 * sum_i F_i (theta_i - theta*_i)^2 (Kirkpatrick et al., 2017)."""
    total = sum(((params[n] - anchor[n]) ** 2 * f).sum() for n, f in fisher.items())
    return 0.5 * lam * total


def online_fisher(old: dict[str, torch.Tensor] | None, new: dict[str, torch.Tensor],
                  gamma: float) -> dict[str, torch.Tensor]:
    """Online EWC (Schwarz et al., 2018): F <- gamma * F_old + F_new, one penalty whatever the number of stages."""
    if old is None:
        return dict(new)
    return {n: gamma * old[n] + new[n] for n in new}


# ---------------------------------------------------------------- LwF


def row_key(input_ids: Sequence[int] | torch.Tensor, mask: Sequence[int] | torch.Tensor | None = None) -> tuple:
    """The tokens of one row without padding: how a collated batch row finds its precomputed teacher logits."""
    ids = torch.as_tensor(input_ids)
    if mask is not None:
        ids = ids[torch.as_tensor(mask).bool()]
    return tuple(int(t) for t in ids)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher/T) || softmax(student/T)) * T^2, averaged over rows (Hinton et al.; Li & Hoiem, LwF)."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=-1), F.softmax(teacher / t, dim=-1),
                    reduction="batchmean") * t * t


# ---------------------------------------------------------------- strategies


@dataclass
class StagePlan:
    """What a strategy adds to one stage's ``fit``: rows mixed into train, loss terms and batch hooks."""

    extra_train: list[Feature] = field(default_factory=list)
    loss_terms: list[Callable[[nn.Module], torch.Tensor]] = field(default_factory=list)
    batch_hooks: list[Callable[[dict], None]] = field(default_factory=list)
    cost: dict[str, Any] = field(default_factory=dict)


class Strategy:
    """The no-op strategy (``naive``): plain sequential fine-tuning. Others fill in ``plan`` and ``finish``."""

    name = "naive"

    def __init__(self, opts: Any, seed: int) -> None:
        self.opts, self.seed = opts, seed

    def plan(self, ctx: Any) -> StagePlan:
        return StagePlan()

    def finish(self, ctx: Any) -> None:
        """After stage ``ctx.index`` has trained: remember what later stages need."""

    def save(self, folder: Path) -> None:
        """State a resumed run needs (the replay buffer is recomputed from its seed instead)."""

    def load(self, folder: Path) -> None:
        pass


class Replay(Strategy):
    """Rows of earlier stages kept in a buffer of a fixed budget and trained on again in later stages."""

    name = "replay"

    def __init__(self, opts: Any, seed: int, unlimited: bool = False) -> None:
        super().__init__(opts, seed)
        self.unlimited = unlimited
        self.reservoir = ReservoirBuffer(0, seed)
        self.pool: list[tuple[int, int]] = []  # (stage, row) of everything seen, for class-balanced draws

    def budget(self, seen: int) -> int:
        if self.unlimited:
            return seen
        return self.opts.replay_size if self.opts.replay_size is not None else int(self.opts.replay_fraction * seen)

    def buffer(self, ctx: Any) -> list[tuple[int, int]]:
        if self.unlimited or self.opts.replay_sampling == "reservoir":
            return list(self.pool) if self.unlimited else list(self.reservoir.items)
        return class_balanced(self.pool, lambda sr: ctx.label_of(*sr), self.budget(len(self.pool)), self.seed)

    def finish(self, ctx: Any) -> None:
        rows = [(ctx.index, r) for r in range(len(ctx.train_features(ctx.index)))]
        self.pool.extend(rows)
        if not self.unlimited:
            self.reservoir.resize(self.budget(len(self.pool)))
            self.reservoir.capacity = self.budget(len(self.pool))
            for item in rows:
                self.reservoir.offer(item)

    def plan(self, ctx: Any) -> StagePlan:
        kept = self.buffer(ctx)
        cost = {"buffer_rows": len(kept), "earlier_rows": len(self.pool)}
        if not kept:
            return StagePlan(cost=cost)
        if ctx.shared_head:  # one label set: the kept rows are mixed into this stage's training rows
            return StagePlan(extra_train=[ctx.train_features(s)[r] for s, r in kept], cost=cost)
        return StagePlan(loss_terms=[self._replay_term(ctx, kept)], cost=cost)

    def _replay_term(self, ctx: Any, kept: list[tuple[int, int]]) -> Callable[[nn.Module], torch.Tensor]:
        """Task-incremental: each step, a batch of one earlier stage (in turn) through its own head."""
        by_stage: dict[int, list[Feature]] = defaultdict(list)
        for s, r in kept:
            by_stage[s].append(ctx.train_features(s)[r])
        stages = sorted(by_stage)
        rng = random.Random(self.seed + ctx.index)
        turn = [0]

        def term(model: nn.Module) -> torch.Tensor:
            s = stages[turn[0] % len(stages)]
            turn[0] += 1
            rows = rng.sample(by_stage[s], min(self.opts.replay_batch_size, len(by_stage[s])))
            batch = ctx.task_of(s).collate(rows)
            loss_sum, items = ctx.task_of(s).loss(ctx.head_model(s)(**model_inputs(batch, ctx.device)), batch)
            return loss_sum / max(float(items), 1.0)

        return term


class EWC(Strategy):
    """Elastic weight consolidation, online: one Fisher-weighted pull towards the weights after the last stage."""

    name = "ewc"

    def __init__(self, opts: Any, seed: int) -> None:
        super().__init__(opts, seed)
        self.fisher: dict[str, torch.Tensor] | None = None
        self.anchor: dict[str, torch.Tensor] = {}

    def plan(self, ctx: Any) -> StagePlan:
        if self.fisher is None:
            return StagePlan()
        fisher, anchor, lam = self.fisher, self.anchor, self.opts.ewc_lambda

        def term(model: nn.Module) -> torch.Tensor:
            params = dict(model.named_parameters())
            return ewc_penalty(params, fisher, anchor, lam)

        return StagePlan(loss_terms=[term], cost={"penalised_parameters": sum(f.numel() for f in fisher.values())})

    def finish(self, ctx: Any) -> None:
        if ctx.index == len(ctx.stages) - 1:  # no stage follows the last one: its Fisher would never be used
            return
        model = ctx.model
        names = ctx.shared_parameter_names()
        feats = ctx.train_features(ctx.index)
        rows = random.Random(self.seed + ctx.index).sample(list(feats), min(self.opts.ewc_samples, len(feats)))
        task = ctx.loss_task(ctx.index)  # the loss the stage trained on (masked logits with continual.loss_mask)

        def loss_of(row: Feature) -> torch.Tensor:
            batch = task.collate([row])
            loss_sum, items = task.loss(model(**model_inputs(batch, ctx.device)), batch)
            return loss_sum / max(float(items), 1.0)

        new = fisher_diagonal(model, loss_of, rows, names)
        self.fisher = online_fisher(self.fisher, new, self.opts.ewc_gamma)
        params = dict(model.named_parameters())
        self.anchor = {n: params[n].detach().clone() for n in names}

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        from tuneforge.io_utils import atomic_path

        if self.fisher is None:
            return
        tensors = {**{f"fisher.{n}": t.contiguous() for n, t in self.fisher.items()},
                   **{f"anchor.{n}": t.contiguous() for n, t in self.anchor.items()}}
        with atomic_path(folder / "ewc.safetensors") as tmp:
            save_file(tensors, str(tmp))

    def load(self, folder: Path) -> None:
        from safetensors.torch import load_file

        path = folder / "ewc.safetensors"
        if path.is_file():
            tensors = load_file(str(path))
            self.fisher = {k[len("fisher."):]: v for k, v in tensors.items() if k.startswith("fisher.")}
            self.anchor = {k[len("anchor."):]: v for k, v in tensors.items() if k.startswith("anchor.")}


class LwF(Strategy):
    """Learning without forgetting: the earlier heads' outputs on this stage's rows, recorded before it trains, are
    distilled into the model while it learns the new stage."""

    name = "lwf"

    def plan(self, ctx: Any) -> StagePlan:
        if ctx.index == 0:
            return StagePlan()
        heads = ctx.earlier_heads()
        targets = teacher_targets(ctx.model, heads, ctx.task_of(ctx.index), ctx.train_features(ctx.index),
                                  ctx.device, ctx.old_classes())
        pending: deque[dict] = deque()  # fit runs every micro-batch's hooks before the window's forward passes
        alpha, temp = self.opts.lwf_alpha, self.opts.lwf_temperature

        def hook(batch: dict) -> None:
            pending.append(batch)

        def term(model: nn.Module) -> torch.Tensor:
            batch = pending.popleft()
            pooled = model.features(**_feature_inputs(batch, ctx.device))  # (B, H)
            keys = [row_key(ids, m) for ids, m in zip(batch["input_ids"], batch["attention_mask"])]
            loss = pooled.new_zeros(())
            for h, (head, cols) in enumerate(heads_with_cols(heads, ctx.old_classes())):
                teacher = torch.stack([targets[k][h] for k in keys]).to(pooled.device)  # (B, C_h)
                loss = loss + distillation_loss(head(model.dropout(pooled))[:, cols], teacher, temp)
            return alpha * loss

        return StagePlan(loss_terms=[term], batch_hooks=[hook],
                         cost={"teacher_rows": len(targets), "teacher_heads": len(heads)})


def _feature_inputs(batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
    keep = ("input_ids", "attention_mask", "token_type_ids")
    return {k: v.to(device) for k, v in batch.items() if k in keep}


def heads_with_cols(heads: list[nn.Module], old_classes: list[int] | None) -> list[tuple[nn.Module, Any]]:
    """Each earlier head with the output columns distilled: all of them (a head per stage), or the classes seen
    before this stage (one shared head, whose new classes are left free to learn)."""
    cols: Any = old_classes if old_classes is not None else slice(None)
    return [(head, cols) for head in heads]


@torch.no_grad()
def teacher_targets(model: nn.Module, heads: list[nn.Module], task: Any, rows: Sequence[Feature],
                    device: torch.device, old_classes: list[int] | None,
                    batch_size: int = 64) -> dict[tuple, list[torch.Tensor]]:
    """Row tokens -> each earlier head's logits (restricted to ``old_classes`` for a shared head), from the model as
    it stands before the stage trains. Computed once per stage, in eval mode."""
    was_training = model.training
    model.eval()
    out: dict[tuple, list[torch.Tensor]] = {}
    for s in range(0, len(rows), batch_size):
        batch = task.collate(list(rows[s:s + batch_size]))
        pooled = model.features(**_feature_inputs(batch, device))  # (B, H)
        per_head = [head(pooled)[:, cols].float().cpu() for head, cols in heads_with_cols(heads, old_classes)]
        for i, (ids, m) in enumerate(zip(batch["input_ids"], batch["attention_mask"])):
            out[row_key(ids, m)] = [logits[i] for logits in per_head]
    model.train(was_training)
    return out


class AdapterPerStage(Strategy):
    """A LoRA adapter per stage over the frozen pretrained backbone: earlier stages' weights are never touched, so
    nothing is forgotten; the stage id picks the adapter. The runner builds each stage from the base."""

    name = "adapter_per_stage"


class Joint(Replay):
    """Every stage trains on all the data seen so far: the reference upper bound, not a continual method."""

    name = "joint"

    def __init__(self, opts: Any, seed: int) -> None:
        super().__init__(opts, seed, unlimited=True)


STRATEGIES: Registry[type[Strategy]] = Registry("continual strategy")
for _cls in (Strategy, Replay, EWC, LwF, AdapterPerStage, Joint):
    STRATEGIES.register(_cls.name, _cls)


def build_strategy(name: str, opts: Any, seed: int) -> Strategy:
    return STRATEGIES.get(name)(opts, seed)
