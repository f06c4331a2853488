"""Receipt times: every form docs/jsms-protocol.md lists, China time where no zone is given,
and plausibility."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.jsms.records import parse_payload
from app.jsms.times import InvalidTime, parse_receipt_time
from tests.strategies import MOMENTS, TIME_FORMATS, TIME_PRECISION

# 2017-04-14 14:19:01 in China is 06:19:01 UTC.
APRIL = datetime(2017, 4, 14, 6, 19, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1492150741392, APRIL + timedelta(milliseconds=392)),  # epoch ms, a number
        (1492150741, APRIL),  # epoch s
        (1492150741.5, APRIL + timedelta(milliseconds=500)),
        ("1492150741392", APRIL + timedelta(milliseconds=392)),  # numeric strings
        ("1492150741", APRIL),
        ("1492150740292.0", APRIL - timedelta(milliseconds=708)),  # a Java double printed
        (1492150740292.0, APRIL - timedelta(milliseconds=708)),
        ("2017-04-14 14:19:01", APRIL),  # China time
        ("2017-04-14 14:19:01.392", APRIL + timedelta(milliseconds=392)),
        ("20170414141901", APRIL),  # compact, China time: not an epoch (that is the year 2609)
        ("2017-04-14T14:19:01+08:00", APRIL),  # ISO 8601 with an offset
        ("2017-04-14T06:19:01Z", APRIL),
        ("2017-04-14T01:19:01-05:00", APRIL),
        ("2017-04-14T14:19:01", APRIL),  # ISO 8601 without an offset: China time
        ("Fri Apr 14 14:19:01 CST 2017", APRIL),  # Java Date.toString(), CST = UTC+8
        ("Fri Apr 14 06:19:01 UTC 2017", APRIL),
        ("Fri Apr 14 14:19:01 GMT+08:00 2017", APRIL),
        (" 2017-04-14 14:19:01 ", APRIL),
    ],
)
def test_every_documented_form_is_read(value: object, expected: datetime) -> None:
    parsed = parse_receipt_time(value)
    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59-05:00",  # astimezone overflows: the lost batch
        "0001-01-01 00:00:00",  # China time before year 1 in UTC
        "0001-01-01T00:00:00+01:00",
        float("nan"),
        float("inf"),
        10**30,
        -(10**30),
        1e308,
        "20171399999999",  # compact, but no calendar has that day
        "Fri Apr 14 14:19:01 EST 2017",  # a zone name we cannot pin down
        "Fri Foo 14 14:19:01 CST 2017",
        "Fri Feb 31 14:19:01 CST 2017",
        "",
        "1.2.3",
        True,
        None,
        [1492150741],
        {"t": 1},
    ],
)
def test_what_is_not_a_time_is_refused_with_a_reason(value: object) -> None:
    with pytest.raises(InvalidTime):
        parse_receipt_time(value)


def report_at(receive_time: object) -> dict[str, object]:
    return {"msgId": "m1", "phone": "13800138000", "status": 4001, "receiveTime": receive_time}


@pytest.mark.parametrize(
    "receive_time",
    [
        0,  # 1970
        "0",
        946_684_799_999,  # one millisecond before 2000-01-01Z
        "1999-12-31 23:59:59",  # 15:59:59Z
        int((NOW + timedelta(days=30)).timestamp() * 1000),  # a month ahead
        (NOW + timedelta(hours=24, seconds=1)).isoformat(),
        "9999-12-31T23:59:59Z",
    ],
)
def test_an_implausible_time_is_quarantined_never_stored(receive_time: object) -> None:
    batch = parse_payload("SMS_REPORT", [report_at(receive_time), report_at(1492150741392)], NOW)
    assert len(batch.records) == 1
    [rejected] = batch.rejected
    assert rejected.index == 0 and "implausible time" in rejected.reason


@pytest.mark.parametrize(
    "receive_time",
    [
        946_684_800_000,  # 2000-01-01T00:00:00Z exactly
        int((NOW + timedelta(hours=23)).timestamp()),
        (NOW + timedelta(hours=24)).isoformat(),
    ],
)
def test_the_edges_of_the_window_are_plausible(receive_time: object) -> None:
    assert len(parse_payload("SMS_REPORT", report_at(receive_time), NOW).records) == 1


def test_replies_are_held_to_the_same_window() -> None:
    reply = {"phone": "13800138000", "content": "TD", "replyTime": 0}
    [rejected] = parse_payload("SMS_REPLY", reply, NOW).rejected
    assert rejected.reason.startswith("replyTime: implausible time")


@settings(max_examples=200, deadline=None)
@given(moment=MOMENTS, form=st.sampled_from(sorted(TIME_FORMATS)))
def test_any_time_written_in_any_form_reads_back(moment: datetime, form: str) -> None:
    unit = 10 ** (6 - TIME_PRECISION.get(form, 0))
    expected = moment.replace(microsecond=moment.microsecond // unit * unit)
    assert parse_receipt_time(TIME_FORMATS[form](moment)) == expected


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_any_string_is_a_time_or_a_reason(text: str) -> None:
    try:
        parsed = parse_receipt_time(text)
    except InvalidTime as exc:
        assert str(exc) and len(str(exc)) < 200
    else:
        assert parsed.tzinfo is UTC
