"""BI views count days in the business time zone; the UTC-day views stay as `*_utc`

`business_timezone` holds the zone (BUSINESS_TIMEZONE) and its UTC offsets; `jsms migrate`
rewrites it from the setting on every release, after the migrations. This migration seeds it
with UTC, so a database migrated by bare `alembic upgrade` keeps UTC days until then.

`daily_delivery_rate`, `failures_by_status` and `daily_replies` get their `day` in that zone and
a last column `timezone` naming it. PostgreSQL converts with its tz database (`AT TIME ZONE`);
SQLite has none, so its views add the offset in force at each row's time, read from the table
(exact across DST changes, for as long as the table's offsets are current). The former UTC-day
views stay, unchanged, as `daily_delivery_rate_utc`, `failures_by_status_utc`, `daily_replies_utc`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Frozen copy of app/jsms/codes.py at the time of writing (as in 0002).
STATUS_TEXT = {
    4001: "delivered",
    4002: "number is on the carrier's blacklist",
    4003: "handset problem: off or suspended",
    4004: "number does not exist",
    4005: "not enough SMS balance",
    4006: "carrier frequency limit hit",
    4007: "voice code: call not answered or refused",
    4008: "voice code: callee busy",
    4009: "voice code: unreachable",
    4010: "blocked by the carrier for sensitive words",
    4100: "other error",
}
VIEWS = ("daily_delivery_rate", "failures_by_status", "daily_replies")
# One row whatever the table holds (max() of nothing is NULL): a view never goes empty.
ZONE = "(SELECT max(timezone) AS timezone FROM business_timezone) AS bt"


def _utc_day(dialect: str, column: str) -> str:
    """The UTC calendar day of a stored time (as 0002 wrote it)."""
    if dialect == "postgresql":
        return f"(({column} AT TIME ZONE 'UTC')::date)"
    return f"date({column})"  # SQLite stores naive UTC text


def _business_day(dialect: str, column: str) -> str:
    """The calendar day of a stored time in the business zone."""
    if dialect == "postgresql":
        return f"(({column} AT TIME ZONE bt.timezone)::date)"
    offset = (
        "(SELECT o.utc_offset_seconds || ' seconds' FROM business_timezone AS o"
        f" WHERE o.starts_at <= {column} ORDER BY o.starts_at DESC LIMIT 1)"
    )
    return f"date({column}, {offset})"


def _views(report_day: str, reply_day: str, zone: bool) -> dict[str, str]:
    """The three views' SELECTs; with `zone`, joined to the zone and naming it last."""
    status_text = " ".join(
        f"WHEN {code} THEN '{text.replace(chr(39), chr(39) * 2)}'"
        for code, text in STATUS_TEXT.items()
    )
    join = f" CROSS JOIN {ZONE}" if zone else ""
    named, grouped = (", bt.timezone AS timezone", ", bt.timezone") if zone else ("", "")
    return {
        "daily_delivery_rate": f"""
            SELECT r.app_key,
                   {report_day} AS day,
                   count(*) AS total,
                   sum(CASE WHEN r.delivered THEN 1 ELSE 0 END) AS delivered,
                   sum(CASE WHEN r.delivered THEN 0 ELSE 1 END) AS failed,
                   round(avg(CASE WHEN r.delivered THEN 1.0 ELSE 0.0 END), 4) AS delivery_rate
                   {named}
            FROM delivery_reports AS r{join}
            GROUP BY r.app_key, {report_day}{grouped}
        """,
        "failures_by_status": f"""
            SELECT r.app_key,
                   {report_day} AS day,
                   r.status,
                   CASE r.status {status_text} ELSE 'unknown status' END AS status_text,
                   count(*) AS failures
                   {named}
            FROM delivery_reports AS r{join}
            WHERE NOT r.delivered
            GROUP BY r.app_key, {report_day}, r.status{grouped}
        """,
        "daily_replies": f"""
            SELECT p.app_key,
                   {reply_day} AS day,
                   count(*) AS replies,
                   count(DISTINCT p.phone) AS phones
                   {named}
            FROM replies AS p{join}
            GROUP BY p.app_key, {reply_day}{grouped}
        """,
    }


def _create(views: dict[str, str], suffix: str = "") -> None:
    for name, sql in views.items():
        op.execute(f"CREATE VIEW {name}{suffix} AS {sql.strip()}")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    table = op.create_table(
        "business_timezone",
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("utc_offset_seconds", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("starts_at", name="pk_business_timezone"),
    )
    epoch = datetime(1970, 1, 1)  # naive: SQLite's stored form; PostgreSQL sessions are UTC
    op.bulk_insert(table, [{"starts_at": epoch, "timezone": "UTC", "utc_offset_seconds": 0}])
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
    utc = _views(_utc_day(dialect, "r.received_at"), _utc_day(dialect, "p.replied_at"), False)
    _create(utc, "_utc")
    local = _business_day(dialect, "r.received_at"), _business_day(dialect, "p.replied_at")
    _create(_views(*local, True))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
        op.execute(f"DROP VIEW {name}_utc")
    _create(_views(_utc_day(dialect, "r.received_at"), _utc_day(dialect, "p.replied_at"), False))
    op.drop_table("business_timezone")
