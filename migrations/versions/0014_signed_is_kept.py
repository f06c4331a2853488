"""Signed is kept: suspect raw events, and the other payloads a signature carried

- `raw_events.suspect`: a correctly signed callback kept raw, its records not stored until an
  operator trusts them (`signature_reused`, `signature_time`); NULL for every other event.
- `signature_reuses`: each other payload (by digest) a remembered signature carried, so a retry
  of one is recognised and one signature keeps at most 16 distinct payloads.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("raw_events") as batch:
        batch.add_column(sa.Column("suspect", sa.String(length=32), nullable=True))
    op.create_table(
        "signature_reuses",
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signature_reuses")),
        sa.UniqueConstraint(
            "app_key",
            "nonce",
            "callback_timestamp",
            "digest",
            name=op.f("uq_signature_reuses_app_key_nonce_callback_timestamp_digest"),
        ),
    )
    op.create_index(
        "ix_signature_reuses_callback_timestamp", "signature_reuses", ["callback_timestamp"]
    )


def downgrade() -> None:
    op.drop_index("ix_signature_reuses_callback_timestamp", table_name="signature_reuses")
    op.drop_table("signature_reuses")
    with op.batch_alter_table("raw_events") as batch:
        batch.drop_column("suspect")
