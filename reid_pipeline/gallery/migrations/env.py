"""Alembic environment, run programmatically by ``Gallery.open`` (no alembic.ini needed).

The caller passes an open connection in ``config.attributes["connection"]``; offline (SQL
script) mode is not used. ``render_as_batch`` lets later migrations alter SQLite tables.
"""

from __future__ import annotations

from alembic import context

from reid_pipeline.gallery.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable from the alembic CLI
    raise RuntimeError("run migrations through reid_pipeline.gallery.Gallery.open")

context.configure(
    connection=connection, target_metadata=Base.metadata, render_as_batch=True, compare_type=True
)
with context.begin_transaction():
    context.run_migrations()
