"""Evaluation under the Market-1501 protocol: ranking metrics, re-ranking, the three matching
modes side by side, plots. ``evaluate_rank`` is a drop-in for torchreid's."""

from __future__ import annotations

from typing import Any

from reid_pipeline.evaluate.rank import RankResult, evaluate_rank, evaluate_rank_full

__all__ = ["RankResult", "evaluate_model", "evaluate_rank", "evaluate_rank_full", "re_ranking"]


def __getattr__(name: str) -> Any:
    # torch-dependent parts load on first use, so importing the metrics stays light
    if name == "evaluate_model":
        from reid_pipeline.evaluate.runner import evaluate_model

        return evaluate_model
    if name == "re_ranking":
        from reid_pipeline.evaluate.rerank import re_ranking

        return re_ranking
    raise AttributeError(f"module 'reid_pipeline.evaluate' has no attribute {name!r}")
