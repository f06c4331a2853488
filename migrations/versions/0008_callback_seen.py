"""An index for "when did each app's last callback of each kind arrive"

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # max(received_at) per app and type is then one index descent, not a scan of raw_events.
    op.create_index(
        "ix_raw_events_callback_seen",
        "raw_events",
        ["app_key", "type", "received_at"],
        postgresql_where=sa.text("source = 'callback'"),
        sqlite_where=sa.text("source = 'callback'"),
    )


def downgrade() -> None:
    op.drop_index("ix_raw_events_callback_seen", table_name="raw_events")
