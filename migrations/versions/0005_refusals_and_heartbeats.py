"""refused callbacks and clock heartbeats

What the receipts-at-risk countdown and the "clock silent" alert read: callbacks refused in a way
JSMS retries, counted per app, kind, reason and hour; and each clock's last heartbeat.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refused_callbacks",
        sa.Column("app_key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refusals", sa.BigInteger(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "app_key", "kind", "reason", "hour", name=op.f("pk_refused_callbacks")
        ),
    )
    op.create_table(
        "clock_heartbeats",
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("holder", name=op.f("pk_clock_heartbeats")),
    )


def downgrade() -> None:
    op.drop_table("clock_heartbeats")
    op.drop_table("refused_callbacks")
