"""The pull lease: at most one puller per app, and the upstream's rate window, in the database.

Both are enforced with conditional UPDATEs, atomic on SQLite (one writer at a time) and on
PostgreSQL (a row lock, with the WHERE clause re-checked after waiting for it), so several
`clock` processes and a `jsms sync` beside them can never call one app within its window.

Every function here writes inside the caller's transaction; the puller owns each unit of work.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session

from app.store.db import insert_on_conflict
from app.store.models import PullLease


def new_holder_id() -> str:
    """A name for this puller that is unique across hosts and processes, and readable."""
    # The suffix starts with a letter: eight hex digits that happen to be all digits would
    # look like a phone number to the log mask (app/logs.py) and be masked.
    suffix = "abcdef"[uuid.uuid4().int % 6] + uuid.uuid4().hex[:7]
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{suffix}"


@dataclass(frozen=True, slots=True)
class CallSlot:
    """The answer to "may I call the upstream for this app now?"."""

    granted: bool
    lease_lost: bool = False
    not_before: datetime | None = None  # when the window allows the next call


def acquire(session: Session, app_key: str, holder: str, now: datetime, ttl: float) -> bool:
    """Take the app's lease if it is free, expired, or already ours (in the caller's
    transaction)."""
    session.execute(
        insert_on_conflict(session, PullLease).values(app_key=app_key).on_conflict_do_nothing()
    )
    taken = _execute(
        session,
        update(PullLease)
        .where(
            PullLease.app_key == app_key,
            or_(
                PullLease.holder.is_(None),
                PullLease.holder == holder,
                PullLease.expires_at <= now,
            ),
        )
        .values(holder=holder, expires_at=now + timedelta(seconds=ttl)),
    )
    return taken == 1


def claim_call(
    session: Session, app_key: str, holder: str, now: datetime, window: float, ttl: float
) -> CallSlot:
    """Record a call at `now` if we hold the lease and the window has passed; renews the lease.

    The caller adds its own writes to this transaction and commits it before calling upstream,
    so the call is on record before it is made (a crash mid-call still respects the window).
    """
    claimed = _execute(
        session,
        update(PullLease)
        .where(
            PullLease.app_key == app_key,
            PullLease.holder == holder,
            or_(
                PullLease.last_call_at.is_(None),
                PullLease.last_call_at <= now - timedelta(seconds=window),
            ),
        )
        .values(last_call_at=now, expires_at=now + timedelta(seconds=ttl)),
    )
    if claimed == 1:
        return CallSlot(granted=True)
    row = session.execute(
        select(PullLease.holder, PullLease.last_call_at).where(PullLease.app_key == app_key)
    ).one_or_none()
    if row is None or row.holder != holder:
        return CallSlot(granted=False, lease_lost=True)
    return CallSlot(granted=False, not_before=row.last_call_at + timedelta(seconds=window))


def record_answer(session: Session, app_key: str, holder: str, answered_at: datetime) -> None:
    """Move `last_call_at` to when the call's answer arrived (the caller commits).

    The upstream saw the call somewhere between sending and answering; counting the window from
    the answer keeps the next holder's first call clear of it whatever the latency was.
    """
    session.execute(
        update(PullLease)
        .where(PullLease.app_key == app_key, PullLease.holder == holder)
        .values(last_call_at=answered_at)
    )


def release(session: Session, app_key: str, holder: str) -> None:
    """Give the lease back (keeping `last_call_at`, which the next holder must respect)."""
    session.execute(
        update(PullLease)
        .where(PullLease.app_key == app_key, PullLease.holder == holder)
        .values(holder=None, expires_at=None)
    )


def _execute(session: Session, statement: object) -> int:
    """Run an UPDATE and return how many rows it changed."""
    result = session.execute(statement)  # type: ignore[call-overload]
    assert isinstance(result, CursorResult)
    return result.rowcount
