"""Hypothesis strategies for JSMS records: valid ones in every form JSMS.md lists, and records
whose every field the parser reads holds an arbitrary JSON value."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from app.jsms.times import CHINA_TIME


def millis(t: datetime) -> int:
    """Epoch milliseconds, exactly (no float rounding)."""
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


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

# --- anything at all -----------------------------------------------------------------------
# Text including NUL and lone surrogates (JSON can carry both; databases refuse them).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
NUMBERS = (
    st.integers()
    | st.integers(min_value=-(10**300), max_value=10**300)
    | st.floats()  # NaN and ±Infinity too: Python's json reads and writes them
    | st.sampled_from([0, -1, 1e308, -1e308, 5e-324, 2**63, 2**64 + 1, 1e-7])
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
JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | ANY_TEXT | ODD_TIMES,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(ANY_TEXT, children, max_size=3)
    ),
    max_leaves=8,
)
ANY_TIME = st.one_of(ODD_TIMES, ODD_TIMES, TIMES, NUMBERS, JSON)
# The fields each parser reads, and the ones that are times.
FIELDS = {
    "SMS_REPORT": ("msgId", "phone", "status", "receiveTime"),
    "SMS_REPLY": ("phone", "content", "replyTime", "extra"),
    "SMS_TEMPLATE": ("tempId", "status", "refuseReason", "extra"),
    "SMS_SIGN": ("signId", "status", "refuseReason", "extra"),
}
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
