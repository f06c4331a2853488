"""Doctor's line for one app: its stored sync state and what the probe met, with the fix."""

from __future__ import annotations

from datetime import datetime

from app.jsms.client import JsmsApiError
from app.jsms.codes import explain
from app.ops.findings import FAIL, OK, WARN, Finding
from app.ops.probe import ProbeResult
from app.pull.resume import holding
from app.pull.state import PULL_NOT_ALLOWED, PULL_OUT_OF_FREQUENCY
from app.store.models import SyncState

# What doctor says about a batch it was handed: it is gone upstream, so it was kept here.
HANDED_OUT_ONCE = "stored: JSMS hands each record out once"


def app_finding(found: ProbeResult, states: dict[str, SyncState], now: datetime) -> Finding:
    """How the app is doing: the probe's answer, and any kind the clock is holding back
    (paused, backing off, or in callback mode) although the probe says it could pull."""
    name = f"app {found.app_key}"
    if found.busy:
        return Finding(name, OK, "another puller (the clock) is pulling it right now")
    if found.spooled is not None:
        return Finding(
            name,
            FAIL,
            f"the probe was handed {found.items} record(s) the database would not take: "
            f"kept in {found.spooled}",
            "run: flask --app wsgi jsms reprocess",
        )
    if found.error is not None:
        return _probe_failed(name, found)
    held = held_back(states, now)
    pulled = f"{found.items} record(s) pulled and {HANDED_OUT_ONCE}" if found.items else ""
    if held:
        detail = "; ".join(held) + "; the probe pulls fine now" + (f" ({pulled})" if pulled else "")
        return Finding(name, FAIL, detail, f"run: jsms resume {found.app_key}")
    return Finding(name, OK, "pull mode" + (f", {pulled}" if pulled else ""))


def held_back(states: dict[str, SyncState], now: datetime) -> list[str]:
    """`report paused until 09:00 UTC (50002 …)` for each kind that waits for its next
    attempt for a reason other than the idle schedule."""
    held = []
    for kind, state in sorted(states.items()):
        why = holding(state, now)
        if why is None or state.next_attempt_at is None:
            continue
        line = f"{kind} {why} until {state.next_attempt_at:%Y-%m-%d %H:%M} UTC"
        if state.last_error_code or state.last_error_message:
            line += f" (last error {state.last_error_code or '-'}: {state.last_error_message})"
        held.append(line)
    return held


def _probe_failed(name: str, found: ProbeResult) -> Finding:
    """The probe's call was refused or got no answer: what it means and what to do."""
    error = found.error
    if not isinstance(error, JsmsApiError):
        return Finding(
            name,
            FAIL,
            f"the probe got no answer: {error}",
            "check the upstream's status and JSMS_API_BASE_URL; the clock backs off and retries",
        )
    known = explain(error.code, found.app_key)
    said = f"JSMS said {error.message!r}, HTTP {error.http_status}"
    if known is None:
        detail = f"the probe was refused with {error.code} ({said})"
        return Finding(name, FAIL, detail, "look the code up in JSMS's REST API error table")
    if error.code == PULL_NOT_ALLOWED:
        return Finding(name, OK, f"{known.meaning} ({error.code})")
    status = WARN if error.code == PULL_OUT_OF_FREQUENCY else FAIL
    detail = f"the probe was refused with {error.code}: {known.meaning} ({said})"
    return Finding(name, status, detail, known.fix)
