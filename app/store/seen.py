"""When each app's last valid (signed) callback of each kind was stored, read from raw_events,
so the answer is right across processes, dynos and restarts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.jsms.pulled import KINDS
from app.store.models import RawEvent, Source


def last_callbacks(session: Session, app_keys: Iterable[str]) -> dict[tuple[str, str], datetime]:
    """(app_key, kind) → when its newest callback was stored, for the apps given and the pulled
    kinds (report, reply); pairs that never got one are absent. One statement; each pair is one
    descent of `ix_raw_events_callback_seen`."""
    pairs = [(app_key, kind) for app_key in sorted(set(app_keys)) for kind in KINDS]
    if not pairs:
        return {}
    newest = [
        select(func.max(RawEvent.received_at))
        .where(
            RawEvent.source == Source.CALLBACK,
            RawEvent.app_key == app_key,
            RawEvent.type == kind.record_type,
        )
        .scalar_subquery()
        for app_key, kind in pairs
    ]
    row = session.execute(select(*newest)).one()
    return {
        (app_key, str(kind)): seen
        for (app_key, kind), seen in zip(pairs, row, strict=True)
        if seen is not None
    }
