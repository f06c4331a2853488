"""The conflict-aware INSERTs of the write path (`ingest.py`): one cached statement per table.

A report ranks by `Report.precedence` (time, then delivered, then code), replies and reviews are
deduplicated by their `dedup_key`. Every statement returns one row per record that was not an
identical repeat, which is how `ingest` tells stored from duplicates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, TextClause, bindparam
from sqlalchemy import text as sql_text

from app.store.models import DeliveryReport, Reply, ReviewResult

# Rows per INSERT statement: well under SQLite's 32,766 bound parameters.
CHUNK = 500


@dataclass(frozen=True)
class ConflictInsert:
    """`INSERT … VALUES (…), (…) ON CONFLICT … RETURNING id` for one table, as plain SQL.

    SQLAlchemy 2.0 never caches a compiled ON CONFLICT statement (its dialect Insert is not
    cacheable), so built with `on_conflict_do_update` it is compiled anew on every callback: a
    quarter of a worker's CPU. PostgreSQL and SQLite spell this clause the same way, so one
    textual statement per row count (typed binds, columns taken from the model) serves both,
    and SQLAlchemy compiles it once.
    """

    table: Table
    columns: tuple[str, ...]
    on_conflict: str

    def statement(self, rows: int) -> TextClause:
        return _conflict_insert_sql(self, rows)

    def parameters(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {f"{c}_{i}": row[c] for i, row in enumerate(rows) for c in self.columns}


@functools.lru_cache(maxsize=256)
def _conflict_insert_sql(insert_: ConflictInsert, rows: int) -> TextClause:
    values = ", ".join(
        "(" + ", ".join(f":{c}_{i}" for c in insert_.columns) + ")" for i in range(rows)
    )
    sql = (
        f"INSERT INTO {insert_.table.name} ({', '.join(insert_.columns)}) VALUES {values} "
        f"{insert_.on_conflict} RETURNING id"
    )
    binds = [
        bindparam(f"{c}_{i}", type_=insert_.table.c[c].type)
        for i in range(rows)
        for c in insert_.columns
    ]
    return sql_text(sql).bindparams(*binds)


def _conflict_insert(model: type[Any], on_conflict: str) -> ConflictInsert:
    table: Table = model.__table__
    columns = tuple(c.name for c in table.columns if c.name != "id")
    return ConflictInsert(table, columns, on_conflict)


# `Report.precedence` in SQL. A report that ranks higher replaces the row; one that ranks lower
# leaves it as it is but is still returned (it was not a repeat); an identical repeat is not.
_RANKS_HIGHER = (
    "(excluded.received_at, excluded.delivered, excluded.status) > "
    "(delivery_reports.received_at, delivery_reports.delivered, delivery_reports.status)"
)
REPORTS = _conflict_insert(
    DeliveryReport,
    "ON CONFLICT (app_key, msg_id, phone) DO UPDATE SET "
    + ", ".join(
        f"{c} = CASE WHEN {_RANKS_HIGHER} THEN excluded.{c} ELSE delivery_reports.{c} END"
        for c in ("status", "delivered", "received_at", "source", "ingested_at", "raw_event_id")
    )
    + " WHERE NOT (excluded.received_at = delivery_reports.received_at"
    " AND excluded.status = delivery_reports.status)",
)
REPLIES = _conflict_insert(Reply, "ON CONFLICT (dedup_key) DO NOTHING")
REVIEWS = _conflict_insert(ReviewResult, "ON CONFLICT (dedup_key) DO NOTHING")


def write(connection: Connection, insert_: ConflictInsert, rows: list[dict[str, Any]]) -> int:
    """Run the conflict-aware INSERT over `rows`; how many rows it returned (every row that was
    not an identical repeat)."""
    changed = 0
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        result = connection.execute(insert_.statement(len(chunk)), insert_.parameters(chunk))
        changed += len(result.all())
    return changed
