"""Run a hyper-parameter search: an Optuna study in SQLite whose trials are ordinary training runs."""

from __future__ import annotations

import copy
import gc
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuneforge.config import ConfigError, config_from_dict, load_config, resolve_data_paths
from tuneforge.config_sections import RunConfig
from tuneforge.search.space import Param, default_point, parse_space, set_key, suggest

PRUNERS = ("median", "successive_halving", "none")
FINISHED = ("COMPLETE", "PRUNED")


@dataclass
class SearchSpec:
    """A search read from a run config: the base config, its raw mapping, the parsed space and where it goes."""

    config_path: Path
    raw: dict[str, Any]
    cfg: RunConfig
    params: list[Param]
    folder: Path

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{(self.folder / 'study.db').resolve()}"


def load_search(config_path: str | Path, out: str | Path | None = None) -> SearchSpec:
    """Read and check a config's ``search:`` section; errors name the file and the key."""
    path = Path(config_path)
    cfg = load_config(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    s = cfg.search
    try:
        params = parse_space(s.space)
        if s.pruner not in PRUNERS:
            raise ConfigError(f"search.pruner: {s.pruner!r} is not one of {', '.join(PRUNERS)}")
        if s.trials is None and s.timeout is None:
            raise ConfigError("search: set search.trials, search.timeout or both, or the search never ends")
        if s.trials is not None and s.trials < 1:
            raise ConfigError(f"search.trials: {s.trials} must be >= 1 (or null)")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    folder = Path(out or s.output_dir or f"{cfg.output_dir.rstrip('/')}-search")
    return SearchSpec(path, raw, cfg, params, folder)


def trial_config(spec: SearchSpec, values: dict[str, Any], output_dir: Path) -> RunConfig:
    """The base config with ``values`` set: what one trial trains, and what the best config file holds."""
    raw = copy.deepcopy(spec.raw)
    for key, value in values.items():
        set_key(raw, key, value)
    raw["output_dir"] = str(output_dir)
    raw.pop("search", None)
    cfg = config_from_dict(raw, source=str(spec.config_path))
    resolve_data_paths(cfg, spec.config_path.parent)
    return cfg


def objective_metric(spec: SearchSpec) -> tuple[str, str]:
    """(metric, direction): search.metric, or the task's main metric after it has seen the training split."""
    from tuneforge.run import prepare

    task = prepare(spec.cfg, encode=False).task
    if spec.cfg.search.metric == "auto":
        return task.main_metric, "maximize" if task.metric_mode == "max" else "minimize"
    metric = spec.cfg.search.metric
    es = spec.cfg.train.early_stopping
    same = es.metric == metric
    mode = es.mode if same else ("minimize" if "loss" in metric else "maximize")
    return metric, {"max": "maximize", "min": "minimize"}.get(mode, mode)


def open_study(spec: SearchSpec, direction: str, metric: str, stale_after: float) -> Any:
    """Create the study, or load it from ``study.db`` to resume; a trial whose process died is retried."""
    import optuna
    from optuna.storages import RDBStorage, RetryFailedTrialCallback

    spec.folder.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: stable in use
    # heartbeats let a restarted search tell a dead worker's trial (fail it and retry its values) from a live one
    storage = RDBStorage(spec.storage_url, heartbeat_interval=max(1, int(stale_after // 3)),
                         grace_period=int(stale_after), failed_trial_callback=RetryFailedTrialCallback(max_retry=1))
    s = spec.cfg.search
    pruner = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
              "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(),
              "none": lambda: optuna.pruners.NopPruner()}[s.pruner]()
    existing = _count(storage, spec)
    # a fresh seed per call: a resumed study must not replay the first call's random start-up draws
    sampler = optuna.samplers.TPESampler(seed=spec.cfg.seed + existing, n_startup_trials=5)
    study = optuna.create_study(study_name="search", storage=storage, sampler=sampler, pruner=pruner,
                                direction=direction, load_if_exists=True)
    before = study.user_attrs.get("metric")
    if before is not None and before != metric:
        raise ConfigError(f"{spec.folder}: this study optimised {before!r}, the config now asks for {metric!r}; "
                          "use another search.output_dir")
    if existing == 0 and not study.trials:
        study.set_user_attr("metric", metric)
        study.set_user_attr("config", str(spec.config_path))
        if s.include_default:
            point = default_point(spec.params, spec.cfg)
            if point:
                study.enqueue_trial(point, user_attrs={"default": True})
    return study


def _count(storage: Any, spec: SearchSpec) -> int:
    try:
        study_id = storage.get_study_id_from_name("search")
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


def finished_trials(study: Any) -> int:
    return sum(t.state.name in FINISHED for t in study.trials)


def make_objective(spec: SearchSpec, metric: str, log: Any = print):
    """One trial: sample values, train a normal run under trials/, report each validation to the pruner."""
    import optuna

    from tuneforge.runner import train

    def objective(trial: Any) -> float:
        values = suggest(trial, spec.params)
        run_dir = spec.folder / "trials" / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        cfg = trial_config(spec, values, run_dir)
        cfg.train.overwrite = True  # a retried trial number never reuses a folder, but a stale one may exist
        cfg.train.progress = False
        log(f"trial {trial.number}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in values.items()))

        def on_evaluate(step: int, scores: dict[str, Any]) -> None:
            value = scores.get(metric)
            if value is None:
                raise ConfigError(f"search.metric: validation has no {metric!r}; it has {', '.join(scores)}")
            trial.report(float(value), step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{metric}={value:.4f} at step {step}")

        try:
            result = train(cfg, on_evaluate=on_evaluate)
        finally:
            gc.collect()  # one model at a time: free the last trial's weights before the next builds its own
        value = result.report["metrics"]["validation"].get(metric)
        if value is None:
            raise ConfigError(f"search.metric: the run's validation scores have no {metric!r}")
        log(f"trial {trial.number}: validation {metric} = {value:.4f}")
        return float(value)

    return objective


def run_search(config_path: str | Path, trials: int | None = None, timeout: float | None = None,
               out: str | Path | None = None, stale_after: float = 60.0, log: Any = print) -> dict[str, Any]:
    """Run (or resume) the search a config's ``search:`` section describes; returns the summary.

    >>> # summary = run_search("configs/search/financial_phrasebank.yaml", trials=10)
    """
    import optuna

    from tuneforge.search.summary import write_summary
    from tuneforge.training.loop import NonFiniteLossError

    spec = load_search(config_path, out)
    target = trials if trials is not None else spec.cfg.search.trials
    timeout = timeout if timeout is not None else spec.cfg.search.timeout
    metric, direction = objective_metric(spec)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(spec, direction, metric, stale_after)
    done = finished_trials(study)
    left = None if target is None else max(0, target - done)
    log(f"search: {metric} ({direction}) on validation; {done} trials finished before, "
        f"{'until the timeout' if left is None else f'{left} to go'}; study {spec.folder / 'study.db'}")
    if left != 0:
        callbacks = [optuna.study.MaxTrialsCallback(target, states=(optuna.trial.TrialState.COMPLETE,
                                                                    optuna.trial.TrialState.PRUNED))] \
            if target is not None else []
        study.optimize(make_objective(spec, metric, log), n_trials=left, timeout=timeout, callbacks=callbacks,
                       catch=(NonFiniteLossError, ConfigError))
    return write_summary(spec, study, metric, direction)


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
