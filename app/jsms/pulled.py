"""What a pull answer holds: the two kinds of receipt API, a pulled body, and its records.

Pure: the REST client (`client.py`) makes `PulledBatch`es, the puller and `jsms reprocess` turn
bodies into records with `parse_pulled`, with no HTTP and no database here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from app.jsms.records import SMS_REPLY, SMS_REPORT, ParsedBatch, Rejected, parse_payload


class Kind(StrEnum):
    """The two receipt APIs: `GET /v1/report` (delivery reports) and `GET /v1/reply`."""

    REPORT = "report"
    REPLY = "reply"

    @property
    def path(self) -> str:
        """The upstream path pulled for this kind."""
        return f"/v1/{self.value}"

    @property
    def record_type(self) -> str:
        """The callback `type` the records of this kind carry (`SMS_REPORT`, `SMS_REPLY`)."""
        return SMS_REPORT if self is Kind.REPORT else SMS_REPLY


KINDS: tuple[Kind, ...] = tuple(Kind)
# The most records JSMS hands out per call; a batch this size means "there may be more".
MAX_BATCH = 500


@dataclass(frozen=True, slots=True)
class PulledBatch:
    """One successful pull: the body as received and, when it is JSON, what it decoded to.

    `decode_error` is set (and `data` is None) when a 200 body is not JSON: the records in it
    were still handed out, so the caller must keep the body.
    """

    body_text: str
    data: Any
    decode_error: str | None = None

    @classmethod
    def from_body(cls, body: str) -> PulledBatch:
        """A batch from its body as received (e.g. read back from the spool)."""
        data, decode_error = decode_json(body)
        return cls(body, data, decode_error)

    @property
    def item_count(self) -> int:
        """How many items the upstream handed out (0 when the body could not be decoded)."""
        if self.decode_error is not None:
            return 0
        return len(self.data) if isinstance(self.data, list) else 1

    @property
    def is_empty(self) -> bool:
        """Nothing handed out (`[]`, or an empty body): no raw event is kept for it."""
        return self.decode_error is None and self.data == []

    @property
    def is_full(self) -> bool:
        """A full batch: the backlog may hold more, pull again when the window allows."""
        return self.item_count >= MAX_BATCH

    def records(self, kind: Kind, now: datetime | None = None) -> ParsedBatch:
        """Records from this batch; a body that is not JSON becomes one quarantined item.
        `now` is the clock times are judged plausible against (default: the current time)."""
        if self.decode_error is not None:
            return ParsedBatch(rejected=[Rejected(0, self.body_text[:200], self.decode_error)])
        if self.is_empty:
            return ParsedBatch()
        return parse_payload(kind.record_type, self.data, now)


def parse_pulled(kind: Kind, body: str) -> ParsedBatch:
    """Records from a pulled body as it was received (a spooled batch)."""
    return PulledBatch.from_body(body).records(kind)


def decode_json(body: str) -> tuple[Any, str | None]:
    """The JSON a body holds, or None and why it is not JSON.

    A UTF-8 byte order mark before the JSON is skipped; an empty or blank body is an empty
    batch (JSMS answers some calls `200` with `Content-Length: 0`).
    """
    text = body.removeprefix("\ufeff")
    if not text.strip(" \t\r\n"):  # JSON's whitespace only: anything else is kept, quarantined
        return [], None
    try:
        return json.loads(text), None
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than json reads
        return None, f"body is not JSON: {type(exc).__name__}: {str(exc)[:120]}"
