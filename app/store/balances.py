"""The balance history (`app_balances`): what the clock read, and what the API, the status page
and `/metrics` read back. Writes happen in the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.jsms.accounts import Balance
from app.store.models import AppBalance

OK = "ok"


def record_balance(session: Session, app_key: str, balance: Balance, read_at: datetime) -> None:
    """Keep one successful read."""
    session.add(
        AppBalance(
            app_key=app_key,
            read_at=read_at,
            result=OK,
            app_balance=balance.balance,
            app_voice=balance.voice,
            app_industry=balance.industry,
            app_market=balance.market,
        )
    )


def record_error(
    session: Session, app_key: str, result: str, code: int | None, message: str, at: datetime
) -> None:
    """Keep one failed read: `result` is the JSMS code as text, or `unavailable`."""
    session.add(
        AppBalance(
            app_key=app_key,
            read_at=at,
            result=result[:16],
            error_code=code,
            error_message=message[:1000],
        )
    )


def last_reads(session: Session, app_keys: Iterable[str]) -> dict[str, datetime]:
    """When each app's balance was last read (successfully or not); apps never read are absent.
    One index descent per app (a GROUP BY would read every app's whole history)."""
    last = {}
    for app_key in app_keys:
        at = session.scalar(
            select(func.max(AppBalance.read_at)).where(AppBalance.app_key == app_key)
        )
        if at is not None:
            last[app_key] = at
    return last


def due_apps(session: Session, app_keys: Sequence[str], now: datetime, every: float) -> list[str]:
    """The apps whose balance was never read, or last read `every` seconds ago or more; those
    never read first, then the longest unread, so a slow round still reaches every app."""
    last = last_reads(session, app_keys)
    cutoff = now - timedelta(seconds=every)
    due = [key for key in app_keys if key not in last or last[key] <= cutoff]
    return sorted(due, key=lambda key: (key in last, last.get(key, now)))


def latest(session: Session, app_key: str) -> tuple[AppBalance | None, AppBalance | None]:
    """The app's newest read of any result, and its newest successful one."""
    newest = session.scalars(
        select(AppBalance)
        .where(AppBalance.app_key == app_key)
        .order_by(AppBalance.read_at.desc(), AppBalance.id.desc())
        .limit(1)
    ).first()
    if newest is None or newest.result == OK:
        return newest, newest
    good = session.scalars(
        select(AppBalance)
        .where(AppBalance.app_key == app_key, AppBalance.result == OK)
        .order_by(AppBalance.read_at.desc(), AppBalance.id.desc())
        .limit(1)
    ).first()
    return newest, good


def reads_since(session: Session, app_key: str, since: datetime) -> list[AppBalance]:
    """The app's successful reads from `since` on, oldest first, plus the last one before it
    (the consumption of the first interval starts there)."""
    before = session.scalars(
        select(AppBalance)
        .where(AppBalance.app_key == app_key, AppBalance.result == OK, AppBalance.read_at < since)
        .order_by(AppBalance.read_at.desc(), AppBalance.id.desc())
        .limit(1)
    ).all()
    after = session.scalars(
        select(AppBalance)
        .where(AppBalance.app_key == app_key, AppBalance.result == OK, AppBalance.read_at >= since)
        .order_by(AppBalance.read_at, AppBalance.id)
    ).all()
    return [*before, *after]
