"""The opt-out list as the API reads it: one phone's state, and the phones opted out now."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, bindparam, exists

from app.query import lists, pg_pages
from app.query.lists import Walk
from app.query.params import OptOutFilter
from app.store.db import Database
from app.store.models import OptOut, OptOutChange
from app.store.opt_outs import STATE, OptOutState, state_from, state_of

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


def _decides_an_opt_out() -> ColumnElement[bool]:
    """A change that opted its phone out and still decides the phone's state."""
    m = OptOutChange
    deciding = exists().where(
        OptOut.app_key == m.app_key, OptOut.phone == m.phone, OptOut.change_id == m.id
    )
    return and_(m.opted_out.is_(True), deciding)


# Each filter's condition, on a parameter of its name (lists.py builds each statement once).
lists.register(OptOutChange, OPT_OUT_COLUMNS, {
    "app_key": lambda: OptOutChange.app_key == bindparam("app_key"),
    "since": lambda: OptOutChange.changed_at >= bindparam("since"),
    "until": lambda: OptOutChange.changed_at < bindparam("until"),
}, always=[_decides_an_opt_out])  # fmt: skip


def opt_out_walk(opt_out_filter: OptOutFilter) -> Walk:
    """The walk over the phones opted out now: the changes that opted a phone out and still
    decide its state, in the order they were recorded (`since`/`until` on their time). A phone
    that opts in and out again is listed anew, after its earlier place, like a new record."""
    f = opt_out_filter
    return lists.walk_of(OptOutChange, {"app_key": f.app_key, "since": f.since, "until": f.until})


def lookup(database: Database, app_key: str, phone: str) -> OptOutState | None:
    """The phone's state for the app in one round trip, as a check before every send must be:
    one primary-key read on the readers' engine (under the API's statement timeout), in
    autocommit on PostgreSQL (no BEGIN, no ROLLBACK), with no write lock on SQLite."""
    engine = database.reader_engine
    if engine.dialect.name != "postgresql":
        with engine.connect() as connection:
            return state_of(connection, app_key, phone)
    with engine.connect() as connection:
        autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
        # Run by psycopg itself, as a page is (app/query/pg_pages.py).
        rows = pg_pages.read_rows(autocommit, STATE, {"app_key": app_key, "phone": phone})
    return state_from(rows[0] if rows else None)
