"""Query-string parsing for the API: every parameter validated into typed, immutable filters.

Pure functions over a `MultiDict`. A bad value raises `InvalidParameter` naming the parameter;
the value itself is never echoed (it may be a phone number).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from werkzeug.datastructures import MultiDict

from app.errors import InvalidParameter
from app.query.cursor import decode_cursor
from app.store.models import Source
from app.timezones import UnknownTimezone, zone_named

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_STATUSES = 50
SOURCES = tuple(s.value for s in Source)
FORMATS = ("json", "csv")
# Why a raw event is quarantined: a suspect signature (its records wait for `jsms trust`), or
# records the parser or the store could not take (`jsms reprocess` reads them again).
QUARANTINE_REASONS = ("signature_reused", "signature_time", "records")
BUCKETS = ("hour", "day")
# The longest since..until a stats request may span, per bucket (an open end: no limit here;
# PostgreSQL's statement timeout bounds it).
MAX_STATS_RANGE = {"hour": timedelta(days=31), "day": timedelta(days=366)}
_EPOCH_MS = re.compile(r"[0-9]{1,15}")
# Text filters: anything but C0/C1 control characters (the OpenAPI document says the same).
TEXT_VALUE = re.compile(r"[^\x00-\x1f\x7f-\x9f]*")
# `status`: a comma-separated list of up to MAX_STATUSES codes, spaces allowed around them.
STATUS_LIST = re.compile(rf" *[0-9]{{1,9}} *(?:, *[0-9]{{1,9}} *){{0,{MAX_STATUSES - 1}}}")
# Epoch milliseconds beyond 9999-12-31 cannot be a datetime.
_MAX_EPOCH_MS = 253_402_300_799_999

Args = MultiDict[str, str]


@dataclass(frozen=True, slots=True)
class ReportFilter:
    """What `/reports` narrows to; None means "any"."""

    app_key: str | None = None
    msg_id: str | None = None
    phone: str | None = None
    statuses: tuple[int, ...] | None = None
    delivered: bool | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def fingerprint(self) -> str:
        """A short digest binding a cursor to these filters."""
        return _fingerprint("reports", _values(self))


@dataclass(frozen=True, slots=True)
class ReplyFilter:
    """What `/replies` narrows to; None means "any"."""

    app_key: str | None = None
    phone: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def fingerprint(self) -> str:
        """A short digest binding a cursor to these filters."""
        return _fingerprint("replies", _values(self))


@dataclass(frozen=True, slots=True)
class OptOutFilter:
    """What `/opt-outs` narrows to (`since`/`until` on when the phone opted out); None: any."""

    app_key: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def fingerprint(self) -> str:
        """A short digest binding a cursor to these filters."""
        return _fingerprint("opt-outs", _values(self))


@dataclass(frozen=True, slots=True)
class QuarantineFilter:
    """What `/quarantine` narrows to; None means "any"."""

    app_key: str | None = None
    reason: str | None = None  # one of QUARANTINE_REASONS
    since: datetime | None = None
    until: datetime | None = None

    def fingerprint(self) -> str:
        """A short digest binding a cursor to these filters."""
        return _fingerprint("quarantine", _values(self))


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Where a page starts (after which id), how long it is, the answer's format, and the
    filters' fingerprint its cursors are bound to (computed once a request)."""

    after: int
    limit: int
    format: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """What `/stats/delivery` aggregates, and in which zone's hours and days."""

    app_key: str | None
    since: datetime | None
    until: datetime | None
    bucket: str
    zone: ZoneInfo


_PAGE_PARAMS = frozenset({"limit", "cursor", "format"})
_REPORT_PARAMS = frozenset(
    {"app_key", "msg_id", "phone", "status", "delivered", "source", "since", "until"}
)
_REPLY_PARAMS = frozenset({"app_key", "phone", "since", "until"})
_QUARANTINE_PARAMS = frozenset({"app_key", "reason", "since", "until"})
_OPT_OUT_PARAMS = frozenset({"app_key", "since", "until"})
_STATS_PARAMS = frozenset({"app_key", "since", "until", "bucket", "tz"})


def parse_report_query(
    args: Args, cursor_key: str, wants_csv: bool = False
) -> tuple[ReportFilter, PageRequest]:
    """The filters and page of a `/reports` request."""
    _reject_unknown(args, _REPORT_PARAMS | _PAGE_PARAMS)
    since, until = _time_range(args)
    report_filter = ReportFilter(
        app_key=_text(args, "app_key", 64),
        msg_id=_text(args, "msg_id", 64),
        phone=_text(args, "phone", 32),
        statuses=_statuses(args),
        delivered=_boolean(args, "delivered"),
        source=_choice(args, "source", SOURCES),
        since=since,
        until=until,
    )
    return report_filter, _page(args, report_filter.fingerprint(), cursor_key, wants_csv)


def parse_reply_query(
    args: Args, cursor_key: str, wants_csv: bool = False
) -> tuple[ReplyFilter, PageRequest]:
    """The filters and page of a `/replies` request."""
    _reject_unknown(args, _REPLY_PARAMS | _PAGE_PARAMS)
    since, until = _time_range(args)
    reply_filter = ReplyFilter(
        app_key=_text(args, "app_key", 64),
        phone=_text(args, "phone", 32),
        since=since,
        until=until,
    )
    return reply_filter, _page(args, reply_filter.fingerprint(), cursor_key, wants_csv)


def parse_opt_out_query(
    args: Args, cursor_key: str, wants_csv: bool = False
) -> tuple[OptOutFilter, PageRequest]:
    """The filters and page of a `/opt-outs` request."""
    _reject_unknown(args, _OPT_OUT_PARAMS | _PAGE_PARAMS)
    since, until = _time_range(args)
    opt_out_filter = OptOutFilter(app_key=_text(args, "app_key", 64), since=since, until=until)
    return opt_out_filter, _page(args, opt_out_filter.fingerprint(), cursor_key, wants_csv)


def parse_opt_out_lookup(phone: str, args: Args) -> tuple[str, str]:
    """The app and phone of a `/opt-outs/{phone}` request; `app_key` is required."""
    _reject_unknown(args, frozenset({"app_key"}))
    app_key = _text(args, "app_key", 64)
    if app_key is None:
        raise InvalidParameter("app_key", "required: the app the phone may have opted out of")
    if not phone or len(phone) > 32 or not TEXT_VALUE.fullmatch(phone):
        raise InvalidParameter("phone", "expected 1 to 32 characters, no control ones")
    return app_key, phone


def parse_quarantine_query(
    args: Args, cursor_key: str, wants_csv: bool = False
) -> tuple[QuarantineFilter, PageRequest]:
    """The filters and page of a `/quarantine` request (`since`/`until` on received_at)."""
    _reject_unknown(args, _QUARANTINE_PARAMS | _PAGE_PARAMS)
    since, until = _time_range(args)
    quarantine_filter = QuarantineFilter(
        app_key=_text(args, "app_key", 64),
        reason=_choice(args, "reason", QUARANTINE_REASONS),
        since=since,
        until=until,
    )
    return quarantine_filter, _page(args, quarantine_filter.fingerprint(), cursor_key, wants_csv)


def parse_stats_query(args: Args, default_zone: ZoneInfo) -> StatsQuery:
    """The parameters of a `/stats/delivery` request; `tz` (else `default_zone`) is the zone
    of the buckets and of `since`/`until` given without an offset."""
    _reject_unknown(args, _STATS_PARAMS)
    zone = _zone(args) or default_zone
    since, until = _time_range(args, zone)
    bucket = _choice(args, "bucket", BUCKETS) or "day"
    longest = MAX_STATS_RANGE[bucket]
    if since is not None and until is not None and until - since > longest:
        raise InvalidParameter(
            "since", f"with bucket={bucket} the range may span at most {longest.days} days"
        )
    return StatsQuery(_text(args, "app_key", 64), since, until, bucket, zone)


def reject_any(args: Args) -> None:
    """For endpoints that take no parameters."""
    _reject_unknown(args, frozenset())


def parse_time_parameter(name: str, value: str, zone: tzinfo = UTC) -> datetime:
    """ISO 8601 (a date, or a date-time; no offset means `zone`) or epoch milliseconds, as UTC."""
    if _EPOCH_MS.fullmatch(value):
        millis = int(value)
        if millis > _MAX_EPOCH_MS:
            raise InvalidParameter(name, "epoch milliseconds out of range")
        return datetime.fromtimestamp(millis / 1000, UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidParameter(
            name, "expected ISO 8601 (e.g. 2024-05-01T00:00:00Z) or epoch milliseconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidParameter(name, "time out of range") from None


def _page(args: Args, fingerprint: str, key: str, wants_csv: bool) -> PageRequest:
    fmt = _choice(args, "format", FORMATS) or ("csv" if wants_csv else "json")
    limit_text = _one(args, "limit")
    limit = DEFAULT_LIMIT
    if limit_text is not None:
        if not re.fullmatch(r"[0-9]{1,7}", limit_text):
            raise InvalidParameter("limit", f"expected an integer from 1 to {MAX_LIMIT}")
        limit = int(limit_text)
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidParameter("limit", f"expected an integer from 1 to {MAX_LIMIT}")
    cursor = _one(args, "cursor")
    after = 0 if cursor is None else decode_cursor(cursor, fingerprint, key)
    return PageRequest(after=after, limit=limit, format=fmt, fingerprint=fingerprint)


def _reject_unknown(args: Args, allowed: frozenset[str]) -> None:
    """Unknown parameters are refused: a typo must not silently widen an export."""
    for name in args:
        if name not in allowed:
            shown = name if len(name) <= 40 and name.isprintable() else name[:40] + "…"
            raise InvalidParameter(shown, "unknown parameter")


def _one(args: Args, name: str) -> str | None:
    values = args.getlist(name)
    if len(values) > 1:
        raise InvalidParameter(name, "given more than once")
    return values[0] if values else None


def _text(args: Args, name: str, max_length: int) -> str | None:
    value = _one(args, name)
    if value is None:
        return None
    if not value or len(value) > max_length or not TEXT_VALUE.fullmatch(value):
        raise InvalidParameter(name, f"expected 1 to {max_length} characters, no control ones")
    return value


def _choice(args: Args, name: str, choices: tuple[str, ...]) -> str | None:
    value = _one(args, name)
    if value is not None and value not in choices:
        raise InvalidParameter(name, f"expected one of {', '.join(choices)}")
    return value


def _boolean(args: Args, name: str) -> bool | None:
    value = _choice(args, name, ("true", "false"))
    return None if value is None else value == "true"


def _statuses(args: Args) -> tuple[int, ...] | None:
    value = _one(args, "status")
    if value is None:
        return None
    parts = [p.strip(" ") for p in value.split(",")]
    if not STATUS_LIST.fullmatch(value):
        raise InvalidParameter(
            "status", f"expected a comma-separated list of up to {MAX_STATUSES} status codes"
        )
    return tuple(sorted({int(p) for p in parts}))


def _zone(args: Args) -> ZoneInfo | None:
    name = _text(args, "tz", 64)
    if name is None:
        return None
    try:
        return zone_named(name)
    except UnknownTimezone:
        raise InvalidParameter("tz", "expected an IANA time zone, e.g. Asia/Shanghai") from None


def _time_range(args: Args, zone: tzinfo = UTC) -> tuple[datetime | None, datetime | None]:
    """`since` (inclusive) and `until` (exclusive): the half-open range [since, until); a time
    without an offset is in `zone`."""
    since_text, until_text = _one(args, "since"), _one(args, "until")
    since = None if since_text is None else parse_time_parameter("since", since_text, zone)
    until = None if until_text is None else parse_time_parameter("until", until_text, zone)
    if since is not None and until is not None and until < since:
        raise InvalidParameter("until", "must not be before since")
    return since, until


def _values(
    filters: ReportFilter | ReplyFilter | OptOutFilter | QuarantineFilter,
) -> tuple[object, ...]:
    """The filter's values, shallowly (dataclasses.astuple deep-copies: slow per request)."""
    return tuple(getattr(filters, field.name) for field in fields(filters))


def _fingerprint(kind: str, values: tuple[object, ...]) -> str:
    text = repr((kind, *(v.isoformat() if isinstance(v, datetime) else v for v in values)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
