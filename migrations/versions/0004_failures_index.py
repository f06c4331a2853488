"""A partial index on undelivered reports (covering on PostgreSQL)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copy of app/models.py's FAILURE_INCLUDE at the time of writing.
INCLUDE = ["id", "msg_id", "phone", "status", "delivered", "source", "ingested_at"]


def upgrade() -> None:
    op.create_index(
        "ix_delivery_reports_failures",
        "delivery_reports",
        ["app_key", "received_at"],
        postgresql_include=INCLUDE,
        postgresql_where=sa.text("NOT delivered"),
        sqlite_where=sa.text("NOT delivered"),
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_reports_failures", table_name="delivery_reports")
