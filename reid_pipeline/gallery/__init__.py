"""The SQL gallery of identities: models, repository, migrations and the GPU exemplar cache.

How the rest of the project uses it::

    with Gallery.open(path_or_url, cfg.gallery, crops_dir) as g:      # migrates to head
        start = g.begin_source("lobby", fingerprint, uri)            # .source_id, .resume_from_frame,
                                                                      # .done, .next_track_id
        cache = ExemplarCache(g, model.model_version, device)        # follows g's commits
        matcher = IdentityMatcher(model.pair_probability, cache, cfg.match)
        with g.batch() as uow:                                        # one transaction
            tid = uow.record_tracklet(start.source_id, tracklet)      # idempotent, saves crops
            matcher.commit(uow, [MatchQuery.from_tracklet(tracklet, embeddings, tid)])
            uow.set_progress(start.source_id, safe_frame)             # resume point
        g.identities(); g.sightings(); g.crops(identity_id=...); g.exemplars(version)
        g.identity_ids(flagged=True); g.identity_names(ids); g.camera_presence(ids)
        g.tracklet_spans(); g.export_sightings(out, "csv" | "jsonl", identity_id=None)

Every SQL statement of the project is in this package: the report, the search, the live
stream and the benchmarks read through ``Gallery``'s read methods (plain records from
``records.py``); merge, split, delete, purge and exemplar reselection are ``UnitOfWork``
operations (``manage.GalleryManager`` runs each in one transaction). The one sightings
export format is ``export.py``.

Errors are ``reid_pipeline.errors.DatabaseError`` naming the (redacted) database.
"""

from reid_pipeline.gallery.cache import ExemplarCache
from reid_pipeline.gallery.records import (
    CameraPresence,
    CropInfo,
    IdentitySummary,
    Interval,
    Result,
    SourceStart,
    TrackletSpan,
)
from reid_pipeline.gallery.repository import Gallery, UnitOfWork

__all__ = [
    "CameraPresence",
    "CropInfo",
    "ExemplarCache",
    "Gallery",
    "IdentitySummary",
    "Interval",
    "Result",
    "SourceStart",
    "TrackletSpan",
    "UnitOfWork",
]
