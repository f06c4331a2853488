"""Each app's balance as the API, the status page and `/metrics` show it: the latest read, the
last day's consumption and the time left at that rate, and the last failed read.

Consumption is the sum of the drops between consecutive reads of the last day; a rise (a top-up)
is not negative consumption, so buying messages does not hide what is being spent.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.jsms.accounts import BALANCE_FIELDS, BALANCE_KINDS
from app.jsms.codes import explain
from app.query.items import iso_utc
from app.store import balances
from app.store.models import AppBalance, utcnow

# How far back consumption is measured ("the last day's consumption").
CONSUMPTION_WINDOW = timedelta(days=1)
# The columns of a read, in BALANCE_KINDS order.
_COLUMNS = dict(zip(BALANCE_KINDS, BALANCE_FIELDS, strict=True))


@dataclass(frozen=True, slots=True)
class Consumption:
    """What one kind of balance did over the reads of the window."""

    consumed: int  # messages spent (the drops between reads)
    seconds: float  # the time the reads span
    current: int | None  # the newest count

    @property
    def seconds_left(self) -> float | None:
        """When the count reaches 0 at this rate (0 when it already has; None: nothing spent)."""
        if self.current is None:
            return None
        if self.current <= 0:
            return 0.0
        if self.consumed <= 0 or self.seconds <= 0:
            return None
        return round(self.current * self.seconds / self.consumed, 1)


def consumption(reads: Sequence[AppBalance], kind: str) -> Consumption:
    """The consumption of `kind` over `reads` (oldest first; reads lacking the field skipped)."""
    column = _COLUMNS[kind]
    points = [(r.read_at, getattr(r, column)) for r in reads if getattr(r, column) is not None]
    if not points:
        return Consumption(0, 0.0, None)
    counts = [count for _, count in points]
    consumed = sum(max(0, a - b) for a, b in itertools.pairwise(counts))
    seconds = (points[-1][0] - points[0][0]).total_seconds()
    return Consumption(consumed, seconds, points[-1][1])


def balance_items(
    session: Session, configured: Iterable[str], now: datetime | None = None
) -> list[dict[str, Any]]:
    """One item per configured app, sorted by app. An app removed from JSMS_APPS keeps its
    history in the table but is not shown (nor exported, nor alerted on) any more."""
    now = now or utcnow()
    return [_item(session, app_key, now) for app_key in sorted(set(configured))]


def _item(session: Session, app_key: str, now: datetime) -> dict[str, Any]:
    newest, good = balances.latest(session, app_key)
    since = now - CONSUMPTION_WINDOW
    reads = balances.reads_since(session, app_key, since) if good else []
    used = {kind: consumption(reads, kind) for kind in BALANCE_KINDS}
    failed = newest is not None and newest.result != balances.OK
    code = newest.error_code if failed and newest else None
    return {
        "app_key": app_key,
        "read_at": iso_utc(good.read_at) if good else None,
        **{field: getattr(good, field) if good else None for field in BALANCE_FIELDS},
        "consumed_last_day": {kind: c.consumed for kind, c in used.items()},
        "consumption_seconds": max(c.seconds for c in used.values()),
        "seconds_left": {kind: c.seconds_left for kind, c in used.items()},
        "last_attempt_at": iso_utc(newest.read_at) if newest else None,
        "last_result": newest.result if newest else None,
        "last_error_code": code,
        "last_error_message": newest.error_message if failed and newest else None,
        "last_error_text": _meaning(code),
    }


def _meaning(code: int | None) -> str | None:
    """What a JSMS error code means (None for no code or an unknown one)."""
    known = explain(code)
    return known.meaning if known else None
