"""Hypothesis strategies for what JSMS sends (docs/jsms-protocol.md): times in every form, valid
records, records whose fields hold anything, and callback forms signed or not.

The concrete payloads tests write by hand (`signed_form`, `report`) are in tests/wire.py, which
signs every form, these strategies' too. They are two modules because bench/ builds callbacks
with tests/wire.py where Hypothesis is not installed; everything drawn is here.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from app.jsms.times import CHINA_TIME
from tests.wire import signed_form


def millis(t: datetime) -> int:
    """Epoch milliseconds, exactly (no float rounding)."""
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


# --- times ---------------------------------------------------------------------------------
# Each time form JSMS or a carrier writes; a form keeps only the digits it can write.
TIME_FORMATS: dict[str, Callable[[datetime], object]] = {
    "epoch ms": millis,
    "epoch s": lambda t: millis(t) // 1000,
    "epoch ms string": lambda t: str(millis(t)),
    "epoch ms .0": lambda t: f"{millis(t)}.0",
    "china": lambda t: t.astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M:%S"),
    "china ms": lambda t: t.astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
    "compact": lambda t: t.astimezone(CHINA_TIME).strftime("%Y%m%d%H%M%S"),
    "iso offset": lambda t: t.astimezone(CHINA_TIME).isoformat(),
    "iso z": lambda t: t.isoformat().replace("+00:00", "Z"),
    "iso naive": lambda t: t.astimezone(CHINA_TIME).replace(tzinfo=None).isoformat(),
    "java": lambda t: t.astimezone(CHINA_TIME).strftime("%a %b %d %H:%M:%S CST %Y"),
}
# Decimal digits of the second each form keeps (0 when absent).
TIME_PRECISION = {"epoch ms": 3, "epoch ms string": 3, "epoch ms .0": 3, "china ms": 3}
TIME_PRECISION |= {"iso offset": 6, "iso z": 6, "iso naive": 6}

# Plausible moments: after 2000-01-01Z, before the server's clock.
MOMENTS = st.datetimes(
    min_value=datetime(2000, 1, 2),
    max_value=datetime.now() - timedelta(days=1),
    timezones=st.just(UTC),
)
TIMES = st.builds(
    lambda t, form: TIME_FORMATS[form](t), MOMENTS, st.sampled_from(list(TIME_FORMATS))
)
ODD_TIMES = st.sampled_from(
    [
        "9999-12-31T23:59:59-05:00",  # moving it to UTC overflows
        "0001-01-01T00:00:00+05:00",
        "0001-01-01 00:00:00",
        "9999-12-31 23:59:59.999",
        "20170414141901",  # compact: 2017, not the year 2609
        "20171399999999",
        "26090101000000",
        "1492150740292.0",
        "Fri Apr 14 14:19:01 CST 2017",
        "Fri Apr 14 14:19:01 XYZ 2017",
        "Sat Feb 30 14:19:01 CST 2017",
        "0",
        "-1",
        "",
        " ",
        "NaN",
        "1e400",
        "99999999999999999999",
    ]
)

# --- anything at all -----------------------------------------------------------------------
# Text including NUL and lone surrogates (JSON can carry both; databases refuse them).
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30) | st.sampled_from(
    ["a\x00b", "\ud800", "x\udfffy", "", " "]
)
NUMBERS = (
    st.integers()
    | st.integers(min_value=-(10**300), max_value=10**300)
    | st.floats()  # NaN and ±Infinity too: Python's json reads and writes them
    | st.sampled_from([0, -1, 1e308, -1e308, 5e-324, 2**63, 2**64 + 1, 1e-7])
)
# Any JSON value (as Python's json.loads returns them).
JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | TEXT | ODD_TIMES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
ANY_TIME = st.one_of(ODD_TIMES, ODD_TIMES, TIMES, NUMBERS, JSON)
# What a form field can carry: bytes on the wire, so no lone surrogates (but NUL, yes).
FIELD = st.text(max_size=30) | st.sampled_from(["a\x00b", "\x00", " "])

# --- valid records -------------------------------------------------------------------------
STORABLE_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
IDS = st.from_regex(r"[0-9A-Za-z]{1,20}", fullmatch=True) | st.integers(0, 10**18)
PHONES = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True) | st.integers(13000000000, 19999999999)
CODES = st.integers(4001, 4100)
VALID: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "SMS_REPORT": st.fixed_dictionaries(
        {"msgId": IDS, "phone": PHONES, "status": CODES | CODES.map(str), "receiveTime": TIMES}
    ),
    "SMS_REPLY": st.fixed_dictionaries(
        {"phone": PHONES, "content": STORABLE_TEXT, "replyTime": TIMES},
        optional={"msgId": IDS},
    ),
    "SMS_TEMPLATE": st.fixed_dictionaries(
        {"tempId": IDS, "status": st.sampled_from([1, 2])},
        optional={"refuseReason": st.none() | STORABLE_TEXT},
    ),
    "SMS_SIGN": st.fixed_dictionaries(
        {"signId": IDS, "status": st.sampled_from([1, 2])},
        optional={"refuseReason": st.none() | STORABLE_TEXT},
    ),
}

# --- what JSMS may send, valid or not: wider than VALID's values ---------------------------
SENT_ID = st.integers(min_value=0, max_value=2**63) | st.text(min_size=1, max_size=70)
SENT_PHONE = st.from_regex(r"\A1[3-9][0-9]{9}\Z") | SENT_ID
SENT_STATUS = (
    st.sampled_from([4001, 4002, 4003, 4004, 4006, 4010, 4100, 1, 2])
    | st.integers(min_value=-(2**32), max_value=2**32)
    | st.integers(min_value=-(2**31), max_value=2**31 - 1).map(str)
)
EPOCH_MS = st.integers(min_value=0, max_value=4_102_444_800_000)  # up to 2100
SENT_TIME = (
    EPOCH_MS
    | EPOCH_MS.map(lambda ms: ms // 1000)
    | EPOCH_MS.map(str)
    | st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S"))
    | st.datetimes().map(lambda d: d.isoformat())
)
# Every field each parser reads (app/jsms/records.py), with what JSMS puts in it.
SCHEMA: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "SMS_REPORT": {
        "msgId": SENT_ID, "phone": SENT_PHONE, "status": SENT_STATUS, "receiveTime": SENT_TIME,
    },
    "SMS_REPLY": {"phone": SENT_PHONE, "content": TEXT, "replyTime": SENT_TIME},
    "SMS_TEMPLATE": {"tempId": SENT_ID, "status": SENT_STATUS, "refuseReason": TEXT | st.none()},
    "SMS_SIGN": {"signId": SENT_ID, "status": SENT_STATUS, "refuseReason": TEXT | st.none()},
}  # fmt: skip
RECORD_TYPES = tuple(SCHEMA)
# Types a receiver must also survive: unknown, near misses, empty, control characters.
OTHER_TYPES = st.sampled_from(["SMS_REPORT_V2", "sms_report", "SMS_", "SMS_\x00X"]) | FIELD
# The fields each parser reads, plus one it keeps as an extra field; and the ones that are times.
FIELDS = {t: (*SCHEMA[t], *(("extra",) if t != "SMS_REPORT" else ())) for t in RECORD_TYPES}
TIME_FIELDS = {"receiveTime", "replyTime"}


@st.composite
def corrupted(draw: st.DrawFn, record_type: str) -> dict[str, Any]:
    """A valid record with one or two of its fields holding any JSON value instead (so the
    parser gets past the first field and meets the odd one wherever it is)."""
    item = dict(draw(VALID[record_type]))
    for name in draw(st.sets(st.sampled_from(FIELDS[record_type]), min_size=1, max_size=2)):
        item[name] = draw(ANY_TIME if name in TIME_FIELDS else JSON)
    return item


# Records of each type: every field the parser reads holding any JSON value, or a valid
# record with one or two fields replaced.
ANY_RECORD: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    record_type: st.fixed_dictionaries(
        {name: ANY_TIME if name in TIME_FIELDS else JSON for name in fields}
    )
    | corrupted(record_type)
    for record_type, fields in FIELDS.items()
}


def mixed_items(record_type: str, max_size: int = 6) -> st.SearchStrategy[list[tuple[bool, Any]]]:
    """A list of (valid?, item): valid records of `record_type`, records of any type whose fields
    hold anything, and items that are not objects at all."""
    junk = st.sampled_from(list(ANY_RECORD)).flatmap(lambda t: ANY_RECORD[t]) | JSON
    return st.lists(
        VALID[record_type].map(lambda item: (True, item)) | junk.map(lambda item: (False, item)),
        max_size=max_size,
    )


def record(record_type: str) -> st.SearchStrategy[dict[str, Any]]:
    """One item of `record_type`: every field its parser reads, each as JSMS sends it (two
    times in three) or any JSON, sometimes fewer fields, sometimes fields we do not model."""
    fields = {name: st.one_of(sent, sent, JSON) for name, sent in SCHEMA[record_type].items()}
    extras = st.dictionaries(TEXT, JSON, max_size=2)
    complete = st.fixed_dictionaries(fields)
    partial = st.fixed_dictionaries({}, optional=fields)
    return st.builds(lambda item, extra: {**extra, **item}, complete | complete | partial, extras)


def payload(record_type: str) -> st.SearchStrategy[Any]:
    """A callback's `data` of that type: one record or a list of them (rarely, anything)."""
    one = record(record_type)
    return st.one_of(one, st.lists(one, max_size=4), one, st.lists(one, max_size=4), JSON)


@st.composite
def typed_payloads(draw: st.DrawFn) -> tuple[str, Any]:
    """(type, data): mostly a known type with its records, sometimes another type."""
    if draw(st.integers(0, 9)) == 0:
        return draw(OTHER_TYPES), draw(JSON | record(draw(st.sampled_from(RECORD_TYPES))))
    record_type = draw(st.sampled_from(RECORD_TYPES))
    return record_type, draw(payload(record_type))


# --- callback forms ------------------------------------------------------------------------
NONCE = st.integers(min_value=0, max_value=2**63).map(str) | FIELD.filter(bool)
TIMESTAMP = EPOCH_MS.map(str) | FIELD.filter(bool)
_NONCES = itertools.count(int(time.time() * 1000) % 10**12)


@st.composite
def signed_forms(draw: st.DrawFn, app_key: str, secret: str) -> tuple[dict[str, str], str, Any]:
    """(form, type, data): a callback form correctly signed for the app, fresh (a nonce not used
    before, a timestamp near now), carrying `typed_payloads()`."""
    record_type, data = draw(typed_payloads())
    # A signature is good once and only near now (replay protection): each form its own nonce
    # (a Java long may be negative), and a timestamp within the accepted window.
    nonce = str(next(_NONCES) * draw(st.sampled_from([1, -1])))
    timestamp = str(int(time.time() * 1000) + draw(st.integers(-3_000_000, 3_000_000)))
    form = signed_form(
        app_key, secret, record_type, json.dumps(data), nonce=nonce, timestamp=timestamp
    )
    return form, record_type, data


@st.composite
def unsigned_forms(draw: st.DrawFn) -> dict[str, str]:
    """A form with the callback's fields (signature, nonce, timestamp, type, data) whose
    signature cannot match: any values, some fields missing, sometimes extra fields."""
    record_type, data = draw(typed_payloads())
    fields = {
        "signature": FIELD | st.text("0123456789abcdef", min_size=40, max_size=40),
        "nonce": NONCE,
        "timestamp": TIMESTAMP,
        "type": st.just(record_type) | FIELD,
        "data": st.just(json.dumps(data)) | FIELD,
    }
    form = draw(st.fixed_dictionaries(fields) | st.fixed_dictionaries({}, optional=fields))
    return {**draw(st.dictionaries(FIELD, FIELD, max_size=2)), **form}
