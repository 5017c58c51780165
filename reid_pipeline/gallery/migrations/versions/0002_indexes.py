"""Indexes for retention and per-identity edits: tracklets by storage time (purge by age),
exemplars by identity (merge/split/delete and ON DELETE CASCADE without a table scan).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 17:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tracklets", schema=None) as batch_op:
        batch_op.create_index("ix_tracklets_created", ["created_at"], unique=False)
    with op.batch_alter_table("exemplars", schema=None) as batch_op:
        batch_op.create_index("ix_exemplars_identity", ["identity_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("exemplars", schema=None) as batch_op:
        batch_op.drop_index("ix_exemplars_identity")
    with op.batch_alter_table("tracklets", schema=None) as batch_op:
        batch_op.drop_index("ix_tracklets_created")
