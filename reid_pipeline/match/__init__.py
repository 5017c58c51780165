"""Pairwise scoring with the dichotomy classifier and tracklet-to-identity assignment."""

from reid_pipeline.match.scoring import dichotomy_scores

__all__ = ["dichotomy_scores"]
