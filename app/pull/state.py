"""How each upstream answer changes an app's sync state: mode, errors, next attempt.

Pure functions over a `SyncState` row and a time; `app/sync.py` calls them and commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tenacity import RetryCallState, Retrying, wait_random_exponential

from app.config import Settings
from app.jsms.client import JsmsApiError, UpstreamUnavailable
from app.jsms.codes import ERROR_TEXT
from app.store.models import SyncState

PULL, CALLBACK, PAUSED = "pull", "callback", "paused"
# Answers that mean "a person must change something": stop pulling, look again rarely.
PAUSING_CODES = frozenset({50001, 50002, 50008, 50016, 50018, 50301})
PULL_OUT_OF_FREQUENCY = 50201
PULL_NOT_ALLOWED = 50202


@dataclass(frozen=True, slots=True)
class SyncPolicy:
    """The puller's timings, in seconds."""

    window: float = 5.0  # the upstream's per-app window (JSMS_RATE_LIMIT_SECONDS)
    lease_ttl: float = 60.0  # a dead holder's lease is free after this
    idle_poll: float = 60.0  # after draining, the clock looks again this much later
    callback_reprobe: float = 3600.0  # an app in callback mode is probed again this much later
    paused_retry: float = 3600.0  # a paused app (auth, frozen, …) is retried this much later
    backoff_max: float = 900.0  # the longest backoff after server errors and timeouts

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: float) -> SyncPolicy:
        """The policy for the configured upstream window."""
        values = {
            "window": settings.jsms_rate_limit_seconds,
            "lease_ttl": settings.pull_lease_seconds,
            **overrides,
        }
        return cls(**values)

    @property
    def call_margin(self) -> float:
        """Slack added to the window between two calls, against clock skew between hosts."""
        return min(0.1, max(0.002, self.window * 0.01))


def new_state(app_key: str, kind: str) -> SyncState:
    """The state of an app and kind never pulled before."""
    return SyncState(
        app_key=app_key, kind=kind, mode=PULL, consecutive_failures=0, records_pulled=0
    )


def is_due(state: SyncState | None, now: datetime, *, on_schedule: bool) -> bool:
    """Whether a pass may call the upstream now.

    Callback mode, paused and backoff always wait for `next_attempt_at`. A healthy app's
    `next_attempt_at` is only the clock's polling schedule, which a manual pass does not wait for.
    """
    if state is None or state.next_attempt_at is None:
        return True
    if state.mode != PULL or state.consecutive_failures > 0 or on_schedule:
        return state.next_attempt_at <= now
    return True


def record_attempt(state: SyncState, now: datetime) -> None:
    """A call is about to be made."""
    state.last_attempt_at = now


def record_batch(
    state: SyncState, items: int, more: bool, now: datetime, policy: SyncPolicy
) -> None:
    """A batch arrived and is being stored: the app pulls, and is healthy."""
    state.mode = PULL
    state.last_success_at = now
    state.consecutive_failures = 0
    state.records_pulled = (state.records_pulled or 0) + items
    state.next_attempt_at = now + timedelta(seconds=policy.window if more else policy.idle_poll)


def record_failure(
    state: SyncState, error: JsmsApiError | UpstreamUnavailable, now: datetime, policy: SyncPolicy
) -> None:
    """The upstream refused or could not answer: set the mode and when to look again."""
    code = error.code if isinstance(error, JsmsApiError) else None
    state.last_error_code = code
    state.last_error_message = _message(error)[:1000]
    state.last_error_at = now
    if code == PULL_OUT_OF_FREQUENCY:
        # Someone else called within the window (we never do): just wait it out.
        state.next_attempt_at = now + timedelta(seconds=policy.window)
        return
    if code == PULL_NOT_ALLOWED:
        state.mode = CALLBACK
        state.consecutive_failures = 0
        state.next_attempt_at = now + timedelta(seconds=policy.callback_reprobe)
        return
    if code in PAUSING_CODES or (
        isinstance(error, JsmsApiError) and error.http_status < 500 and code != 50019
    ):
        state.mode = PAUSED
        state.consecutive_failures += 1
        state.next_attempt_at = now + timedelta(seconds=policy.paused_retry)
        return
    state.mode = PULL
    state.consecutive_failures += 1
    delay = backoff_seconds(state.consecutive_failures, policy)
    state.next_attempt_at = now + timedelta(seconds=delay)


def backoff_seconds(failures: int, policy: SyncPolicy) -> float:
    """Full-jitter exponential backoff: a random wait in [window, window·2^(failures-1)], capped."""
    wait = wait_random_exponential(
        multiplier=policy.window, min=policy.window, max=policy.backoff_max
    )
    retry_state = RetryCallState(Retrying(), None, (), {})
    retry_state.attempt_number = max(1, failures)
    return float(wait(retry_state))


def _message(error: JsmsApiError | UpstreamUnavailable) -> str:
    if isinstance(error, JsmsApiError):
        known = ERROR_TEXT.get(error.code)
        suffix = f" ({known})" if known and known.lower() != error.message.lower() else ""
        return f"{error.message}{suffix} [HTTP {error.http_status}]"
    return error.message
