"""How many records pulling brought in lately, per app and kind, read from the raw events (each
pulled batch is one, with its record count), so every process sees every clock's work."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.jsms.pulled import KINDS
from app.store.models import RawEvent, Source

RATE_SPAN = timedelta(minutes=1)


def pulled_lately(session: Session, now: datetime) -> dict[tuple[str, str], int]:
    """(app_key, kind) → records pulled in the minute up to `now`; pairs with none are absent.
    A range of `ix_raw_events_received_at`: one minute of raw events."""
    kind_of = {kind.record_type: str(kind) for kind in KINDS}
    rows = session.execute(
        select(RawEvent.app_key, RawEvent.type, func.sum(RawEvent.records))
        .where(RawEvent.received_at > now - RATE_SPAN, RawEvent.source == Source.PULL)
        .group_by(RawEvent.app_key, RawEvent.type)
    )
    return {
        (app_key, kind_of[type_]): int(records or 0)
        for app_key, type_, records in rows
        if type_ in kind_of
    }
