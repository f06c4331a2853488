"""Writing records (for `ingest.py`): conflict-aware INSERTs, one cached statement per table.

A report ranks by `Report.precedence` (time, then delivered, then code), replies and reviews are
deduplicated by their `dedup_key`. Every statement returns the key of each row that was not an
identical repeat, which is how `ingest` tells stored from duplicates, callback by callback, when
one statement carries the records of many callbacks (group commit).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, CursorResult, Dialect, Table, select, tuple_

from app.jsms.records import ParsedBatch, ReplyMessage, Report, Review, encode_extra
from app.store import opt_outs
from app.store.models import (
    CallbackSignature,
    DeliveryReport,
    Reply,
    ReviewResult,
    SignatureReuse,
)

# Rows per INSERT statement: well under SQLite's 32,766 bound parameters.
CHUNK = 500


@dataclass(frozen=True)
class ConflictInsert:
    """`INSERT … VALUES (…), (…) ON CONFLICT … RETURNING <key>` for one table, as plain SQL.

    PostgreSQL and SQLite spell this clause the same way, so one statement per row count and
    placeholder style serves both. It goes to the driver as written (`exec_driver_sql`): no
    SQLAlchemy compilation or cache key over hundreds of binds, and on PostgreSQL no placeholder
    conversion by psycopg either (the writer's `$n` placeholders, `db.make_engine`). Values pass
    through each column type's own bind processor first, as SQLAlchemy would pass them.
    """

    table: Table
    columns: tuple[str, ...]
    on_conflict: str
    returning: tuple[str, ...]  # the conflict key: which rows were not identical repeats

    def execute(self, connection: Connection, rows: Sequence[dict[str, Any]]) -> CursorResult[Any]:
        dialect = connection.dialect
        sql = _conflict_insert_sql(self, len(rows), dialect.paramstyle)
        values = bound_values(self.table, self.columns, rows, dialect)
        return connection.exec_driver_sql(sql, values)


def bound_values(
    table: Table, columns: tuple[str, ...], rows: Sequence[dict[str, Any]], dialect: Dialect
) -> tuple[Any, ...]:
    """The rows' values, row after row, as the driver takes them (each column's bind
    processor applied, as SQLAlchemy would before a compiled statement)."""
    processors = _bind_processors(table, columns, dialect)
    return tuple(
        value if process is None else process(value)
        for row in rows
        for value, process in zip(map(row.__getitem__, columns), processors, strict=True)
    )


@functools.lru_cache(maxsize=64)
def _bind_processors(
    table: Table, columns: tuple[str, ...], dialect: Dialect
) -> tuple[Callable[[Any], Any] | None, ...]:
    # The type as the dialect stores it (SQLite: datetimes as SQLAlchemy's own text format).
    return tuple(table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns)


def placeholders(paramstyle: str, count: int, first: int = 1) -> list[str]:
    """`count` positional placeholders in the driver's style: `$n` (the PostgreSQL writer),
    `?` (SQLite), `%s` (psycopg's default)."""
    if paramstyle == "numeric_dollar":
        return [f"${n}" for n in range(first, first + count)]
    return ["?" if paramstyle == "qmark" else "%s"] * count


@functools.lru_cache(maxsize=256)
def _conflict_insert_sql(insert_: ConflictInsert, rows: int, paramstyle: str) -> str:
    width = len(insert_.columns)
    marks = placeholders(paramstyle, rows * width)
    values = ", ".join(
        "(" + ", ".join(marks[i * width : (i + 1) * width]) + ")" for i in range(rows)
    )
    return (
        f"INSERT INTO {insert_.table.name} ({', '.join(insert_.columns)}) VALUES {values} "
        f"{insert_.on_conflict} RETURNING {', '.join(insert_.returning)}"
    )


def _conflict_insert(model: type[Any], key: tuple[str, ...], on_conflict: str) -> ConflictInsert:
    table: Table = model.__table__
    columns = tuple(c.name for c in table.columns if c.name != "id")
    return ConflictInsert(table, columns, f"ON CONFLICT ({', '.join(key)}) {on_conflict}", key)


# `Report.precedence` in SQL. A report that ranks higher replaces the row; one that ranks lower
# leaves it as it is but is still returned (it was not a repeat); an identical repeat is not.
_RANKS_HIGHER = (
    "(excluded.received_at, excluded.delivered, excluded.status) > "
    "(delivery_reports.received_at, delivery_reports.delivered, delivery_reports.status)"
)
# What a report that ranks higher brings into the row.
_REPORT_VALUES = (
    "status", "delivered", "received_at", "source", "ingested_at", "raw_event_id", "extra"
)  # fmt: skip
REPORTS = _conflict_insert(
    DeliveryReport,
    ("app_key", "msg_id", "phone"),
    "DO UPDATE SET "
    + ", ".join(
        f"{c} = CASE WHEN {_RANKS_HIGHER} THEN excluded.{c} ELSE delivery_reports.{c} END"
        for c in _REPORT_VALUES
    )
    + " WHERE NOT (excluded.received_at = delivery_reports.received_at"
    " AND excluded.status = delivery_reports.status)",
)
REPLIES = _conflict_insert(Reply, ("dedup_key",), "DO NOTHING")
REVIEWS = _conflict_insert(ReviewResult, ("dedup_key",), "DO NOTHING")
# Replay memory (`replay.py`): a signature's triple is remembered once.
SIGNATURES = _conflict_insert(
    CallbackSignature, ("app_key", "nonce", "callback_timestamp"), "DO NOTHING"
)
# ... and each other payload it carried since.
REUSES = _conflict_insert(
    SignatureReuse, ("app_key", "nonce", "callback_timestamp", "digest"), "DO NOTHING"
)


def write(
    connection: Connection, insert_: ConflictInsert, rows: list[dict[str, Any]]
) -> set[tuple[Any, ...]]:
    """Run the conflict-aware INSERT over `rows`; the keys of the rows it returned (every row
    that was not an identical repeat). Rows go in key order, so two transactions writing the
    same keys lock them in the same order (no deadlock between web workers)."""
    rows = sorted(rows, key=lambda row: tuple(row[c] for c in insert_.returning))
    changed: set[tuple[Any, ...]] = set()
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        result = insert_.execute(connection, chunk)
        changed.update(tuple(row) for row in result)
    return changed


@dataclass(frozen=True, slots=True)
class Owner:
    """The raw event a record belongs to, and what its row says about where it came from."""

    app_key: str
    source: str
    now: datetime
    raw_event_id: int

    def row(self, **values: Any) -> dict[str, Any]:
        return {
            "app_key": self.app_key,
            "source": self.source,
            "ingested_at": self.now,
            "raw_event_id": self.raw_event_id,
            **values,
        }


def store_records(
    connection: Connection, owners: Sequence[Owner], batches: Sequence[ParsedBatch]
) -> list[int]:
    """Write the records of every batch (batch i belongs to owners[i]); how many records of each
    batch were stored (the rest were duplicates)."""
    kinds: tuple[tuple[type, Callable[..., list[int]]], ...] = (
        (Report, store_reports),
        (ReplyMessage, store_replies),
        (Review, store_reviews),
    )
    stored = [0] * len(batches)
    for kind, store in kinds:
        owned = [(i, r) for i, b in enumerate(batches) for r in b.records if isinstance(r, kind)]
        if owned:
            for i, count in enumerate(store(connection, owners, owned)):
                stored[i] += count
    return stored


def store_reports(
    connection: Connection, owners: Sequence[Owner], owned: Sequence[tuple[int, Report]]
) -> list[int]:
    """Upsert reports; the greater `Report.precedence` is kept. Counts, per owner, the reports
    that were not identical repeats of the row as it stood when each arrived: exactly what the
    same callbacks would have counted alone, in order (new, replacing the row, or outranked by
    it)."""
    # One row per key: ON CONFLICT DO UPDATE may not touch a row twice in one statement.
    carriers: dict[ReportKey, list[tuple[int, Report]]] = {}
    for i, report in owned:
        carriers.setdefault((owners[i].app_key, report.msg_id, report.phone), []).append(
            (i, report)
        )
    latest = {key: max(found, key=lambda c: c[1].precedence) for key, found in carriers.items()}
    # Only a key several callbacks of the group carry needs the row as it stood before them.
    shared = [key for key, found in carriers.items() if len({i for i, _ in found}) > 1]
    before = _stored_precedences(connection, shared) if shared else {}
    rows = [
        owners[i].row(
            msg_id=r.msg_id,
            phone=r.phone,
            status=r.status,
            delivered=r.delivered,
            received_at=r.received_at,
            extra=encode_extra(r.extra),
        )
        for i, r in latest.values()
    ]
    changed = write(connection, REPORTS, rows)
    stored = [0] * len(owners)
    for key, found in carriers.items():
        standing = before.get(key) if key in before or key in shared else _NOT_READ
        _count_alone(found, stored, standing, key in changed)
    return stored


# `standing` for a key one callback alone carries: its own write says whether it was new.
_NOT_READ = (datetime.min, False, -1)


def _count_alone(
    found: Sequence[tuple[int, Report]],
    stored: list[int],
    standing: tuple[datetime, bool, int] | None,
    changed: bool,
) -> None:
    """Count one key's reports per callback as each callback alone would have: in a callback,
    the first carrier of each version is stored, but its highest version only when it is no
    identical repeat of the row it meets (`standing`, then raised by each callback; for a key
    of one callback, `changed` says so)."""
    by_owner: dict[int, list[tuple[datetime, bool, int]]] = {}
    for i, report in found:
        versions = by_owner.setdefault(i, [])
        if report.precedence not in versions:
            versions.append(report.precedence)
    for i, versions in by_owner.items():  # owners in arrival order
        highest = max(versions)
        for version in versions:
            new = changed if standing == _NOT_READ else version != standing
            stored[i] += version != highest or new
        if standing != _NOT_READ:
            standing = highest if standing is None else max(standing, highest)


ReportKey = tuple[str, str, str]


def _stored_precedences(
    connection: Connection, keys: Sequence[ReportKey]
) -> dict[ReportKey, tuple[datetime, bool, int]]:
    """The precedence of each key's stored row (`Report.precedence`), for the keys stored."""
    table = DeliveryReport.__table__
    found = connection.execute(
        select(table.c.app_key, table.c.msg_id, table.c.phone, table.c.received_at,
               table.c.delivered, table.c.status)
        .where(tuple_(table.c.app_key, table.c.msg_id, table.c.phone).in_(keys))
    )  # fmt: skip
    return {(a, m, p): (at, bool(d), s) for a, m, p, at, d, s in found}


def store_replies(
    connection: Connection, owners: Sequence[Owner], owned: Sequence[tuple[int, ReplyMessage]]
) -> list[int]:
    """Insert replies not seen before, and follow those that are opt-out or opt-in keywords
    (`opt_outs.py`) in the same transaction. Counts, per owner, the rows inserted."""
    keyed = [
        (i, (r.phone, r.replied_at.isoformat(), r.content), {
            "phone": r.phone, "content": r.content, "replied_at": r.replied_at,
            "extra": encode_extra(r.extra),
        })
        for i, r in owned
    ]  # fmt: skip
    stored = _insert_new(connection, REPLIES, owners, keyed)
    keyword_replies = [
        opt_outs.KeywordReply(
            owners[i].app_key, owners[i].source, _dedup_key(owners[i].app_key, *parts), r, choice
        )
        for (i, parts, _), (_, r) in zip(keyed, owned, strict=True)
        if (choice := opt_outs.keyword_choice(r.content)) is not None
    ]
    opt_outs.follow_replies(connection, keyword_replies)
    return stored


def store_reviews(
    connection: Connection, owners: Sequence[Owner], owned: Sequence[tuple[int, Review]]
) -> list[int]:
    """Insert review results not seen before. Counts, per owner, the rows inserted."""
    keyed = [
        (i, (r.review_type, r.subject_id, str(r.status), r.refuse_reason or ""), {
            "review_type": r.review_type, "subject_id": r.subject_id, "status": r.status,
            "refuse_reason": r.refuse_reason, "extra": encode_extra(r.extra),
        })
        for i, r in owned
    ]  # fmt: skip
    return _insert_new(connection, REVIEWS, owners, keyed)


def _insert_new(
    connection: Connection,
    insert_: ConflictInsert,
    owners: Sequence[Owner],
    keyed: Sequence[tuple[int, tuple[str, ...], dict[str, Any]]],
) -> list[int]:
    """Insert one row per dedup key (the app's, and `parts`), its first carrier's; count the
    inserted ones per owner."""
    rows: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, parts, values in keyed:
        key = _dedup_key(owners[i].app_key, *parts)
        rows.setdefault(key, (i, owners[i].row(**values, dedup_key=key)))
    changed = write(connection, insert_, [row for _, row in rows.values()])
    stored = [0] * len(owners)
    for key, (i, _) in rows.items():
        stored[i] += (key,) in changed
    return stored


def _dedup_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
