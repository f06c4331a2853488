"""`/api/v1/balances/history`: every balance read kept, as a keyset walk (app/query/lists.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement

from app.query import params
from app.query.lists import Walk
from app.store.models import AppBalance

FIELDS = (
    "id",
    "app_key",
    "read_at",
    "result",
    "app_balance",
    "app_voice",
    "app_industry",
    "app_market",
    "error_code",
    "error_message",
)
COLUMNS = tuple(getattr(AppBalance, name) for name in FIELDS)
_PARAMS = frozenset({"app_key", "since", "until"})


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """What `/balances/history` narrows to; None means "any"."""

    app_key: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def fingerprint(self) -> str:
        """A short digest binding a cursor to these filters."""
        return params._fingerprint("balances", (self.app_key, self.since, self.until))


def parse_history_query(
    args: params.Args, cursor_key: str, wants_csv: bool = False
) -> tuple[HistoryFilter, params.PageRequest]:
    """The filters and page of a `/balances/history` request (`since`/`until` on `read_at`)."""
    params._reject_unknown(args, _PARAMS | params._PAGE_PARAMS)
    since, until = params._time_range(args)
    history_filter = HistoryFilter(params._text(args, "app_key", 64), since, until)
    page = params._page(args, history_filter.fingerprint(), cursor_key, wants_csv)
    return history_filter, page


def history_walk(history_filter: HistoryFilter) -> Walk:
    """The walk over the reads matching the filter, oldest first."""
    f, m = history_filter, AppBalance
    conditions: list[ColumnElement[bool]] = []
    if f.app_key is not None:
        conditions.append(m.app_key == f.app_key)
    if f.since is not None:
        conditions.append(m.read_at >= f.since)
    if f.until is not None:
        conditions.append(m.read_at < f.until)
    return Walk(m, COLUMNS, conditions)


def history_item(row: Any) -> dict[str, Any]:
    """A read (columns in FIELDS order) as the API's item."""
    return dict(zip(FIELDS, row, strict=True))
