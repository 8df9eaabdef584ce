"""Hyper-parameter search over run configs (``tuneforge search``): space parsing, the Optuna study, the summary."""

from tuneforge.search.space import Param, parse_space

__all__ = ["Param", "parse_space", "run_search"]


def run_search(*args, **kwargs):  # lazy: optuna is an optional extra
    from tuneforge.search.study import run_search as _run

    return _run(*args, **kwargs)
