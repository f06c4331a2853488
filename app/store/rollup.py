"""The delivery rollup (tables `delivery_rollup` + `delivery_rollup_changes`, migration 0013):
folding the changes the triggers append into the rollup, and rebuilding it from the reports.

Triggers on `delivery_reports` append every change to a report's (app, 15-minute bucket, status)
to `delivery_rollup_changes`, in the writer's own transaction, whoever the writer is. Appending
never waits for another writer (no hot row to lock, so no lock order to deadlock on); the clock
folds the changes into `delivery_rollup` every minute. A count is the rollup plus the changes not
folded yet, read in one statement (one snapshot), so a reader sees each change exactly once
whether or not a fold has committed in between. Folds and rebuilds take a lock on the rollup that
excludes each other and nothing else: readers and writers never wait for them.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

KEY = "app_key, bucket, status, delivered"
# PostgreSQL: per-statement locks, so the fold and the rebuild exclude each other (the mode
# conflicts with itself) while readers (ACCESS SHARE) and the triggers' appends go on.
_LOCK = "LOCK TABLE delivery_rollup IN SHARE ROW EXCLUSIVE MODE"
# The changes this statement's snapshot sees, moved into the rollup: a change committed after
# the snapshot stays for the next fold, whatever its id (ids are not handed out in commit order).
_FOLD_POSTGRESQL = f"""
WITH moved AS (DELETE FROM delivery_rollup_changes RETURNING {KEY}, reports),
merged AS (
    INSERT INTO delivery_rollup ({KEY}, reports)
    SELECT {KEY}, sum(reports) FROM moved GROUP BY {KEY} HAVING sum(reports) <> 0 ORDER BY {KEY}
    ON CONFLICT ({KEY}) DO UPDATE SET reports = delivery_rollup.reports + excluded.reports
)
SELECT count(*) FROM moved
"""
# SQLite: one writer at a time (BEGIN IMMEDIATE), so every change up to max(id) is committed.
_FOLD_SQLITE = f"""
INSERT INTO delivery_rollup ({KEY}, reports)
SELECT {KEY}, sum(reports) FROM delivery_rollup_changes WHERE id <= :last
GROUP BY {KEY} HAVING sum(reports) <> 0
ON CONFLICT ({KEY}) DO UPDATE SET reports = delivery_rollup.reports + excluded.reports
"""
_DROP_EMPTY = "DELETE FROM delivery_rollup WHERE reports = 0"
# How long a fold waits for a rebuild before giving up until the next one.
FOLD_LOCK_TIMEOUT = "5s"


def bucket_sql(dialect: str, column: str) -> str:
    """The first epoch second of the 15-minute UTC bucket of a stored time (as the triggers
    of migration 0013 compute it)."""
    if dialect == "postgresql":
        return f"(floor(extract(epoch FROM {column}) / 900) * 900)::bigint"
    seconds = f"CAST(strftime('%s', {column}) AS INTEGER)"  # SQLite stores naive UTC text
    return f"({seconds} - (({seconds} % 900) + 900) % 900)"


def fold_changes(connection: Connection) -> int:
    """Move the pending changes into the rollup, in the caller's transaction (which must not
    have read anything yet on PostgreSQL). How many change rows were folded."""
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SET LOCAL lock_timeout = '{FOLD_LOCK_TIMEOUT}'"))
        connection.execute(text(_LOCK))
        pending = connection.scalar(text(_FOLD_POSTGRESQL))
    else:
        last = connection.scalar(text("SELECT max(id) FROM delivery_rollup_changes"))
        if last is None:
            return 0
        pending = connection.scalar(
            text("SELECT count(*) FROM delivery_rollup_changes WHERE id <= :last"), {"last": last}
        )
        connection.execute(text(_FOLD_SQLITE), {"last": last})
        connection.execute(
            text("DELETE FROM delivery_rollup_changes WHERE id <= :last"), {"last": last}
        )
    connection.execute(text(_DROP_EMPTY))
    return int(pending or 0)


def rebuild(connection: Connection) -> int:
    """Recount the rollup from `delivery_reports`, in the caller's transaction, which on
    PostgreSQL must be REPEATABLE READ and must not have read anything yet. How many rollup
    rows it now has.

    Safe while reports arrive. PostgreSQL: the lock is taken before the snapshot, so no fold
    runs in between; the count reads the reports as of the snapshot, and the changes the
    snapshot sees (all of them already in that count) are deleted. A change committed after the
    snapshot is in neither the count nor the deletion: it stays pending and the next fold adds
    it. Writers never wait. SQLite: the transaction holds the one write lock, so writers wait
    until the count is done (seconds at the sizes SQLite serves).
    """
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(text(_LOCK))
    connection.execute(text("DELETE FROM delivery_rollup_changes"))
    connection.execute(text("DELETE FROM delivery_rollup"))
    connection.execute(
        text(
            f"INSERT INTO delivery_rollup ({KEY}, reports)"
            f" SELECT app_key, {bucket_sql(dialect, 'received_at')}, status, delivered, count(*)"
            " FROM delivery_reports WHERE true GROUP BY 1, 2, 3, 4"
        )
    )
    return int(connection.scalar(text("SELECT count(*) FROM delivery_rollup")) or 0)


def fold(engine: Engine) -> int:
    """`fold_changes` in a transaction of its own (the clock's job); how many were folded."""
    with engine.begin() as connection:
        return fold_changes(connection)


def rebuild_rollup(engine: Engine) -> int:
    """`rebuild` in a transaction of its own (`jsms rebuild-stats`); the rollup's rows."""
    postgres = engine.dialect.name == "postgresql"
    options = {"isolation_level": "REPEATABLE READ"} if postgres else {}
    with engine.connect().execution_options(**options) as connection, connection.begin():
        if postgres:
            # The web process's connections stop a statement after 15 s (a stuck callback must
            # answer 503); a recount of 10 M reports takes about as long. SET takes no snapshot.
            connection.execute(text("SET LOCAL statement_timeout = 0"))
        return rebuild(connection)
