"""P x K identity sampler: every batch holds P identities with K images each.

Batch-hard triplet and the pair hinge need positives in the batch; random batches of
Market-1501 would hold almost none. Each epoch is reseeded from (seed, epoch), so a run
resumed at an epoch boundary draws exactly the batches the uninterrupted run would have.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np

from reid_pipeline.errors import InputError


class PKSampler:
    """Yields index arrays of length P*K (torchreid's RandomIdentitySampler, deterministic)."""

    def __init__(self, labels: Sequence[int], p: int, k: int, seed: int = 0) -> None:
        self.p, self.k, self.seed = int(p), int(k), int(seed)
        groups: dict[int, list[int]] = defaultdict(list)
        for i, lab in enumerate(labels):
            groups[int(lab)].append(i)
        self.groups = {lab: np.asarray(ix) for lab, ix in sorted(groups.items())}
        if len(self.groups) < self.p:
            raise InputError(
                f"the train split has {len(self.groups)} identities, fewer than "
                f"train.p={self.p} identities per batch"
            )

    def batches(self, epoch: int) -> list[np.ndarray]:
        """All batches of one epoch: each identity contributes ceil(n/K) chunks of K images
        (an identity with fewer than K images is sampled with replacement)."""
        rng = np.random.default_rng([self.seed, epoch])
        chunks: dict[int, list[np.ndarray]] = {}
        for lab, ix in self.groups.items():
            ix = rng.permutation(ix) if len(ix) >= self.k else rng.choice(ix, self.k, replace=True)
            n = len(ix) // self.k
            chunks[lab] = [ix[j * self.k : (j + 1) * self.k] for j in range(n)]
        out: list[np.ndarray] = []
        avail = [lab for lab in chunks if chunks[lab]]
        while len(avail) >= self.p:
            pick = rng.choice(len(avail), self.p, replace=False)
            labs = [avail[i] for i in pick]
            out.append(np.concatenate([chunks[lab].pop() for lab in labs]))
            avail = [lab for lab in avail if chunks[lab]]
        return out

    def __len__(self) -> int:
        return len(self.batches(0))

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.batches(0))
