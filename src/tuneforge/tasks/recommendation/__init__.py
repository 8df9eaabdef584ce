"""Text-based recommendation: a bi-encoder tuned on interaction logs, ranked over the whole item catalogue."""

from tuneforge.tasks.recommendation.task import RecommendationTask

__all__ = ["RecommendationTask"]
