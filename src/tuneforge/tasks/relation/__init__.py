"""Relation extraction: classify the relation between two marked entity spans in a sentence."""

from tuneforge.tasks.relation.task import RelationTask

__all__ = ["RelationTask"]
