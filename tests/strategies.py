"""Hypothesis strategies built from the JSMS wire schema (/work/shared/JSMS.md): records of each
type and the callback forms that carry them.

A record strategy is a `fixed_dictionaries` over every field its parser reads, each value drawn
from what JSMS sends (well-formed) or from anything JSON can hold (hostile), so a property
reaches each field's checks; some records miss fields, some carry fields we do not model.
Forms carry `signature`, `nonce` and `timestamp`, either correctly signed or not.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from hypothesis import strategies as st

from app.jsms.signature import sign

# Text including NUL and lone surrogates, which databases refuse to store as they are.
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30) | st.sampled_from(
    ["a\x00b", "\ud800", "x\udfffy", "", " "]
)
# Any JSON value (as json.loads returns them).
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
# What a form field can carry: bytes on the wire, so no lone surrogates (but NUL, yes).
FIELD = st.text(max_size=30) | st.sampled_from(["a\x00b", "\x00", " "])

# Field values as JSMS sends them.
IDENTIFIER = st.integers(min_value=0, max_value=2**63) | st.text(min_size=1, max_size=70)
PHONE = st.from_regex(r"\A1[3-9][0-9]{9}\Z") | IDENTIFIER
STATUS = (
    st.sampled_from([4001, 4002, 4003, 4004, 4006, 4010, 4100, 1, 2])
    | st.integers(min_value=-(2**32), max_value=2**32)
    | st.integers(min_value=-(2**31), max_value=2**31 - 1).map(str)
)
EPOCH_MS = st.integers(min_value=0, max_value=4_102_444_800_000)  # up to 2100
TIME = (
    EPOCH_MS
    | EPOCH_MS.map(lambda ms: ms // 1000)
    | EPOCH_MS.map(str)
    | st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S"))
    | st.datetimes().map(lambda d: d.isoformat())
)
CONTENT = TEXT


def _field(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's value: as JSMS sends it (two times in three), else any JSON at all."""
    return st.one_of(plausible, plausible, JSON)


# Every field each parser reads (app/jsms/records.py), with what JSMS puts in it.
SCHEMA: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "SMS_REPORT": {"msgId": IDENTIFIER, "phone": PHONE, "status": STATUS, "receiveTime": TIME},
    "SMS_REPLY": {"phone": PHONE, "content": CONTENT, "replyTime": TIME},
    "SMS_TEMPLATE": {"tempId": IDENTIFIER, "status": STATUS, "refuseReason": TEXT | st.none()},
    "SMS_SIGN": {"signId": IDENTIFIER, "status": STATUS, "refuseReason": TEXT | st.none()},
}
RECORD_TYPES = tuple(SCHEMA)
# Types a receiver must also survive: unknown, near misses, empty, control characters.
OTHER_TYPES = st.sampled_from(["SMS_REPORT_V2", "sms_report", "SMS_", "SMS_\x00X"]) | FIELD


def record(record_type: str) -> st.SearchStrategy[dict[str, Any]]:
    """One item of `record_type`: every field its parser reads (any value), sometimes fewer,
    sometimes with fields we do not model."""
    fields = {name: _field(value) for name, value in SCHEMA[record_type].items()}
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
    form = {
        "nonce": nonce,
        "timestamp": timestamp,
        "signature": sign(app_key, secret, nonce, timestamp),
        "type": record_type,
        "data": json.dumps(data),
    }
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
