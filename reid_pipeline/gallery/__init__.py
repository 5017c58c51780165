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

Errors are ``reid_pipeline.errors.DatabaseError`` naming the (redacted) database.
"""

from reid_pipeline.gallery.cache import ExemplarCache
from reid_pipeline.gallery.records import CropInfo, IdentitySummary, Interval, SourceStart
from reid_pipeline.gallery.repository import Gallery, UnitOfWork

__all__ = ["CropInfo", "ExemplarCache", "Gallery", "IdentitySummary", "Interval", "SourceStart",
           "UnitOfWork"]
