"""Receipt times as JSMS and the carriers behind it write them, read into aware UTC datetimes.

Pure: no clock is read here except where a caller leaves `now` out. The accepted forms are the
ones in docs/jsms-protocol.md ("Times"); a time without a zone is China time (UTC+8).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

CHINA_TIME = timezone(timedelta(hours=8))
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Outside this window a time is a misreading (a compact date taken for an epoch, a zero, a
# clock far ahead), and a later time wins a report's row: such a record must not be stored.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
AHEAD = timedelta(hours=24)
# Epoch values above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_MILLIS_THRESHOLD = 100_000_000_000
_NUMBER = re.compile(r"-?[0-9]{1,20}(?:\.[0-9]{1,9})?")
# yyyyMMddHHmmss: as an epoch in ms it would be the 26th century, so it is always a date.
_COMPACT = re.compile(r"(?:19|20)[0-9]{12}")
# Java's Date.toString(): `Fri Apr 14 14:19:01 CST 2017`.
_JAVA = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) ([0-9]{1,2}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) (\S{1,12}) ([0-9]{4})"
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
# Java prints the JVM's zone; on a JSMS (China) host CST is China Standard Time, not US Central.
_ZONES: dict[str, tzinfo] = {"CST": CHINA_TIME, "HKT": CHINA_TIME, "UTC": UTC, "GMT": UTC}
_GMT_OFFSET = re.compile(r"GMT([+-])([0-9]{2}):?([0-9]{2})")


class InvalidTime(ValueError):
    """A time field that is not a time we can read, or not a plausible one."""


def parse_receipt_time(value: Any) -> datetime:
    """An aware UTC datetime from any accepted form (see the module docstring); else InvalidTime.

    Numbers and numeric strings are epoch seconds, or milliseconds from 1e11 up (`1.5e12`,
    `"1492150740292"`, `"1492150740292.0"`); 14 digits starting 19/20 are `yyyyMMddHHmmss`.
    """
    if isinstance(value, bool):
        raise InvalidTime(f"time {value!r} is not a timestamp")
    if isinstance(value, int | float):
        return _from_epoch(value)
    if isinstance(value, str):
        return _from_text(value.strip())
    raise InvalidTime(f"time is {type(value).__name__}, not a timestamp")


def plausible(moment: datetime, now: datetime) -> datetime:
    """`moment` when it lies between 2000-01-01Z and 24 h after `now`; else InvalidTime."""
    if moment < EARLIEST or moment > now + AHEAD:
        raise InvalidTime(
            f"implausible time {moment.isoformat()} (before 2000-01-01Z or more than 24 h "
            "after the server's clock)"
        )
    return moment


def _from_epoch(number: int | float) -> datetime:
    shown = _show(number)
    if isinstance(number, float) and not math.isfinite(number):
        raise InvalidTime(f"time {shown} is not a number")
    try:
        if abs(number) >= _MILLIS_THRESHOLD:
            return EPOCH + timedelta(milliseconds=number)
        return EPOCH + timedelta(seconds=number)
    except (OverflowError, ValueError):
        raise InvalidTime(f"time {shown} is out of range") from None


def _from_text(text: str) -> datetime:
    if _COMPACT.fullmatch(text):
        return _china(_strptime(text, "%Y%m%d%H%M%S"))
    if _NUMBER.fullmatch(text):
        return _from_epoch(float(text) if "." in text else int(text))
    java = _JAVA.fullmatch(text)
    if java:
        return _from_java(java)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidTime(f"time {_show(text)} is not a known format") from None
    return _china(parsed) if parsed.tzinfo is None else _utc(parsed)


def _from_java(match: re.Match[str]) -> datetime:
    month_name, day, hour, minute, second, zone_name, year = match.groups()
    month = _MONTHS.get(month_name)
    zone = _zone(zone_name)
    if month is None or zone is None:
        raise InvalidTime(f"time {_show(match.string)} has an unknown month or time zone")
    try:
        moment = datetime(
            int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=zone
        )
    except ValueError:
        raise InvalidTime(f"time {_show(match.string)} is not a calendar date") from None
    return _utc(moment)


def _zone(name: str) -> tzinfo | None:
    if name in _ZONES:
        return _ZONES[name]
    offset = _GMT_OFFSET.fullmatch(name)
    if offset is None:
        return None
    sign, hours, minutes = offset.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(-delta if sign == "-" else delta) if delta < timedelta(hours=24) else None


def _strptime(text: str, layout: str) -> datetime:
    try:
        return datetime.strptime(text, layout)
    except ValueError:
        raise InvalidTime(f"time {_show(text)} is not a calendar date") from None


def _china(naive: datetime) -> datetime:
    return _utc(naive.replace(tzinfo=CHINA_TIME))


def _utc(aware: datetime) -> datetime:
    """The same instant in UTC; a time at the calendar's edge cannot be moved (OverflowError)."""
    try:
        return aware.astimezone(UTC)
    except OverflowError:
        raise InvalidTime(f"time {aware.isoformat()} is out of range") from None


def _show(value: object) -> str:
    """A value for a reason line: short, whatever it was."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
