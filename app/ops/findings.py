"""What `jsms doctor` reports: one finding per check."""

from __future__ import annotations

from dataclasses import dataclass

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: what was checked, how it went, and the fix when it did not."""

    check: str
    status: str  # ok | warn | FAIL
    detail: str
    fix: str = ""
