"""`jsms resume`: after a person fixed what paused an app, pull it now instead of in an hour.

A paused app, one backing off, or one in callback mode is looked at again only at its
`next_attempt_at`. Resuming clears that wait (and the pause): the clock's dispatcher reads the
sync state on every tick, so it starts a pass at its next tick (within a second), and the pass
sets the state from what the upstream answers then.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.jsms.pulled import Kind
from app.store.models import SyncMode, SyncState


@dataclass(frozen=True, slots=True)
class Resumed:
    """What resuming one app and kind changed: `was` is why it waited (None: it was not)."""

    app_key: str
    kind: str
    was: str | None
    until: datetime | None = None
    last_error: str | None = None

    def describe(self) -> str:
        """One line for people."""
        if self.was is None:
            return f"{self.app_key} {self.kind}: not held back; nothing to resume"
        line = f"{self.app_key} {self.kind}: was {self.was}"
        if self.until is not None:
            line += f" until {self.until:%Y-%m-%d %H:%M:%S} UTC"
        if self.last_error:
            line += f" (last error {self.last_error})"
        return line + "; resumed: the next pass pulls now"


def holding(state: SyncState, now: datetime) -> str | None:
    """Why the clock waits for this kind's next attempt (`paused`, `callback`, `backing off`),
    or None when it is due or only idle between polls (resuming changes nothing then)."""
    if state.next_attempt_at is None or state.next_attempt_at <= now:
        return None
    if state.mode == SyncMode.PULL:
        return "backing off" if state.consecutive_failures else None
    return "callback mode" if state.mode == SyncMode.CALLBACK else str(state.mode)


def resume(session: Session, app_key: str, kinds: Iterable[Kind], now: datetime) -> list[Resumed]:
    """Make each kind due now and in pull mode (in the caller's transaction); the error it last
    met stays on record until a pull succeeds."""
    done = []
    for kind in kinds:
        state = session.get(SyncState, (app_key, str(kind)))
        if state is None:
            done.append(Resumed(app_key, kind, None))
            continue
        was = holding(state, now)
        error = None
        if state.last_error_code or state.last_error_message:
            error = f"{state.last_error_code or '-'}: {state.last_error_message}"
        done.append(Resumed(app_key, kind, was, state.next_attempt_at if was else None, error))
        if was is not None:
            state.mode = SyncMode.PULL
            state.consecutive_failures = 0
            state.next_attempt_at = None
    return done
