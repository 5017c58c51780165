"""The SQL gallery of identities: models, repository, migrations and the GPU exemplar cache.

``Gallery.open(path_or_url, cfg)`` is the entry point; see ``repository.py``.
"""

from reid_pipeline.gallery.records import CropInfo, IdentitySummary, Interval, SourceStart
from reid_pipeline.gallery.repository import Gallery, UnitOfWork

__all__ = ["CropInfo", "Gallery", "IdentitySummary", "Interval", "SourceStart", "UnitOfWork"]
