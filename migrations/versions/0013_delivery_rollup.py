"""delivery rollup: exact counts per app, 15-minute UTC bucket and status, kept by triggers

`delivery_rollup` holds reports per (app_key, bucket, status, delivered), `bucket` being the
first epoch second of a 15-minute UTC bucket (every UTC offset since 2000 is whole quarter
hours, so every local hour and day of any zone is a sum of buckets). Triggers on
`delivery_reports` append each insert, change and delete to `delivery_rollup_changes` (+n into
the new row's bucket, -n out of the old one's), whoever writes: ingest, reprocess, retention, a
BI tool. The clock folds the changes into the rollup (app/store/rollup.py); readers sum both.
On PostgreSQL the triggers run once per statement over its transition tables (a group commit's
upsert appends one row per app, bucket and status it touched); SQLite has only row triggers.

The delivery views (business days and `*_utc`) are recreated over the rollup, same columns,
same answers. The back-fill runs after the triggers exist, in this migration's transaction:
on PostgreSQL creating a trigger locks out writers of `delivery_reports` until the commit, so
no report changes between the back-fill's read and the triggers taking over.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# Frozen copy of app/jsms/codes.py at the time of writing (as in 0002 and 0006).
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
DELIVERY_VIEWS = ("daily_delivery_rate", "failures_by_status")
ZONE = "(SELECT max(timezone) AS timezone FROM business_timezone) AS bt"
UTC_NAME = "'UTC'"
KEY = "app_key, bucket, status, delivered"
CHANGES = f"delivery_rollup_changes ({KEY}, reports)"
# A count per key: the rollup and the changes not folded into it yet.
COUNTS = (
    f"(SELECT {KEY}, reports FROM delivery_rollup"
    f" UNION ALL SELECT {KEY}, reports FROM delivery_rollup_changes) AS r"
)
# Rollup rows whose reports all went (retention): the clock deletes them through this index.
EMPTY = sa.text("reports = 0")


def _count_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("app_key", sa.String(64), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.Column("reports", sa.Integer(), nullable=False),
    ]


def _bucket(dialect: str, column: str) -> str:
    """The epoch second the 15-minute UTC bucket of a stored time starts at."""
    if dialect == "postgresql":
        return f"(floor(extract(epoch FROM {column}) / 900) * 900)::bigint"
    seconds = f"CAST(strftime('%s', {column}) AS INTEGER)"  # SQLite stores naive UTC text
    return f"({seconds} - (({seconds} % 900) + 900) % 900)"


def _postgresql_triggers() -> list[str]:
    bucket = _bucket("postgresql", "received_at")
    rows = f"app_key, {bucket}, status, delivered"
    bodies = {
        "insert": f"SELECT {rows}, count(*) FROM new_rows GROUP BY 1, 2, 3, 4",
        "delete": f"SELECT {rows}, -count(*) FROM old_rows GROUP BY 1, 2, 3, 4",
        # A row the upsert rewrote with its own values nets to nothing and appends nothing.
        "update": (
            f"SELECT {KEY}, sum(n) FROM (SELECT {rows}, 1 FROM new_rows"
            f" UNION ALL SELECT {rows}, -1 FROM old_rows)"
            " AS moved (app_key, bucket, status, delivered, n)"
            " GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0"
        ),
    }
    references = {
        "insert": "NEW TABLE AS new_rows",
        "delete": "OLD TABLE AS old_rows",
        "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    }
    statements = []
    for event, body in bodies.items():
        statements += [
            f"CREATE FUNCTION delivery_rollup_{event}() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN INSERT INTO {CHANGES} {body}; RETURN NULL; END $$",
            f"CREATE TRIGGER delivery_rollup_{event} AFTER {event.upper()} ON delivery_reports"
            f" REFERENCING {references[event]}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION delivery_rollup_{event}()",
        ]
    # TRUNCATE takes every writer's lock away, so no change is in flight: start from zero.
    statements += [
        "CREATE FUNCTION delivery_rollup_truncate() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN DELETE FROM delivery_rollup_changes; DELETE FROM delivery_rollup;"
        " RETURN NULL; END $$",
        "CREATE TRIGGER delivery_rollup_truncate AFTER TRUNCATE ON delivery_reports"
        " FOR EACH STATEMENT EXECUTE FUNCTION delivery_rollup_truncate()",
    ]
    return statements


def _sqlite_triggers() -> list[str]:
    def values(row: str, n: int) -> str:
        bucket = _bucket("sqlite", f"{row}.received_at")
        return f"({row}.app_key, {bucket}, {row}.status, {row}.delivered, {n})"

    changed = " OR ".join(
        f"OLD.{c} IS NOT NEW.{c}" for c in ("app_key", "received_at", "status", "delivered")
    )
    return [
        "CREATE TRIGGER delivery_rollup_insert AFTER INSERT ON delivery_reports"
        f" BEGIN INSERT INTO {CHANGES} VALUES {values('NEW', 1)}; END",
        "CREATE TRIGGER delivery_rollup_update AFTER UPDATE ON delivery_reports"
        f" WHEN {changed}"
        f" BEGIN INSERT INTO {CHANGES} VALUES {values('OLD', -1)}, {values('NEW', 1)}; END",
        "CREATE TRIGGER delivery_rollup_delete AFTER DELETE ON delivery_reports"
        f" BEGIN INSERT INTO {CHANGES} VALUES {values('OLD', -1)}; END",
    ]


def _day(dialect: str, zone: str | None) -> str:
    """The calendar day of a bucket's start, in the business zone (`zone` None: UTC)."""
    if dialect == "postgresql":
        return f"((to_timestamp(r.bucket) AT TIME ZONE {zone or UTC_NAME})::date)"
    if zone is None:
        return "date(r.bucket, 'unixepoch')"
    # business_timezone.starts_at is SQLAlchemy's naive text, microseconds included.
    start = "strftime('%Y-%m-%d %H:%M:%S', r.bucket, 'unixepoch') || '.000000'"
    offset = (
        "(SELECT o.utc_offset_seconds || ' seconds' FROM business_timezone AS o"
        f" WHERE o.starts_at <= {start} ORDER BY o.starts_at DESC LIMIT 1)"
    )
    return f"date(r.bucket, 'unixepoch', {offset})"


def _rollup_views(day: str, zone: bool) -> dict[str, str]:
    """0006's two delivery views over the counts: same columns, same values."""
    status_text = " ".join(
        f"WHEN {code} THEN '{text.replace(chr(39), chr(39) * 2)}'"
        for code, text in STATUS_TEXT.items()
    )
    join = f" CROSS JOIN {ZONE}" if zone else ""
    named, grouped = (", bt.timezone AS timezone", ", bt.timezone") if zone else ("", "")
    return {
        "daily_delivery_rate": f"""
            SELECT r.app_key,
                   {day} AS day,
                   sum(r.reports) AS total,
                   sum(CASE WHEN r.delivered THEN r.reports ELSE 0 END) AS delivered,
                   sum(CASE WHEN r.delivered THEN 0 ELSE r.reports END) AS failed,
                   round(sum(CASE WHEN r.delivered THEN r.reports * 1.0 ELSE 0.0 END)
                         / sum(r.reports), 4) AS delivery_rate
                   {named}
            FROM {COUNTS}{join}
            GROUP BY r.app_key, {day}{grouped}
            HAVING sum(r.reports) <> 0
        """,
        "failures_by_status": f"""
            SELECT r.app_key,
                   {day} AS day,
                   r.status,
                   CASE r.status {status_text} ELSE 'unknown status' END AS status_text,
                   sum(r.reports) AS failures
                   {named}
            FROM {COUNTS}{join}
            WHERE NOT r.delivered
            GROUP BY r.app_key, {day}, r.status{grouped}
            HAVING sum(r.reports) <> 0
        """,
    }


def _report_views(dialect: str) -> dict[str, str]:
    """0006's two delivery views over `delivery_reports`, for the downgrade."""
    status_text = " ".join(
        f"WHEN {code} THEN '{text.replace(chr(39), chr(39) * 2)}'"
        for code, text in STATUS_TEXT.items()
    )
    views: dict[str, str] = {}
    for suffix, zone in (("_utc", False), ("", True)):
        if dialect == "postgresql":
            day = f"((r.received_at AT TIME ZONE {'bt.timezone' if zone else UTC_NAME})::date)"
        elif zone:
            day = (
                "date(r.received_at, (SELECT o.utc_offset_seconds || ' seconds'"
                " FROM business_timezone AS o WHERE o.starts_at <= r.received_at"
                " ORDER BY o.starts_at DESC LIMIT 1))"
            )
        else:
            day = "date(r.received_at)"
        join = f" CROSS JOIN {ZONE}" if zone else ""
        named, grouped = (", bt.timezone AS timezone", ", bt.timezone") if zone else ("", "")
        views[f"daily_delivery_rate{suffix}"] = f"""
            SELECT r.app_key,
                   {day} AS day,
                   count(*) AS total,
                   sum(CASE WHEN r.delivered THEN 1 ELSE 0 END) AS delivered,
                   sum(CASE WHEN r.delivered THEN 0 ELSE 1 END) AS failed,
                   round(avg(CASE WHEN r.delivered THEN 1.0 ELSE 0.0 END), 4) AS delivery_rate
                   {named}
            FROM delivery_reports AS r{join}
            GROUP BY r.app_key, {day}{grouped}
        """
        views[f"failures_by_status{suffix}"] = f"""
            SELECT r.app_key,
                   {day} AS day,
                   r.status,
                   CASE r.status {status_text} ELSE 'unknown status' END AS status_text,
                   count(*) AS failures
                   {named}
            FROM delivery_reports AS r{join}
            WHERE NOT r.delivered
            GROUP BY r.app_key, {day}, r.status{grouped}
        """
    return views


def _drop_delivery_views() -> None:
    for name in DELIVERY_VIEWS:
        op.execute(f"DROP VIEW {name}")
        op.execute(f"DROP VIEW {name}_utc")


def _create_views(views: dict[str, str]) -> None:
    for name, sql in views.items():
        op.execute(f"CREATE VIEW {name} AS {sql.strip()}")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "delivery_rollup",
        *_count_columns(),
        sa.PrimaryKeyConstraint(
            "app_key", "bucket", "status", "delivered", name="pk_delivery_rollup"
        ),
    )
    op.create_index("ix_delivery_rollup_bucket", "delivery_rollup", ["bucket"])
    op.create_index(
        "ix_delivery_rollup_empty",
        "delivery_rollup",
        ["bucket"],
        postgresql_where=EMPTY,
        sqlite_where=EMPTY,
    )
    op.create_table(
        "delivery_rollup_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        *_count_columns(),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_rollup_changes"),
    )
    triggers = _postgresql_triggers() if dialect == "postgresql" else _sqlite_triggers()
    for statement in triggers:
        op.execute(statement)
    bucket = _bucket(dialect, "received_at")
    op.execute(
        f"INSERT INTO delivery_rollup ({KEY}, reports)"
        f" SELECT app_key, {bucket}, status, delivered, count(*) FROM delivery_reports"
        " WHERE true GROUP BY 1, 2, 3, 4"
    )
    _drop_delivery_views()
    _create_views(_rollup_views(_day(dialect, "bt.timezone"), True))
    _create_views({f"{n}_utc": s for n, s in _rollup_views(_day(dialect, None), False).items()})


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    _drop_delivery_views()
    _create_views(_report_views(dialect))
    events = ("insert", "update", "delete") + (("truncate",) if dialect == "postgresql" else ())
    for event in events:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER delivery_rollup_{event} ON delivery_reports")
            op.execute(f"DROP FUNCTION delivery_rollup_{event}()")
        else:
            op.execute(f"DROP TRIGGER delivery_rollup_{event}")
    op.drop_table("delivery_rollup_changes")
    op.drop_index("ix_delivery_rollup_empty", table_name="delivery_rollup")
    op.drop_index("ix_delivery_rollup_bucket", table_name="delivery_rollup")
    op.drop_table("delivery_rollup")
