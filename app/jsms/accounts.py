"""What `GET /v1/accounts/app` answers: how many messages an app can still send, by kind.

Pure: the REST client (`client.py`) turns the answer's JSON into a `Balance`; nothing here
knows HTTP or the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The answer's fields, and the short name each has in the API, the metrics and the page:
# all kinds, voice, industry (notifications, codes) and marketing messages.
BALANCE_FIELDS: dict[str, str] = {
    "app_balance": "balance",
    "app_voice": "voice",
    "app_industry": "industry",
    "app_market": "market",
}
BALANCE_KINDS: tuple[str, ...] = tuple(BALANCE_FIELDS.values())
# A count beyond this is not a balance (and would not fit the store's BIGINT).
_MAX_COUNT = 2**62


class NotABalance(ValueError):
    """A 200 answer that is not the balance shape."""


@dataclass(frozen=True, slots=True)
class Balance:
    """One app's balance as read: None for a field the answer left out (fastjson drops nulls)."""

    balance: int | None = None
    voice: int | None = None
    industry: int | None = None
    market: int | None = None

    def by_kind(self) -> dict[str, int | None]:
        """{kind: count} in BALANCE_KINDS order."""
        return {kind: getattr(self, kind) for kind in BALANCE_KINDS}


def parse_balance(data: Any) -> Balance:
    """The balance in a decoded answer; `NotABalance` when it is not a JSON object whose known
    fields are whole numbers (a numeric string counts; unknown fields are ignored)."""
    if not isinstance(data, dict):
        raise NotABalance(f"expected a JSON object, got {type(data).__name__}")
    if not any(field in data for field in BALANCE_FIELDS):
        raise NotABalance("none of " + ", ".join(BALANCE_FIELDS) + " in the answer")
    counts = {kind: _count(field, data.get(field)) for field, kind in BALANCE_FIELDS.items()}
    return Balance(**counts)


def _count(field: str, value: Any) -> int | None:
    if value is None:
        return None
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if isinstance(value, str) and value.strip().isascii() and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > _MAX_COUNT:
        raise NotABalance(f"{field} is not a whole number")
    return value
