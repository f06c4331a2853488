"""`/api/v1/balances/history`: every balance read kept, as a keyset walk (app/query/lists.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam

from app.query import lists, params
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
# Each filter's condition, on a parameter of its name (lists.py builds each statement once).
lists.register(AppBalance, COLUMNS, {
    "app_key": lambda: AppBalance.app_key == bindparam("app_key"),
    "since": lambda: AppBalance.read_at >= bindparam("since"),
    "until": lambda: AppBalance.read_at < bindparam("until"),
})  # fmt: skip
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
    f = history_filter
    return lists.walk_of(AppBalance, {"app_key": f.app_key, "since": f.since, "until": f.until})


def history_item(row: Any) -> dict[str, Any]:
    """A read (columns in FIELDS order) as the API's item."""
    return dict(zip(FIELDS, row, strict=True))
