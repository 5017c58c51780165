"""A device-resident copy of the gallery's exemplars (and of where identities were, when).

Why: matching scores every finished tracklet against every exemplar; reading the vectors
from SQL each time would dominate. The cache keeps them as one (capacity, D) tensor on the
GPU (or CPU) with the owner identity per row, loaded once per model version and then kept
in step with the database by the gallery itself: ``Gallery.attach(cache)`` makes every
committed unit of work push its exemplar changes here (never uncommitted ones).

Rows live in a growable slab with a free list, so replacing one identity's few exemplars
is O(k) device work, not a copy of the whole gallery. Free rows have owner id -1; scorers
mask them (``valid``). ``compact()`` squeezes holes out when they pile up.

The cache also mirrors the time intervals of assigned tracklets per camera (``Occupancy``),
which the matcher needs for the rule that one person cannot be in two places of one camera
at the same time.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import numpy as np

from reid_pipeline.gallery.records import Interval

if TYPE_CHECKING:
    import torch

    from reid_pipeline.gallery.repository import Changes, Gallery

log = logging.getLogger(__name__)


class Occupancy:
    """Assigned tracklets' (camera, start, end) per identity, for the one-place rule."""

    def __init__(self) -> None:
        self._by_tracklet: dict[int, Interval] = {}
        self._by_identity: dict[int, set[int]] = defaultdict(set)

    def add(self, iv: Interval) -> None:
        self.remove(iv.tracklet_id)
        self._by_tracklet[iv.tracklet_id] = iv
        self._by_identity[iv.identity_id].add(iv.tracklet_id)

    def remove(self, tracklet_id: int) -> None:
        iv = self._by_tracklet.pop(tracklet_id, None)
        if iv is not None:
            self._by_identity[iv.identity_id].discard(tracklet_id)

    def remove_identity(self, identity_id: int) -> None:
        for tid in list(self._by_identity.pop(identity_id, ())):
            self._by_tracklet.pop(tid, None)

    def conflicts(
        self, identity_id: int, camera: str, start: float, end: float, exclude: Collection[int] = ()
    ) -> bool:
        """True when ``identity_id`` was in ``camera`` at some time in [start, end]
        (tracklets in ``exclude`` - the query itself, ones being moved - do not count)."""
        for tid in self._by_identity.get(identity_id, ()):
            if tid in exclude:
                continue
            iv = self._by_tracklet[tid]
            if iv.camera == camera and iv.start <= end and start <= iv.end:
                return True
        return False

    def cameras(self, identity_id: int) -> set[str]:
        """The cameras ``identity_id``'s assigned tracklets were seen in."""
        return {self._by_tracklet[t].camera for t in self._by_identity.get(identity_id, ())}

    def __len__(self) -> int:
        return len(self._by_tracklet)


class ExemplarCache:
    """Exemplar vectors of one model version on one device, kept in sync with a gallery."""

    def __init__(
        self,
        gallery: Gallery | None,
        model_version: str,
        device: Any = "cpu",
        dtype: Any = None,
        capacity: int = 1024,
        attach: bool = True,
    ) -> None:
        """Create the cache; with a ``gallery``, load this model version's exemplars and the
        assignment intervals from it and (``attach``) follow its later commits."""
        import torch

        self.model_version = model_version
        self.device = torch.device(device)
        self.dtype = dtype or (torch.float16 if self.device.type == "cuda" else torch.float32)
        self._capacity = max(16, capacity)
        self._vecs: torch.Tensor | None = None  # (capacity, D), allocated on first vectors
        self._ids = torch.full((self._capacity,), -1, dtype=torch.long, device=self.device)
        self._high = 0  # rows [0, high) are in use or holes
        self._free: list[int] = []
        self._slots: dict[int, list[int]] = {}
        self.occupancy = Occupancy()
        if gallery is not None:
            self.reload(gallery)
            if attach:
                gallery.attach(self)

    def reload(self, gallery: Gallery) -> None:
        """(Re)read everything from the database: this model version's exemplars and all
        assignment intervals."""
        self._ids.fill_(-1)
        self._high, self._free, self._slots = 0, [], {}
        self.occupancy = Occupancy()
        ids, vecs = gallery.exemplars(self.model_version)
        if len(ids):
            order = np.argsort(ids, kind="stable")
            ids, vecs = ids[order], vecs[order]
            bounds = np.flatnonzero(np.diff(ids)) + 1
            for chunk_ids, chunk in zip(np.split(ids, bounds), np.split(vecs, bounds)):
                self.set_identity(int(chunk_ids[0]), chunk)
        for iv in gallery.intervals():
            self.occupancy.add(iv)
        log.info(
            "exemplar cache: %d vectors of %d identities (model %s) on %s",
            len(self),
            self.num_identities,
            self.model_version,
            self.device,
        )

    # ------------------------------------------------------------------ updates
    def on_commit(self, changes: Changes) -> None:
        """Apply what one committed unit of work changed (called by the gallery)."""
        for iid in changes.removed_identities:
            self.remove_identity(iid)
            self.occupancy.remove_identity(iid)
        for (iid, mv), vecs in changes.exemplars.items():
            if mv == self.model_version and iid not in changes.removed_identities:
                self.set_identity(iid, vecs)
        for tid in changes.intervals_removed:
            self.occupancy.remove(tid)
        for iv in changes.intervals_added:
            self.occupancy.add(iv)

    def set_identity(self, identity_id: int, vectors: Any) -> None:
        """Replace all exemplars of one identity with ``vectors`` (k, D)."""
        import torch

        v = torch.as_tensor(
            np.asarray(vectors, dtype=np.float32)
            if not isinstance(vectors, torch.Tensor)
            else vectors
        )
        v = v.reshape(-1, v.shape[-1]).to(self.device, self.dtype)
        if self._vecs is None:
            self._vecs = torch.zeros(
                self._capacity, v.shape[1], dtype=self.dtype, device=self.device
            )
        elif v.shape[1] != self._vecs.shape[1]:
            raise ValueError(
                f"exemplar cache ({self.model_version}) holds "
                f"{self._vecs.shape[1]}-d vectors, got {v.shape[1]}-d"
            )
        self.remove_identity(identity_id)
        slots = [self._take_slot() for _ in range(v.shape[0])]
        if slots:
            idx = torch.tensor(slots, dtype=torch.long, device=self.device)
            self._vecs[idx] = v
            self._ids[idx] = identity_id
            self._slots[identity_id] = slots

    def remove_identity(self, identity_id: int) -> None:
        slots = self._slots.pop(identity_id, None)
        if not slots:
            return
        import torch

        self._ids[torch.tensor(slots, dtype=torch.long, device=self.device)] = -1
        self._free.extend(slots)
        if len(self._free) > 64 and len(self._free) > self._high // 2:
            self.compact()

    def _take_slot(self) -> int:
        if self._free:
            return self._free.pop()
        if self._high == self._capacity:
            self._grow()
        self._high += 1
        return self._high - 1

    def _grow(self) -> None:
        import torch

        new_cap = self._capacity * 2
        ids = torch.full((new_cap,), -1, dtype=torch.long, device=self.device)
        ids[: self._capacity] = self._ids
        self._ids = ids
        if self._vecs is not None:
            vecs = torch.zeros(new_cap, self._vecs.shape[1], dtype=self.dtype, device=self.device)
            vecs[: self._capacity] = self._vecs
            self._vecs = vecs
        self._capacity = new_cap

    def compact(self) -> None:
        """Move live rows to the front so the scored prefix has no holes."""
        if self._vecs is None:
            return
        import torch

        live = torch.nonzero(self._ids[: self._high] >= 0).flatten()
        n = int(live.numel())
        self._vecs[:n] = self._vecs[live].clone()
        self._ids[:n] = self._ids[live].clone()
        self._ids[n:] = -1
        self._high, self._free = n, []
        self._slots = {}
        for row, iid in enumerate(self._ids[:n].tolist()):
            self._slots.setdefault(int(iid), []).append(row)

    # ------------------------------------------------------------------ reading
    @property
    def vectors(self) -> torch.Tensor:
        """(M, D) rows to score; rows whose ``identity_ids`` is -1 are holes."""
        import torch

        if self._vecs is None:
            return torch.zeros(0, 0, dtype=self.dtype, device=self.device)
        return self._vecs[: self._high]

    @property
    def identity_ids(self) -> torch.Tensor:
        """(M,) owner identity of each row of ``vectors`` (-1: free row)."""
        return self._ids[: self._high]

    @property
    def dim(self) -> int | None:
        return None if self._vecs is None else int(self._vecs.shape[1])

    @property
    def num_identities(self) -> int:
        return len(self._slots)

    def identities(self) -> list[int]:
        return sorted(self._slots)

    def get(self, identity_id: int) -> torch.Tensor:
        """The exemplars of one identity (k, D)."""
        import torch

        slots = self._slots.get(identity_id, [])
        if not slots or self._vecs is None:
            return torch.zeros(0, self.dim or 0, dtype=self.dtype, device=self.device)
        return self._vecs[torch.tensor(slots, dtype=torch.long, device=self.device)]

    def snapshot(self) -> dict[int, np.ndarray]:
        """identity -> float32 vectors on the CPU (tests compare this with the database)."""
        return {iid: self.get(iid).float().cpu().numpy() for iid in self._slots}

    def __len__(self) -> int:
        return sum(len(s) for s in self._slots.values())
