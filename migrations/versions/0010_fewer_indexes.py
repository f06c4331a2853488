"""Fewer index entries per receipt: drop the status index no query needs, and index only the
quarantined raw events

Every insert into delivery_reports and raw_events (and every report upsert that changes a
status) writes an entry into each index on the table. An audit of the service's queries against
1 M reports and 1 M raw events (bench/README.md, "Which index serves which query") found:
- `ix_delivery_reports_status_received_at` served only a status filter with a time range and no
  app (0.5 ms; 4.5 ms through `ix_delivery_reports_received_at` without it); dropped.
- `ix_raw_events_quarantined` held an entry for every raw event, to find the 1 in thousands
  that is quarantined (`quarantined > 0`: status page, metrics, reprocess). It is now a partial
  index on `id` over the quarantined ones only: a normal callback writes no entry, and the
  status page's newest-first list reads it in order.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

QUARANTINED = sa.text("quarantined > 0")


def upgrade() -> None:
    op.drop_index("ix_delivery_reports_status_received_at", table_name="delivery_reports")
    op.drop_index("ix_raw_events_quarantined", table_name="raw_events")
    op.create_index(
        "ix_raw_events_quarantined",
        "raw_events",
        ["id"],
        postgresql_where=QUARANTINED,
        sqlite_where=QUARANTINED,
    )


def downgrade() -> None:
    op.drop_index("ix_raw_events_quarantined", table_name="raw_events")
    op.create_index("ix_raw_events_quarantined", "raw_events", ["quarantined"])
    op.create_index(
        "ix_delivery_reports_status_received_at", "delivery_reports", ["status", "received_at"]
    )
