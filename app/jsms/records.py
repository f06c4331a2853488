"""Parse JSMS receipt payloads (callback `data` or a pulled batch) into typed records.

Pure functions over plain data. Anything that cannot become a record is returned as a
`Rejected` item with the reason, never raised and never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from app.jsms.codes import DELIVERED

SMS_REPORT = "SMS_REPORT"
SMS_REPLY = "SMS_REPLY"
SMS_TEMPLATE = "SMS_TEMPLATE"
SMS_SIGN = "SMS_SIGN"
KNOWN_TYPES = (SMS_REPORT, SMS_REPLY, SMS_TEMPLATE, SMS_SIGN)

CHINA_TIME = timezone(timedelta(hours=8))
# Epoch values above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_MILLIS_THRESHOLD = 100_000_000_000
_INTEGER = re.compile(r"-?[0-9]{1,20}")


class InvalidField(ValueError):
    """A field is missing or of a shape we cannot store."""


@dataclass(frozen=True, slots=True)
class Report:
    """A delivery-status report for one message to one phone."""

    msg_id: str
    phone: str
    status: int
    received_at: datetime

    @property
    def delivered(self) -> bool:
        return self.status == DELIVERED


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
    """The records a payload held, and the items it held that are not records."""

    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def parse_payload(record_type: str, data: Any) -> ParsedBatch:
    """Normalize `data` (one object or a list of them) of the given JSMS type."""
    items = data if isinstance(data, list) else [data]
    batch = ParsedBatch()
    parser = _PARSERS.get(record_type)
    for index, item in enumerate(items):
        if parser is None:
            batch.rejected.append(Rejected(index, item, f"unknown type {record_type[:64]!r}"))
            continue
        if not isinstance(item, dict):
            batch.rejected.append(Rejected(index, item, f"expected an object, got {_kind(item)}"))
            continue
        try:
            batch.records.append(parser(item))
        except InvalidField as exc:
            batch.rejected.append(Rejected(index, item, str(exc)))
    return batch


def parse_time(value: Any) -> datetime:
    """An aware UTC datetime from epoch s, epoch ms, or `yyyy-MM-dd HH:mm:ss` (UTC+8)."""
    if isinstance(value, bool):
        raise InvalidField(f"time {value!r} is not a timestamp")
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            return parse_time(int(text))
        for layout in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f"):
            try:
                return datetime.strptime(text, layout).replace(tzinfo=CHINA_TIME).astimezone(UTC)
            except ValueError:
                pass
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidField(f"time {text[:40]!r} is not a known format") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=CHINA_TIME)
        return parsed.astimezone(UTC)
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) >= _MILLIS_THRESHOLD else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidField(f"time {value!r} is out of range") from None
    raise InvalidField(f"time is {_kind(value)}, not a timestamp")


def _parse_report(item: dict[str, Any]) -> Report:
    return Report(
        msg_id=_identifier(item, "msgId", 64),
        phone=_identifier(item, "phone", 32),
        status=_integer(item, "status"),
        received_at=parse_time(_required(item, "receiveTime")),
    )


def _parse_reply(item: dict[str, Any]) -> ReplyMessage:
    content = _required(item, "content")
    if not isinstance(content, str):
        raise InvalidField(f"content is {_kind(content)}, not a string")
    _storable("content", content)
    known = {"phone", "content", "replyTime"}
    return ReplyMessage(
        phone=_identifier(item, "phone", 32),
        content=content,
        replied_at=parse_time(_required(item, "replyTime")),
        extra={k: v for k, v in item.items() if k not in known},
    )


def _review_parser(review_type: str, id_field: str) -> Callable[[dict[str, Any]], Review]:
    def parse(item: dict[str, Any]) -> Review:
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
            extra={k: v for k, v in item.items() if k not in known},
        )

    return parse


_PARSERS: dict[str, Callable[[dict[str, Any]], Record]] = {
    SMS_REPORT: _parse_report,
    SMS_REPLY: _parse_reply,
    SMS_TEMPLATE: _review_parser("template", "tempId"),
    SMS_SIGN: _review_parser("sign", "signId"),
}


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
