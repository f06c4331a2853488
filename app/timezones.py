"""Time zones by IANA name, and local calendar arithmetic over them. Pure: no Flask, no database.

`zoneinfo` reads the `tzdata` package when the host has no tz database (slim images), so the
same names work everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

# Names zoneinfo accepts that do not say where a business is: the host's own zone.
_NOT_A_PLACE = frozenset({"localtime"})


class UnknownTimezone(ValueError):
    """The name is not an IANA time zone this service knows."""


@cache
def _known_names() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_A_PLACE


def zone_named(name: str) -> ZoneInfo:
    """The zone called `name` (exactly as the tz database spells it, e.g. `Asia/Shanghai`)."""
    if name not in _known_names():
        raise UnknownTimezone(f"unknown IANA time zone {name!r} (e.g. Asia/Shanghai, UTC)")
    return ZoneInfo(name)


def bucket_start(instant: datetime, zone: ZoneInfo, bucket: str) -> datetime:
    """The first instant of the local `day` or `hour` that `instant` falls in, as UTC.

    A local midnight a DST change skips starts its day at the change; an hour that a DST change
    repeats is two buckets (one per offset), so a 25-hour day has 25 hour buckets.
    """
    local = instant.astimezone(zone)
    if bucket == "hour":
        return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)  # keeps `fold`
    return datetime.combine(local.date(), time(0), tzinfo=zone).astimezone(UTC)


def offset_periods(zone: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """From `start` to `end` (UTC), each instant the zone's UTC offset changes and the offset
    (seconds) from then on; the first entry is `start` itself. Exact to the second, found by
    stepping a day at a time (zones change offset at most twice a year) and bisecting."""
    periods = [(start, _offset(zone, start))]
    step = timedelta(days=1)
    probe = start
    while probe < end:
        following = min(probe + step, end)
        if _offset(zone, following) != periods[-1][1]:
            change = _first_change(zone, probe, following)
            periods.append((change, _offset(zone, change)))
        probe = following
    return periods


def _offset(zone: ZoneInfo, instant: datetime) -> int:
    offset = instant.astimezone(zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _first_change(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first second in (before, after] with another offset than `before`'s."""
    old = _offset(zone, before)
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) / 2
        middle = middle.replace(microsecond=0)
        if middle <= before:
            middle = before + timedelta(seconds=1)
        if _offset(zone, middle) == old:
            before = middle
        else:
            after = middle
    return after
