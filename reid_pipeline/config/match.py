"""Identity decisions (``match``): threshold, exemplars, re-linking, footage calibration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reid_pipeline.config.base import check


@dataclass(frozen=True)
class MatchConfig:
    # calibrated probability above which a tracklet joins an identity. The calibration is
    # balanced (p = 0.5: as likely a match as not for ONE pair); a tracklet is scored against
    # every identity, so 0.5 merges strangers (Market dev: 75 people -> 14 identities).
    # With the bundled default and the relative gate, 0.9 gives the best B-cubed F on the
    # Market dev test identities (0.784 vs 0.767 at 0.8; 24 identities holding two people
    # or more vs 31); PETS09 and the demo are unchanged (reid_pipeline/bench/market_assign.py,
    # docs/benchmarks.md, issue 12 session 6)
    threshold: float = 0.9
    exemplars: int = 5  # diverse embeddings kept per identity
    use_triton: bool = True  # Triton scoring kernel on CUDA; torch reference otherwise
    # tracklet->identity probability: mean over the tracklet's crops of each crop's best
    # exemplar probability ("crop_best_mean"), mean over all crop x exemplar pairs
    # ("pair_mean": less optimistic, fewer wrong merges in large galleries), or the best
    # exemplar probability of the tracklet's mean embedding ("mean_embedding", cheapest)
    tracklet_score: Literal["crop_best_mean", "pair_mean", "mean_embedding"] = "pair_mean"
    max_pairs: int = 64_000_000  # crop x exemplar scores per score_fn call (memory bound)
    # large galleries: rank identities by the tracklet's mean embedding first, score crops
    # only against the best this many (0: always score every identity crop by crop)
    prefilter: int = 256
    # relative gate: a tracklet joins an identity only if their crops are at most this many
    # times farther apart (the classifier's distance w.|q - g|) than the crops of each are
    # from one another, the footage's own scale of "one person". PETS09 1-400: genuine
    # track pairs 1.01-1.15, the indoor clip's six strangers 1.71-3.93 (docs/benchmarks.md,
    # issue 12). 0 turns it off
    relative_max: float = 1.5
    # re-linking: a tracklet that starts within relink_s seconds after another one of the same
    # camera ended, where that one's feet were (within relink_dist box heights, plus
    # relink_speed heights per second of gap), and whose crops agree with it at probability
    # >= relink_threshold, continues it: same identity. A tracker loses people behind
    # others; appearance alone then has to re-find them against every identity at the full
    # threshold. 0 turns it off
    relink_s: float = 2.0
    relink_dist: float = 0.5
    relink_speed: float = 1.0
    relink_threshold: float = 0.5  # PETS09 1-400: 0.5 gave IDF1 60.2 by identity, 0.3 59.3
    # footage calibration: the threshold rises to this quantile of the probabilities of
    # tracklet pairs the run itself proves to be two people (one camera, the same time), once
    # footage_min_pairs are known, at most to footage_max; the last footage_pairs count.
    # 0 turns it off (match.threshold alone). Off by default: on PETS09 1-400 it raised the
    # threshold to 0.94 and cost 4 IDF1 points by identity (56.2 vs 60.2) for one fewer
    # identity holding two people (docs/benchmarks.md, issue 12); 0.95 is the value measured
    footage_quantile: float = 0.0
    footage_min_pairs: int = 20
    footage_max: float = 0.97
    footage_pairs: int = 2000

    def validate(self, p: str) -> None:
        check(
            0.0 <= self.footage_quantile <= 1.0,
            f"{p}.footage_quantile",
            f"must be in [0, 1] (0: off), got {self.footage_quantile}",
        )
        check(
            self.footage_min_pairs >= 1,
            f"{p}.footage_min_pairs",
            f"must be >= 1, got {self.footage_min_pairs}",
        )
        check(
            0.0 < self.footage_max < 1.0,
            f"{p}.footage_max",
            f"is a probability, must be in (0, 1), got {self.footage_max}",
        )
        check(
            self.footage_pairs >= 1, f"{p}.footage_pairs", f"must be >= 1, got {self.footage_pairs}"
        )
        check(
            self.relative_max == 0 or self.relative_max >= 1.0,
            f"{p}.relative_max",
            f"must be 0 (off) or >= 1 (a ratio of distances), got {self.relative_max}",
        )
        check(self.relink_s >= 0, f"{p}.relink_s", f"must be >= 0 (0: off), got {self.relink_s}")
        check(self.relink_dist >= 0, f"{p}.relink_dist", f"must be >= 0, got {self.relink_dist}")
        check(self.relink_speed >= 0, f"{p}.relink_speed", f"must be >= 0, got {self.relink_speed}")
        check(
            0.0 <= self.relink_threshold < 1.0,
            f"{p}.relink_threshold",
            f"is a probability, must be in [0, 1), got {self.relink_threshold}",
        )
        check(
            0.0 < self.threshold < 1.0,
            f"{p}.threshold",
            f"is a probability, must be in (0, 1), got {self.threshold}",
        )
        check(self.exemplars >= 1, f"{p}.exemplars", "must be >= 1")
        check(self.max_pairs >= 1, f"{p}.max_pairs", f"must be >= 1, got {self.max_pairs}")
        check(self.prefilter >= 0, f"{p}.prefilter", f"must be >= 0, got {self.prefilter}")
