"""``tuneforge study``: methods × label budgets × seeds on one frozen test split, with statistics and costs."""

from tuneforge.study.grid import run_study

__all__ = ["run_study"]
