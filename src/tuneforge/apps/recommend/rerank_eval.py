"""Re-rankers on a finished recommendation run: fit the cross-encoder (training targets, hard negatives from the
bi-encoder's own top rerank_k) and compare on the test users, same split and full-ranking protocol: the bi-encoder
alone, + the hybrid ranker, + the cross-encoder, and the hybrid with the cross-encoder's score as one more feature.
Written to ``recommend/rerank.json``; the cross-encoder to ``recommend/cross_encoder/``."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuneforge.evaluation.evaluate import predict_features
from tuneforge.io_utils import atomic_write_json, remove_dir
from tuneforge.tasks.recommendation import cross_encoder as ce
from tuneforge.tasks.recommendation import hybrid as hy
from tuneforge.tasks.recommendation.metrics import ranking_metrics

CROSS_FOLDER = "cross_encoder"
VALIDATION_GROUPS = 200  # validation users scored after the cross-encoder's epoch (the loop's best-checkpoint pick)


@dataclass
class RunScores:
    """A run opened once: the task on the training split's data, the bi-encoder, and the catalogue's embeddings."""

    run_dir: Path
    loaded: Any
    prepared: Any
    items: np.ndarray  # (I, H)
    dtype: torch.dtype | None
    index_seconds: float = 0.0  # embedding the catalogue (0 when the run's cached index was read back)

    @property
    def task(self) -> Any:
        return self.prepared.task

    def user_scores(self, examples: list[dict[str, Any]]) -> np.ndarray:
        """(N, I) cosine scores of each example's history text against every item."""
        feats = [self.task.encode({"history": ex["history"]}) for ex in examples]
        users = predict_features(self.loaded.model, self.task, feats, self.loaded.cfg.eval.batch_size, self.dtype)
        return np.asarray(users, dtype=np.float32) @ self.items.T

    def item_text(self, row: int) -> str:
        cat = self.task.catalogue
        return cat.text(cat.ids[row], self.task.opts.item_template)


def open_scores(run_dir: str | Path) -> RunScores:
    from tuneforge.apps.recommend.recommender import Recommender
    from tuneforge.run import open_run, prepare

    loaded = open_run(run_dir)
    prepared = prepare(loaded.cfg, encode=False)  # the same split, counts and times as in training
    prepared.task.model = loaded.model
    start = time.perf_counter()
    rec = Recommender.from_loaded(prepared.task, loaded.model, loaded.cfg, loaded.run_dir, loaded.weights)
    dtype = torch.bfloat16 if _precision(loaded.run_dir) == "bf16" else None
    return RunScores(Path(run_dir), loaded, prepared, rec.index.matrix, dtype,  # the run's cached item index
                     round(time.perf_counter() - start, 1))


def _precision(run_dir: Path) -> str:
    import json

    meta = run_dir / "meta.json"
    return json.loads(meta.read_text()).get("precision", "fp32") if meta.is_file() else "fp32"


def fit_cross_encoder(rs: RunScores) -> tuple[ce.CrossReranker, dict[str, Any]]:
    """Tune a cross-encoder from the run's base model through the shared loop and save it in the run."""
    from tuneforge.config_sections import EarlyStoppingConfig
    from tuneforge.models import load_backbone
    from tuneforge.training.loop import fit

    task, cfg = rs.task, rs.loaded.cfg
    o, index = task.opts, task.catalogue.index
    start = time.perf_counter()
    rng = np.random.default_rng(rs.loaded.cfg.seed)
    train = rs.prepared.splits["train"]
    n = len(train) if o.rerank_examples is None else min(o.rerank_examples, len(train))
    picked = [train[i] for i in sorted(rng.choice(len(train), size=n, replace=False).tolist())]
    val = rs.prepared.splits["validation"][:VALIDATION_GROUPS]
    pairs = ce.PairTask(rs.loaded.tokenizer, o.rerank_max_length)

    def features(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        groups = ce.training_groups(examples, rs.user_scores(examples), index, o.rerank_k, o.rerank_negatives, rng)
        return [pairs.encode_group(task.user_text(ex["history"]), [rs.item_text(r) for r in g])
                for ex, g in zip(examples, groups)]

    train_feats, val_feats = features(picked), features(val)
    mined = time.perf_counter() - start
    print(f"cross-encoder: {len(train_feats)} targets with {o.rerank_negatives} negatives each from the bi-encoder's "
          f"top {o.rerank_k} ({mined:.0f} s); tuning", flush=True)
    torch.manual_seed(cfg.seed)  # the score layer's initialisation
    model = ce.CrossEncoder(load_backbone(rs.loaded.resolved.path, cfg.train.dropout), task.pooling)
    train_cfg = dataclasses.replace(
        cfg.train, epochs=o.rerank_epochs, max_steps=None, batch_size=o.rerank_batch_size, batch_tokens=None,
        grad_accum=1, lr=o.rerank_lr, eval_every=0, save_every=0, keep_checkpoints=1, resume=False,
        active_vocab=False, ema_decay=None, trackers=[], progress=False, gradient_checkpointing=False,
        early_stopping=EarlyStoppingConfig(patience=None), precision="bf16" if rs.dtype else "fp32")
    work = rs.run_dir / "recommend" / ".cross_encoder_training"
    if work.exists():  # left by an interrupted fit: not resumed
        remove_dir(work)
    work.mkdir(parents=True)
    result = fit(model, pairs, train_feats, val_feats, [{}] * len(val_feats), train_cfg, cfg.seed, work,
                 eval_batch_size=max(1, cfg.eval.batch_size // max(1, o.rerank_negatives + 1)))
    remove_dir(work)  # the loop's checkpoints: the tuned model is saved below
    info = {"model": cfg.model, "precision": "bf16" if rs.dtype else "fp32", "rerank_k": o.rerank_k,
            "negatives": o.rerank_negatives, "targets": len(train_feats), "epochs": o.rerank_epochs,
            "validation_mrr": result.best_metric, "validation_groups": len(val_feats),
            "mining_seconds": round(mined, 1), "train_seconds": round(result.train_seconds, 1),
            "fit_seconds": round(time.perf_counter() - start, 1)}
    reranker = ce.CrossReranker(model.cpu(), rs.loaded.tokenizer, o.rerank_max_length, info)
    reranker.save(rs.run_dir / "recommend" / CROSS_FOLDER)
    return reranker, info


def cross_scores(rs: RunScores, reranker: ce.CrossReranker, examples: list[dict[str, Any]],
                 tops: list[list[int]]) -> list[np.ndarray]:
    """Each example's cross-encoder scores of its candidate rows ``tops[i]``, batched by length."""
    feats = [reranker.pairs.encode_group(rs.task.user_text(ex["history"]), [rs.item_text(r) for r in top])
             for ex, top in zip(examples, tops)]
    batch = max(1, rs.loaded.cfg.eval.batch_size // max(1, len(tops[0]) if tops else 1))
    return [np.asarray(s) for s in predict_features(reranker.model, reranker.pairs, feats, batch, reranker.dtype)]


def evaluate_rerankers(run_dir: str | Path, fit: bool = True, cross_hybrid: bool = True,
                       hybrid_top: int = 100) -> dict[str, Any]:
    """Bi-encoder alone vs + hybrid vs + cross-encoder (vs the hybrid over the cross-encoder's score) on the test
    users. ``fit``: tune the cross-encoder first (else load the saved one).

    Each learned ranker is fit on the validation users' candidates exactly as it re-orders the test users' (the
    bi-encoder's top ``hybrid_top``, or top rerank_k), from the users whose target is among them: a target appended
    from outside that list would teach "a low text score marks the positive"."""
    rs = open_scores(run_dir)
    task = rs.task
    o, index, k = task.opts, task.catalogue.index, task.opts.top_k
    genres = hy.genre_sets(task.catalogue)
    out: dict[str, Any] = {"rerank_k": o.rerank_k}
    reranker, out["cross_encoder_fit"] = fit_cross_encoder(rs) if fit else _load(rs)

    def context(ex: dict[str, Any], text: np.ndarray, split: str, n: int) -> tuple:
        seen = [index[i] for i in ex["seen"]]
        top = hy.candidates(text, seen, n)
        history = [index[i] for i in ex["history"][-o.history_length:]]
        x = hy.features(text, top, task.counts, task.last_seen, task.user_time[ex["user"]][split], history, genres)
        return top, x

    val = rs.prepared.splits["validation"]
    start = time.perf_counter()
    val_scores = rs.user_scores(val)
    ranker, out["hybrid_fit_users"] = hy.fit_on_listed_targets(
        [context(ex, s, "validation", hybrid_top) for ex, s in zip(val, val_scores)],
        [set(_targets(ex, index)) for ex in val], task.seed)
    hybrid_fit = time.perf_counter() - start

    test = rs.prepared.splits["test"]
    start = time.perf_counter()
    test_scores = rs.user_scores(test)
    text_s = time.perf_counter() - start
    rankings: dict[str, list[dict[str, Any]]] = {"text": task.rank(test_scores, test), "hybrid": []}
    start = time.perf_counter()
    for ex, s in zip(test, test_scores):
        top, x = context(ex, s, "test", hybrid_top)
        rankings["hybrid"].append(hy.rerank(s, top, ranker.decision_function(x), _targets(ex, index),
                                            [index[i] for i in ex["seen"]], k))
    hybrid_s = time.perf_counter() - start

    tops = [hy.candidates(s, [index[i] for i in ex["seen"]], o.rerank_k) for ex, s in zip(test, test_scores)]
    print(f"cross-encoder: scoring the top {o.rerank_k} of {len(test)} test users", flush=True)
    start = time.perf_counter()
    crossed = cross_scores(rs, reranker, test, tops)
    cross_s = time.perf_counter() - start
    rankings["cross_encoder"] = [hy.rerank(s, top, c, _targets(ex, index), [index[i] for i in ex["seen"]], k)
                                 for ex, s, top, c in zip(test, test_scores, tops, crossed)]
    timing = {"item_index_s": rs.index_seconds, "text_encode_ms_per_user": _ms(text_s, test), "hybrid_fit_s": round(hybrid_fit, 1),
              "hybrid_ms_per_user": _ms(hybrid_s, test), "cross_encoder_ms_per_user": _ms(cross_s, test),
              "cross_encoder_eval_s": round(cross_s, 1)}
    out["hybrid_ranker"] = {"features": list(hy.FEATURES), "reranks_top": hybrid_top,
                            "standardised_coefficients": [round(c, 4) for c in ranker[-1].coef_[0].tolist()]}
    out["timing"] = timing
    cold = [all(task.counts[index[t]] <= o.cold_start_max for t in ex["targets"]) for ex in test]

    def write() -> None:  # also before the last comparison: what is measured is kept if it is stopped
        for name, ranks in rankings.items():
            out[name] = ranking_metrics(ranks, len(task.catalogue), k, cold, o.bootstrap, task.seed)
            print(f"{name}: ndcg@{k} {out[name][f'ndcg@{k}']:.4f}", flush=True)
        atomic_write_json(rs.run_dir / "recommend" / "rerank.json", out)

    write()
    if cross_hybrid:
        print("hybrid over the cross-encoder: scoring the validation users' candidates", flush=True)
        rankings["hybrid_over_cross"], timing["hybrid_over_cross_fit_s"], out["hybrid_over_cross_fit_users"] = \
            _cross_hybrid(rs, reranker, context, val, val_scores, test, test_scores, tops, crossed)
        write()
    return out


def _cross_hybrid(rs: RunScores, reranker: ce.CrossReranker, context: Any, val: list, val_scores: np.ndarray,
                  test: list, test_scores: np.ndarray, tops: list[list[int]],
                  crossed: list[np.ndarray]) -> tuple[list[dict[str, Any]], float, int]:
    """The hybrid ranker with the cross-encoder's score as a fifth feature, fit on the validation users whose
    target is in their top rerank_k and re-ranking the test users' top rerank_k."""
    task, index, k = rs.task, rs.task.catalogue.index, rs.task.opts.top_k
    start = time.perf_counter()
    val_ctx = [context(ex, s, "validation", task.opts.rerank_k) for ex, s in zip(val, val_scores)]
    hit = [i for i, (top, _) in enumerate(val_ctx) if set(top) & set(_targets(val[i], index))]
    val_cross = cross_scores(rs, reranker, [val[i] for i in hit], [val_ctx[i][0] for i in hit])  # only those: cheaper
    ranker, n = hy.fit_on_listed_targets(
        [(val_ctx[i][0], np.column_stack([val_ctx[i][1], c])) for i, c in zip(hit, val_cross)],
        [set(_targets(val[i], index)) for i in hit], task.seed)
    fit_s = round(time.perf_counter() - start, 1)
    out = []
    for ex, s, top, c in zip(test, test_scores, tops, crossed):
        _, x = context(ex, s, "test", len(top))
        out.append(hy.rerank(s, top, ranker.decision_function(np.column_stack([x, c])), _targets(ex, index),
                             [index[i] for i in ex["seen"]], k))
    return out, fit_s, n


def _targets(ex: dict[str, Any], index: dict[str, int]) -> list[int]:
    return [index[t] for t in ex["targets"]]


def _ms(seconds: float, users: list) -> float:
    return round(1000 * seconds / max(1, len(users)), 2)


def _load(rs: RunScores) -> tuple[ce.CrossReranker, dict[str, Any]]:
    reranker = ce.CrossReranker.load(rs.run_dir / "recommend" / CROSS_FOLDER)
    return reranker, reranker.info
