"""The opt-out list as the API reads it: one phone's state, and the phones opted out now."""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists

from app.query.lists import Walk
from app.query.params import OptOutFilter
from app.store.db import Database
from app.store.models import OptOut, OptOutChange
from app.store.opt_outs import OptOutState, state_of

# What a page of the list reads: the change that decided each phone's state.
OPT_OUT_COLUMNS = (
    OptOutChange.id,
    OptOutChange.app_key,
    OptOutChange.phone,
    OptOutChange.changed_at,
    OptOutChange.keyword,
    OptOutChange.source,
    OptOutChange.changed_by,
    OptOutChange.reason,
)


def opt_out_walk(opt_out_filter: OptOutFilter) -> Walk:
    """The walk over the phones opted out now: the changes that opted a phone out and still
    decide its state, in the order they were recorded (`since`/`until` on their time). A phone
    that opts in and out again is listed anew, after its earlier place, like a new record."""
    f, m = opt_out_filter, OptOutChange
    deciding = exists().where(
        OptOut.app_key == m.app_key, OptOut.phone == m.phone, OptOut.change_id == m.id
    )
    conditions: list[ColumnElement[bool]] = [m.opted_out.is_(True), deciding]
    if f.app_key is not None:
        conditions.append(m.app_key == f.app_key)
    if f.since is not None:
        conditions.append(m.changed_at >= f.since)
    if f.until is not None:
        conditions.append(m.changed_at < f.until)
    return Walk(m, OPT_OUT_COLUMNS, conditions)


def lookup(database: Database, app_key: str, phone: str) -> OptOutState | None:
    """The phone's state for the app in one round trip, as a check before every send must be.

    On PostgreSQL an autocommit connection of the writers' engine: no BEGIN, no ROLLBACK, and
    none of the statement timeout the readers' engine sets and resets around each request (a
    primary-key read cannot run long). On SQLite the readers' engine: no write lock.
    """
    engine = database.engine
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            return state_of(connection, app_key, phone)
    with database.reader_engine.connect() as connection:
        return state_of(connection, app_key, phone)
