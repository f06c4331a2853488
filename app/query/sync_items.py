"""The sync state of every app and kind, as the API shows it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.jsms.codes import explain
from app.jsms.pulled import KINDS
from app.query.items import iso_utc
from app.store.models import SyncMode, SyncState, utcnow
from app.store.pull_rate import pulled_lately
from app.store.seen import last_callbacks


def sync_items(
    session: Session,
    configured_apps: Iterable[str],
    now: datetime | None = None,
    window: float = 5.0,
) -> list[dict[str, Any]]:
    """Every stored row, plus a never-attempted `pull` row for each configured app and kind
    that has none yet; sorted by app and kind. Ages (the lag) and the records pulled in the
    last minute are as of `now`; `window` is the upstream's (JSMS_RATE_LIMIT_SECONDS)."""
    configured = set(configured_apps)
    now = now or utcnow()
    states = session.scalars(select(SyncState)).all()
    items = {
        (s.app_key, s.kind): {
            **_state_item(s, s.app_key in configured),
            **s.lag(now),
            "catching_up": s.catching_up(window),
        }
        for s in states
    }
    for app_key in configured:
        for kind in KINDS:
            items.setdefault((app_key, kind), _never_attempted(app_key, kind))
    seen = last_callbacks(session, {app_key for app_key, _ in items})
    lately = pulled_lately(session, now)
    for key, item in items.items():
        item["last_callback_at"] = iso_utc(seen.get(key))
        item["records_pulled_last_minute"] = lately.get(key, 0)
    return [items[key] for key in sorted(items)]


def _state_item(state: SyncState, configured: bool) -> dict[str, Any]:
    code = state.last_error_code
    return {
        "app_key": state.app_key,
        "kind": state.kind,
        "mode": state.mode,
        "configured": configured,
        "last_attempt_at": iso_utc(state.last_attempt_at),
        "last_success_at": iso_utc(state.last_success_at),
        "last_error_code": code,
        "last_error_message": state.last_error_message,
        **_explained(code, state.app_key),
        "next_attempt_at": iso_utc(state.next_attempt_at),
        "consecutive_failures": state.consecutive_failures,
        "records_pulled": state.records_pulled,
        "newest_record_at": iso_utc(state.newest_record_at),
    }


def _never_attempted(app_key: str, kind: str) -> dict[str, Any]:
    return {
        "app_key": app_key,
        "kind": kind,
        "mode": SyncMode.PULL,
        "configured": True,
        "last_attempt_at": None,
        "last_success_at": None,
        "last_error_code": None,
        "last_error_message": None,
        "last_error_text": None,
        "last_error_fix": None,
        "next_attempt_at": None,
        "consecutive_failures": 0,
        "records_pulled": 0,
        "newest_record_at": None,
        "newest_record_age_seconds": None,
        "last_success_age_seconds": None,
        "catching_up": False,
    }


def _explained(code: int | None, app_key: str) -> dict[str, str | None]:
    """The last error code's meaning and fix (None for both when there is none, or unknown)."""
    known = explain(code, app_key)
    return {
        "last_error_text": known.meaning if known else None,
        "last_error_fix": known.fix if known else None,
    }
