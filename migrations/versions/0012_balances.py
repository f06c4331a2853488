"""Balance watch and reviews: the history of each app's balance reads, and indexes for
`/api/v1/reviews`

`app_balances` keeps every read of `GET /v1/accounts/app` the clock makes (one per app every
BALANCE_POLL_SECONDS), successful or not: the latest is the app's balance, the last day of them
its consumption. `review_results` gets the two indexes its keyset walks use (per app by id, and
by arrival time for `since`/`until` and the status page's last 7 days).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# As in app/store/models.py: BIGINT identity on PostgreSQL, a rowid alias on SQLite.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "app_balances",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("app_key", sa.String(64), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("app_balance", sa.BigInteger(), nullable=True),
        sa.Column("app_voice", sa.BigInteger(), nullable=True),
        sa.Column("app_industry", sa.BigInteger(), nullable=True),
        sa.Column("app_market", sa.BigInteger(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_balances")),
    )
    op.create_index("ix_app_balances_app_key_read_at", "app_balances", ["app_key", "read_at"])
    op.create_index("ix_review_results_app_key_id", "review_results", ["app_key", "id"])
    op.create_index("ix_review_results_ingested_at", "review_results", ["ingested_at"])


def downgrade() -> None:
    op.drop_index("ix_review_results_ingested_at", table_name="review_results")
    op.drop_index("ix_review_results_app_key_id", table_name="review_results")
    op.drop_index("ix_app_balances_app_key_read_at", table_name="app_balances")
    op.drop_table("app_balances")
