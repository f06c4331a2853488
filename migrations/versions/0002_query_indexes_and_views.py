"""query indexes and BI views

Indexes for the query API's filters and keyset walks (ordered by id), and three views for
analysts whose BI tool reads the database directly. Days in the views are UTC days.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copy of app/jsms/codes.py at the time of writing: a migration must not change meaning
# when application code does.
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

# (name, table, columns, PostgreSQL INCLUDE columns)
NEW_INDEXES = [
    # App + time range walks and per-app stats; INCLUDE status makes daily stats index-only.
    (
        "ix_delivery_reports_app_key_received_at_id",
        "delivery_reports",
        ["app_key", "received_at", "id"],
        ["status"],
    ),
    ("ix_delivery_reports_app_key_id", "delivery_reports", ["app_key", "id"], []),
    ("ix_delivery_reports_msg_id", "delivery_reports", ["msg_id"], []),
    ("ix_delivery_reports_phone_id", "delivery_reports", ["phone", "id"], []),
    ("ix_delivery_reports_status_received_at", "delivery_reports", ["status", "received_at"], []),
    ("ix_replies_app_key_replied_at_id", "replies", ["app_key", "replied_at", "id"], []),
    ("ix_replies_app_key_id", "replies", ["app_key", "id"], []),
    ("ix_replies_phone_id", "replies", ["phone", "id"], []),
]
# 0001's indexes that the wider ones above make redundant (same leading columns).
REPLACED_INDEXES = [
    ("ix_delivery_reports_app_key_received_at", "delivery_reports", ["app_key", "received_at"]),
    ("ix_replies_app_key_replied_at", "replies", ["app_key", "replied_at"]),
]

VIEWS = ("daily_delivery_rate", "failures_by_status", "daily_replies")

# PostgreSQL only: the id below which no insert into `table` is still in flight. SHARE conflicts
# with the ROW EXCLUSIVE lock every writer holds until it commits, so taking it waits in-flight
# writers out; max(id) is then read with a fresh snapshot (a VOLATILE function's statement).
# The caller commits at once, releasing the lock; writers queue for at most that long.
COMMITTED_HORIZON = """
CREATE FUNCTION committed_horizon(target regclass) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET lock_timeout = '5s'
AS $$
DECLARE
    horizon bigint;
BEGIN
    EXECUTE format('LOCK TABLE %s IN SHARE MODE', target);
    EXECUTE format('SELECT max(id) FROM %s', target) INTO horizon;
    RETURN coalesce(horizon, 0);
END
$$
"""


def _utc_day(dialect: str, column: str) -> str:
    """The UTC calendar day of a stored time (a date on PostgreSQL, 'YYYY-MM-DD' on SQLite)."""
    if dialect == "postgresql":
        return f"(({column} AT TIME ZONE 'UTC')::date)"
    return f"date({column})"  # SQLite stores naive UTC text


def _view_sql(dialect: str) -> dict[str, str]:
    report_day = _utc_day(dialect, "received_at")
    reply_day = _utc_day(dialect, "replied_at")
    status_text = " ".join(
        f"WHEN {code} THEN '{text.replace(chr(39), chr(39) * 2)}'"
        for code, text in STATUS_TEXT.items()
    )
    return {
        "daily_delivery_rate": f"""
            SELECT app_key,
                   {report_day} AS day,
                   count(*) AS total,
                   sum(CASE WHEN delivered THEN 1 ELSE 0 END) AS delivered,
                   sum(CASE WHEN delivered THEN 0 ELSE 1 END) AS failed,
                   round(avg(CASE WHEN delivered THEN 1.0 ELSE 0.0 END), 4) AS delivery_rate
            FROM delivery_reports
            GROUP BY app_key, {report_day}
        """,
        "failures_by_status": f"""
            SELECT app_key,
                   {report_day} AS day,
                   status,
                   CASE status {status_text} ELSE 'unknown status' END AS status_text,
                   count(*) AS failures
            FROM delivery_reports
            WHERE NOT delivered
            GROUP BY app_key, {report_day}, status
        """,
        "daily_replies": f"""
            SELECT app_key,
                   {reply_day} AS day,
                   count(*) AS replies,
                   count(DISTINCT phone) AS phones
            FROM replies
            GROUP BY app_key, {reply_day}
        """,
    }


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name, table, columns, include in NEW_INDEXES:
        op.create_index(name, table, columns, postgresql_include=include)
    for name, table, _columns in REPLACED_INDEXES:
        op.drop_index(name, table_name=table)
    for name, sql in _view_sql(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {sql.strip()}")
    if dialect == "postgresql":
        op.execute(COMMITTED_HORIZON)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS committed_horizon(regclass)")
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for name, table, columns in REPLACED_INDEXES:
        op.create_index(name, table, columns)
    for name, table, _columns, _include in reversed(NEW_INDEXES):
        op.drop_index(name, table_name=table)
