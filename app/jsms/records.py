"""Parse JSMS receipt payloads (callback `data` or a pulled batch) into typed records.

Pure functions over plain data. Anything that cannot become a record, for any reason (a field of
the wrong shape, an implausible time, an exception nobody foresaw), is returned as a `Rejected`
item with the reason: `parse_payload` never raises and never drops an item.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from app.jsms.codes import DELIVERED
from app.jsms.times import InvalidTime, parse_receipt_time, plausible

SMS_REPORT = "SMS_REPORT"
SMS_REPLY = "SMS_REPLY"
SMS_TEMPLATE = "SMS_TEMPLATE"
SMS_SIGN = "SMS_SIGN"
KNOWN_TYPES = (SMS_REPORT, SMS_REPLY, SMS_TEMPLATE, SMS_SIGN)

# A callback holding more items than this is kept raw and quarantined whole, unread: reading
# 500,000 tiny items costs a worker ~160 MB (JSMS sends one or a few per callback).
MAX_CALLBACK_ITEMS = 1000
# `quarantine_reason` keeps the first this many reasons, then "… and N more".
MAX_REASONS = 20
_INTEGER = re.compile(r"-?[0-9]{1,20}")


class InvalidField(ValueError):
    """A field is missing or of a shape we cannot store."""


@dataclass(frozen=True, slots=True)
class Report:
    """A delivery-status report for one message to one phone; `extra` keeps fields we do not
    model."""

    msg_id: str
    phone: str
    status: int
    received_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def delivered(self) -> bool:
        return self.status == DELIVERED

    @property
    def precedence(self) -> tuple[datetime, bool, int]:
        """Of two reports for one message and phone, the greater is kept: the later one; at the
        same time a delivered one; then the higher code. A total order, so the row kept never
        depends on the order of arrival; equal means an identical repeat."""
        return (self.received_at, self.delivered, self.status)


@dataclass(frozen=True, slots=True)
class ReplyMessage:
    """An uplink SMS a user sent back; `extra` keeps fields we do not model."""

    phone: str
    content: str
    replied_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Review:
    """A template or signature review result."""

    review_type: str  # template | sign
    subject_id: str
    status: int
    refuse_reason: str | None
    extra: dict[str, Any] = field(default_factory=dict)


Record = Report | ReplyMessage | Review


@dataclass(frozen=True, slots=True)
class Rejected:
    """An item that could not be normalized, kept with the reason."""

    index: int
    item: Any
    reason: str


@dataclass(slots=True)
class ParsedBatch:
    """The records a payload held, and the items it held that are not records.

    `unread` items were quarantined whole, without being read one by one (a callback too large
    to read, a batch the parser or the store could not take), for `unread_reason`.
    """

    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    unread: int = 0
    unread_reason: str | None = None

    @classmethod
    def kept_whole(cls, items: int, reason: str) -> ParsedBatch:
        """A batch of `items` items quarantined as a whole, none of them read."""
        return cls(unread=items, unread_reason=reason)

    @property
    def quarantined(self) -> int:
        """How many items are quarantined (rejected one by one, or unread)."""
        return len(self.rejected) + self.unread

    @property
    def items(self) -> int:
        """How many items the payload held: records plus quarantined."""
        return len(self.records) + self.quarantined

    def reasons(self) -> str | None:
        """Why items were quarantined, one line each ("#index: reason"): the first MAX_REASONS
        lines, then "… and N more", so it stays small however many items were refused."""
        lines = [self.unread_reason] if self.unread_reason else []
        lines += [f"#{r.index}: {r.reason[:200]}" for r in self.rejected[:MAX_REASONS]]
        total = len(self.rejected) + (1 if self.unread_reason else 0)
        if total > MAX_REASONS:
            lines = lines[:MAX_REASONS] + [f"… and {total - MAX_REASONS} more"]
        return "\n".join(lines) or None


def parse_payload(
    record_type: str,
    data: Any,
    now: datetime | None = None,
    *,
    max_items: int | None = None,
) -> ParsedBatch:
    """Normalize `data` (one object or a list of them) of the given JSMS type. Never raises.

    `now` is the server's clock for the plausibility of times (default: the current time); more
    than `max_items` items are kept whole, unread.
    """
    items = data if isinstance(data, list) else [data]
    if max_items is not None and len(items) > max_items:
        reason = f"{len(items)} items, more than {max_items} in one payload: kept raw, unread"
        return ParsedBatch.kept_whole(len(items), reason)
    try:
        return _parse_items(record_type, items, now or datetime.now(UTC))
    except Exception as exc:  # whatever went wrong, the items stay in hand, quarantined
        return ParsedBatch.kept_whole(len(items), f"the batch could not be read: {_describe(exc)}")


def _parse_items(record_type: str, items: list[Any], now: datetime) -> ParsedBatch:
    batch = ParsedBatch()
    parser = _PARSERS.get(record_type)
    for index, item in enumerate(items):
        if parser is None:
            batch.rejected.append(Rejected(index, item, f"unknown type {record_type[:64]!r}"))
        elif not isinstance(item, dict):
            batch.rejected.append(Rejected(index, item, f"expected an object, got {_kind(item)}"))
        else:
            parsed = _parse_item(parser, index, item, now)
            if isinstance(parsed, Rejected):
                batch.rejected.append(parsed)
            else:
                batch.records.append(parsed)
    return batch


def _parse_item(
    parser: _Parser, index: int, item: dict[str, Any], now: datetime
) -> Record | Rejected:
    """One record, or why not: no exception, foreseen or not, leaves this function."""
    try:
        return parser(item, now)
    except (InvalidField, InvalidTime) as exc:
        return Rejected(index, item, str(exc))
    except Exception as exc:  # one odd record must never take its neighbours down
        return Rejected(index, item, f"unexpected {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    """An exception as a short reason: its type and the start of its message."""
    message = str(exc)
    return f"{type(exc).__name__}: {message[:120]}" if message else type(exc).__name__


def _parse_report(item: dict[str, Any], now: datetime) -> Report:
    known = {"msgId", "phone", "status", "receiveTime"}
    return Report(
        msg_id=_identifier(item, "msgId", 64),
        phone=_identifier(item, "phone", 32),
        status=_integer(item, "status"),
        received_at=_time(item, "receiveTime", now),
        extra=_extra(item, known),
    )


def _parse_reply(item: dict[str, Any], now: datetime) -> ReplyMessage:
    content = _required(item, "content")
    if not isinstance(content, str):
        raise InvalidField(f"content is {_kind(content)}, not a string")
    _storable("content", content)
    known = {"phone", "content", "replyTime"}
    return ReplyMessage(
        phone=_identifier(item, "phone", 32),
        content=content,
        replied_at=_time(item, "replyTime", now),
        extra=_extra(item, known),
    )


def _parse_review(review_type: str, id_field: str, item: dict[str, Any], now: datetime) -> Review:
    reason = item.get("refuseReason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidField(f"refuseReason is {_kind(reason)}, not a string")
    if reason is not None:
        _storable("refuseReason", reason)
    known = {id_field, "status", "refuseReason"}
    return Review(
        review_type=review_type,
        subject_id=_identifier(item, id_field, 64),
        status=_integer(item, "status"),
        refuse_reason=reason,
        extra=_extra(item, known),
    )


_Parser = Callable[[dict[str, Any], datetime], Record]
_PARSERS: dict[str, _Parser] = {
    SMS_REPORT: _parse_report,
    SMS_REPLY: _parse_reply,
    # Partials, not closures built at import: each review is parsed by a call to _parse_review
    # (mutation testing can only reach code that runs when a test calls it).
    SMS_TEMPLATE: partial(_parse_review, "template", "tempId"),
    SMS_SIGN: partial(_parse_review, "sign", "signId"),
}


def encode_extra(extra: dict[str, Any]) -> str | None:
    """The fields we do not model, as the JSON text the store keeps (None when there are none).

    Raises what `json.dumps` raises (RecursionError for deep nesting): the parser calls it
    first, so a record whose extra fields cannot be encoded is quarantined, not stored.
    """
    if not extra:
        return None
    text = json.dumps(extra, ensure_ascii=False, sort_keys=True)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: escape them instead
        text = json.dumps(extra, sort_keys=True)
    return text


def _extra(item: dict[str, Any], known: set[str]) -> dict[str, Any]:
    extra = {k: v for k, v in item.items() if k not in known}
    encode_extra(extra)  # raises here, inside the record's own try, if it cannot be stored
    return extra


def _time(item: dict[str, Any], name: str, now: datetime) -> datetime:
    try:
        return plausible(parse_receipt_time(_required(item, name)), now)
    except InvalidTime as exc:
        raise InvalidField(f"{name}: {exc}") from None


def _required(item: dict[str, Any], name: str) -> Any:
    value = item.get(name)
    if value is None:
        raise InvalidField(f"{name} is missing")
    return value


def _identifier(item: dict[str, Any], name: str, max_length: int) -> str:
    """A string or integer field as a non-empty string of bounded length."""
    value = _required(item, name)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidField(f"{name} is {_kind(value)}, not a string")
    text = _storable(name, str(value).strip())
    if not text or len(text) > max_length:
        raise InvalidField(f"{name} must be 1 to {max_length} characters")
    return text


def _storable(name: str, text: str) -> str:
    """Refuse text a database cannot hold as is: NUL characters and lone surrogates."""
    if "\x00" in text:
        raise InvalidField(f"{name} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidField(f"{name} is not valid Unicode") from None
    return text


def _integer(item: dict[str, Any], name: str) -> int:
    value = _required(item, name)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(f"{name} is {_kind(value)}, not an integer")
    if not -(2**31) <= value < 2**31:
        raise InvalidField(f"{name} {value} is out of range")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
