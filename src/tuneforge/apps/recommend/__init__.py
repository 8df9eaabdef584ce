"""Recommendation application: top-K items for a known user or a list of liked items, with the history items that
most influenced each, on a run of the recommendation task (CLI ``tuneforge recommend``, ``POST /v1/recommend``)."""

from tuneforge.apps.recommend.index import ItemIndex
from tuneforge.apps.recommend.recommender import Recommender

__all__ = ["ItemIndex", "Recommender"]
