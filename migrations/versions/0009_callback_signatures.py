"""Replay memory for callback signatures

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "callback_signatures",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("app_key", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("callback_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_signatures")),
        sa.UniqueConstraint(
            "app_key",
            "nonce",
            "callback_timestamp",
            name=op.f("uq_callback_signatures_app_key_nonce_callback_timestamp"),
        ),
    )
    op.create_index(
        "ix_callback_signatures_callback_timestamp", "callback_signatures", ["callback_timestamp"]
    )


def downgrade() -> None:
    op.drop_index("ix_callback_signatures_callback_timestamp", table_name="callback_signatures")
    op.drop_table("callback_signatures")
