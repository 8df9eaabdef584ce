"""The recommendation task: a bi-encoder tuned on users' interaction logs, wired to the Task protocol.

The task reads its own files (``load_data``): ``data.train`` is the log (user, item, time, optional rating) and
``recommend.items`` the item table. Each user's interactions are split by time (no future item reaches a
history), a training example is (history before an item → that item), and the loss is a softmax over the batch's
items: every other user's target plus ``recommend.hard_negatives`` sampled items per user. Validation and test
rank the whole catalogue for each user (metrics.py).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from tuneforge.config_sections import RecommendConfig
from tuneforge.data.load import LoadedData
from tuneforge.data.readers import BadRows, DataError, Record
from tuneforge.tasks.base import TASKS, Batch, Example, Feature, TaskContext
from tuneforge.tasks.recommendation import data as rdata
from tuneforge.tasks.recommendation.cross_encoder import RERANKERS
from tuneforge.tasks.recommendation.head import BiEncoder, in_batch_loss
from tuneforge.tasks.recommendation.metrics import rank_scores, ranking_metrics

ITEM_BATCH = 128  # items per forward pass when the catalogue is embedded


class RecommendationTask:
    name = "recommendation"
    metric_mode = "max"
    needs_lm_head = False
    peft_task_type = "FEATURE_EXTRACTION"
    labels: list[str] = []
    pair_col = None
    near_ties = None
    split_group = None

    def __init__(self, ctx: TaskContext):
        self.opts = ctx.recommend or RecommendConfig()
        RERANKERS.get(self.opts.rerank)  # an unknown re-ranker fails here, naming the known ones
        self.max_length = ctx.data.max_length
        self.pooling = "mean" if ctx.head.pooling == "auto" else ctx.head.pooling
        self.main_metric = f"ndcg@{self.opts.top_k}"
        self.tokenizer: Any = None
        self.model: BiEncoder | None = None  # set by build_model: validation embeds the catalogue with it
        self._catalogue: rdata.Catalogue | None = None
        self._item_tokens: list[list[int]] | None = None
        self._items_cache: tuple[tuple[int, float, float], np.ndarray] | None = None  # (weights key, matrix)
        self.counts: np.ndarray | None = None  # training interactions per catalogue row
        self.known: dict[str, list[str]] = {}  # each user's items before the test ones (ALS baseline)
        self.last_seen: np.ndarray | None = None  # per catalogue row: the last training interaction's time
        self.user_time: dict[str, dict[str, float]] = {}  # per user and split: the time of the last known item
        self.seed = 0
        self.split_audit: dict[str, int] = {}

    # ----- data -----
    @property
    def catalogue(self) -> rdata.Catalogue:
        if self._catalogue is None:
            if not self.opts.items:
                raise DataError("<config>", None, "the recommendation task needs an item table",
                                field="recommend.items")
            self._catalogue = rdata.read_catalogue(self.opts.items, self.opts.item_id_column,
                                                   self.opts.list_delimiter, self.opts.item_tags,
                                                   self.opts.tag_column)
        return self._catalogue

    def load_data(self, data: Any, seed: int) -> LoadedData:
        """Read ``data.train`` (the log) and the item table, split each user's interactions by time, and build
        the examples (``run.prepare`` calls this instead of the generic reader)."""
        o = self.opts
        if not data.train or isinstance(data.train, list) and len(data.train) != 1:
            raise DataError("<config>", None, "give the interaction log as one file", field="data.train")
        for name in ("validation", "test"):
            if getattr(data, name):
                raise DataError("<config>", None, "the recommendation task splits data.train per user by time "
                                                  f"(recommend.split); data.{name} is not read", field=f"data.{name}")
        log_path = data.train if isinstance(data.train, str) else data.train[0]
        cat = self.catalogue
        log = rdata.read_interactions(log_path, o.user_column, o.item_id_column, o.time_column, cat,
                                      o.rating_column, o.min_rating, data.encoding)
        splits = rdata.time_split(log, o.split, o.test_fraction, o.min_interactions)
        self.split_audit = rdata.leakage(splits)
        if any(self.split_audit.values()):  # the split is built not to allow this; a failure is a bug, not data
            raise DataError(log_path, None, f"the time split leaks future interactions: {self.split_audit}")
        self.counts = rdata.popularity((i for s in splits.values() for i in s.train), cat)
        self.last_seen = rdata.last_seen(splits, cat)
        self.user_time = {u: {"validation": max(s.times[:s.n_train], default=0.0),
                              "test": max(s.times[:s.n_train + s.n_val], default=0.0)} for u, s in splits.items()}
        self.known = {u: s.train + s.validation for u, s in splits.items()}
        self.seed = seed
        examples = rdata.build_examples(splits, o.targets_per_user, seed)
        files = {"train": log_path, "items": o.items, "item_tags": o.item_tags}
        return LoadedData(examples, files)

    def parse(self, records: list[Record], bad: BadRows) -> list[Example]:
        raise DataError("<records>", None, "the recommendation task reads its interaction log (data.train) and item "
                                           "table (recommend.items) itself; in-memory records are not supported")

    def parse_input(self, item: str | Record) -> Example:
        """A user for prediction: item ids they liked, oldest first (a comma-separated string, or a record with
        ``history`` or ``liked``)."""
        if isinstance(item, str):
            ids = [p.strip() for p in item.split(",") if p.strip()]
        else:
            ids = [str(i) for i in (item.get("history") or item.get("liked") or [])]
        unknown = [i for i in ids if i not in self.catalogue.index]
        if unknown:
            raise ValueError(f"unknown item ids {unknown[:5]}: not in the item table {self.opts.items}")
        if not ids:
            raise ValueError("give at least one item id the user liked")
        return {"user": "", "history": ids, "targets": [], "seen": ids}

    def stratify_key(self, ex: Example) -> Hashable:
        return ex["user"]

    def audit_view(self) -> tuple[Callable[[Example], str], Callable[[Example], list[str]]]:
        # a (user, target) pair in two splits is the leak that matters here; targets are not classes
        return (lambda ex: f"user {ex['user']} item {' '.join(ex['targets'])}"), (lambda ex: [])

    def setup(self, train: list[Example], tokenizer: Any) -> None:
        """Tokenizer, and each training example's sampled negatives (seeded; never one of the user's items)."""
        self.tokenizer = tokenizer
        if self.counts is None:
            return
        cat = self.catalogue
        weights = np.power(self.counts + 1.0, self.opts.negative_power)  # +1: unseen items can be drawn too
        rng = np.random.default_rng(self.seed)
        for ex in train:
            exclude = {cat.index[i] for i in ex["seen"]} | {cat.index[t] for t in ex["targets"]}
            ex["negatives"] = rdata.sample_negatives(self.opts.hard_negatives, weights, exclude, rng)

    def item_tokens(self) -> list[list[int]]:
        """Token ids of every catalogue item's text (recommend.item_template), computed once."""
        if self._item_tokens is None:
            cat = self.catalogue
            texts = [cat.text(i, self.opts.item_template) for i in cat.ids]
            self._item_tokens = self.tokenizer(texts, truncation=True, max_length=self.opts.item_max_length,
                                               add_special_tokens=True)["input_ids"]
        return self._item_tokens

    def user_text(self, history: Sequence[str]) -> str:
        return rdata.user_text(history, self.catalogue, self.opts.history_template, self.opts.history_length)

    def encode(self, ex: Example) -> Feature:
        ids = self.tokenizer(self.user_text(ex["history"]), truncation=True, max_length=self.max_length)["input_ids"]
        feature: Feature = {"input_ids": ids, "length": len(ids)}
        if "negatives" in ex:  # a training example: its target, then its negatives
            index, tokens = self.catalogue.index, self.item_tokens()
            rows = [index[ex["targets"][0]], *ex["negatives"]]
            feature["item_rows"] = rows
            feature["item_input_ids"] = [tokens[r] for r in rows]
            feature["positive_rows"] = sorted({index[i] for i in ex["seen"]} | {rows[0]})
        return feature

    def collate(self, features: Sequence[Feature]) -> Batch:
        pad = self.tokenizer.pad_token_id or 0
        batch = _pad([f["input_ids"] for f in features], pad)
        if "item_input_ids" not in features[0]:
            return batch
        # items: every user's target first (column i is user i's), then the sampled negatives in user order
        rows = [f["item_rows"][0] for f in features] + [r for f in features for r in f["item_rows"][1:]]
        toks = [f["item_input_ids"][0] for f in features] + [t for f in features for t in f["item_input_ids"][1:]]
        items = _pad(toks, pad)
        batch["item_input_ids"], batch["item_attention_mask"] = items["input_ids"], items["attention_mask"]
        batch["labels"] = torch.arange(len(features))
        row_t = torch.tensor(rows)  # (M,)
        mask = torch.stack([torch.isin(row_t, torch.tensor(f["positive_rows"])) for f in features])  # (B, M)
        mask[torch.arange(len(features)), torch.arange(len(features))] = False  # the user's own target
        batch["false_negatives"] = mask
        return batch

    # ----- model and loss -----
    def build_model(self, backbone: nn.Module) -> nn.Module:
        self.model = BiEncoder(backbone, self.pooling)
        return self.model

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        per = in_batch_loss(outputs["user"], outputs["items"], batch["labels"], batch.get("false_negatives"),
                            self.opts.temperature)
        return per.sum(), torch.tensor(float(per.numel()))

    def loss_items(self, batch: Batch) -> float:
        return float(batch["input_ids"].shape[0])

    # ----- prediction and metrics -----
    def predict(self, outputs: dict[str, torch.Tensor], batch: Batch) -> list[Any]:
        return outputs["user"].float().cpu().tolist()  # user embeddings; metrics ranks them against the catalogue

    @torch.inference_mode()
    def item_matrix(self, model: BiEncoder | None = None) -> np.ndarray:
        """(I, H) unit-length embeddings of the whole catalogue, in catalogue order."""
        model = model or self.model
        if model is None:
            raise RuntimeError("item_matrix needs the model (build_model, or pass one)")
        # a run scores validation at its last step, then validation and test again with the same weights: the
        # catalogue (9,742 MovieLens items) is embedded once for all three
        key = weights_key(model)
        if self._items_cache is not None and self._items_cache[0] == key:
            return self._items_cache[1]
        was_training = model.training
        model.eval()
        tokens = self.item_tokens()
        device = next(model.parameters()).device
        out = np.zeros((len(tokens), 0), dtype=np.float32)
        order = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))
        for s in range(0, len(order), ITEM_BATCH):
            idx = order[s:s + ITEM_BATCH]
            b = _pad([tokens[i] for i in idx], self.tokenizer.pad_token_id or 0)
            emb = model.embed(b["input_ids"].to(device), b["attention_mask"].to(device)).float().cpu().numpy()
            if out.shape[1] == 0:
                out = np.zeros((len(tokens), emb.shape[1]), dtype=np.float32)
            out[idx] = emb
        model.train(was_training)
        self._items_cache = (key, out)
        return out

    def rank(self, scores: np.ndarray, examples: list[Example]) -> list[dict[str, Any]]:
        """Rankings of (N, I) scores: each example's targets ranked, its earlier items removed."""
        index = self.catalogue.index
        return [rank_scores(row, [index[t] for t in ex["targets"]], [index[i] for i in ex["seen"]],
                            self.opts.top_k) for row, ex in zip(scores, examples)]

    def metrics(self, predictions: list[Any], examples: list[Example]) -> dict[str, Any]:
        if predictions and not isinstance(predictions[0], dict):  # user embeddings from the tuned model
            users = np.asarray(predictions, dtype=np.float32)  # (N, H)
            predictions = self.rank(users @ self.item_matrix().T, examples)
        cold = None
        if self.counts is not None:
            index = self.catalogue.index
            cold = [all(self.counts[index[t]] <= self.opts.cold_start_max for t in ex["targets"]) for ex in examples]
        return ranking_metrics(predictions, len(self.catalogue), self.opts.top_k, cold, self.opts.bootstrap,
                               self.seed)

    def baselines(self, names: Sequence[str], train: list[Example], test: list[Example],
                  embed: Callable[[list[str]], torch.Tensor] | None) -> dict[str, list[Any]]:
        """Rankings of reference models on ``test``: popularity (training counts), zero_shot (the untuned encoder's
        cosine similarity of user and item texts) and als (implicit's ALS on everything before the test items)."""
        from tuneforge.tasks.recommendation.baselines import als_scores, zero_shot_scores

        out: dict[str, list[Any]] = {}
        for name in names:
            if name == "popularity":
                out[name] = self.rank(np.broadcast_to(self.counts, (len(test), len(self.counts))), test)
            elif name == "zero_shot":
                if embed is None:
                    continue
                cat = self.catalogue
                items = [cat.text(i, self.opts.item_template) for i in cat.ids]
                out[name] = self.rank(zero_shot_scores(embed, [self.user_text(ex["history"]) for ex in test], items),
                                      test)
            elif name == "als":
                out[name] = self.rank(als_scores(self.known, [ex["user"] for ex in test], self.catalogue,
                                                 self.opts, self.seed), test)
            else:
                raise ValueError(f"unknown baseline {name!r} for recommendation; known: popularity, zero_shot, als")
        return out

    def format_prediction(self, pred: Any, ex: Example) -> dict[str, Any]:
        return {"embedding": [round(float(x), 6) for x in pred]}

    # ----- persistence -----
    def state(self) -> dict[str, Any]:
        return {"pooling": self.pooling, "items": len(self.catalogue), "split_audit": self.split_audit}

    def load_state(self, state: dict[str, Any], tokenizer: Any) -> None:
        self.pooling = state["pooling"]
        self.tokenizer = tokenizer


def weights_key(model: nn.Module) -> tuple[int, float, float]:
    """What identifies a model's current weights cheaply: the object, and the sum of every parameter's values and
    of their L2 norms, in float64 (any optimizer step moves both)."""
    with torch.no_grad():
        total = sum(float(p.sum(dtype=torch.float64)) for p in model.parameters())
        norms = sum(float(torch.linalg.vector_norm(p, dtype=torch.float64)) for p in model.parameters())
    return id(model), total, norms


def _pad(rows: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded (N, T) ids and their attention mask."""
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


TASKS.register("recommendation", RecommendationTask)
