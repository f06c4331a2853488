"""Parsing and normalizing JSMS payloads: pure functions, no server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.jsms import records
from app.jsms.records import (
    ReplyMessage,
    Report,
    Review,
    parse_payload,
    parse_receipt_time,
)
from app.jsms.times import InvalidTime
from tests.strategies import VALID, mixed_items

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
FIELD_VALUES = st.none() | st.booleans() | st.integers() | st.floats() | st.text() | JSON


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1575015093000, datetime(2019, 11, 29, 8, 11, 33, tzinfo=UTC)),
        (1575015093, datetime(2019, 11, 29, 8, 11, 33, tzinfo=UTC)),
        (1575015093.5, datetime(2019, 11, 29, 8, 11, 33, 500000, tzinfo=UTC)),
        ("1575015093000", datetime(2019, 11, 29, 8, 11, 33, tzinfo=UTC)),
        (" 2019-11-29 16:11:33 ", datetime(2019, 11, 29, 8, 11, 33, tzinfo=UTC)),
        ("2019-11-29T08:11:33Z", datetime(2019, 11, 29, 8, 11, 33, tzinfo=UTC)),
    ],
)
def test_parse_receipt_time_accepts_documented_forms(value: object, expected: datetime) -> None:
    assert parse_receipt_time(value) == expected


@pytest.mark.parametrize("value", [True, None, "yesterday", [], "2019-13-45 99:00:00", 10**30])
def test_parse_receipt_time_rejects_others(value: object) -> None:
    with pytest.raises(InvalidTime):
        parse_receipt_time(value)


def test_report_fields_are_normalized() -> None:
    batch = parse_payload(
        "SMS_REPORT",
        {
            "msgId": 88235123435,
            "phone": 18612345577,
            "status": "4001",
            "receiveTime": 1575015093000,
        },
    )
    assert batch.rejected == []
    assert batch.records == [
        Report("88235123435", "18612345577", 4001, datetime(2019, 11, 29, 8, 11, 33, tzinfo=UTC))
    ]
    assert batch.records[0].delivered  # type: ignore[union-attr]


def test_report_keeps_unknown_fields() -> None:
    item = {"msgId": "m", "phone": "1", "status": 4001, "receiveTime": 1575015093, "x": [1]}
    [report] = parse_payload("SMS_REPORT", [item]).records
    assert isinstance(report, Report) and report.extra == {"x": [1]}


def test_reply_keeps_unknown_fields() -> None:
    batch = parse_payload(
        "SMS_REPLY", [{"phone": "1", "content": "", "replyTime": 1575015093, "x": [1]}]
    )
    [reply] = batch.records
    assert isinstance(reply, ReplyMessage) and reply.extra == {"x": [1]} and reply.content == ""


def test_reviews() -> None:
    batch = parse_payload("SMS_SIGN", {"signId": 5, "status": 2, "refuseReason": "no"})
    assert batch.records == [Review("sign", "5", 2, "no", {})]


def test_a_template_review_reads_tempid_and_keeps_unknown_fields() -> None:
    item = {"tempId": " 7 ", "status": "1", "refuseReason": "too long", "extra": [1], "x": None}
    batch = parse_payload("SMS_TEMPLATE", [item, {"tempId": 8, "status": 0}])
    assert batch.records == [
        Review("template", "7", 1, "too long", {"extra": [1], "x": None}),
        Review("template", "8", 0, None, {}),
    ]


@pytest.mark.parametrize(
    ("record_type", "item", "reason"),
    [
        ("SMS_SIGN", {"tempId": 5, "status": 1}, "signId is missing"),
        ("SMS_TEMPLATE", {"signId": 5, "status": 1}, "tempId is missing"),
        ("SMS_TEMPLATE", {"tempId": "x" * 65, "status": 1}, "tempId must be 1 to 64 characters"),
        ("SMS_SIGN", {"signId": 5}, "status is missing"),
        (
            "SMS_SIGN",
            {"signId": 5, "status": 1, "refuseReason": 3},
            "refuseReason is int, not a string",
        ),
        (
            "SMS_TEMPLATE",
            {"tempId": 5, "status": 1, "refuseReason": ["no"]},
            "refuseReason is a list, not a string",
        ),
        (
            "SMS_SIGN",
            {"signId": 5, "status": 1, "refuseReason": "a\x00b"},
            "refuseReason contains a NUL character",
        ),
        (
            "SMS_SIGN",
            {"signId": 5, "status": 1, "refuseReason": "\ud800"},
            "refuseReason is not valid Unicode",
        ),
    ],
)
def test_bad_review_items_are_rejected_with_their_reason(
    record_type: str, item: dict, reason: str
) -> None:
    batch = parse_payload(record_type, [item])
    assert batch.records == [] and [r.reason for r in batch.rejected] == [reason]


def test_a_review_with_a_64_character_id_is_read() -> None:
    [review] = parse_payload("SMS_SIGN", {"signId": "s" * 64, "status": 1}).records
    assert review == Review("sign", "s" * 64, 1, None, {})


@pytest.mark.parametrize(
    ("item", "kind"),
    [
        ({}, "an object"),
        ([], "a list"),
        ("x", "a string"),
        (True, "a boolean"),
        (None, "null"),
        (1.5, "float"),
        (7, "int"),
    ],
)
def test_fields_of_the_wrong_type_are_named_in_the_reason(item: object, kind: str) -> None:
    """The type names in reasons (what a person reads in the quarantine)."""
    reasons = [r.reason for r in parse_payload("SMS_REPORT", [item, {"msgId": item}]).rejected]
    if not isinstance(item, dict):
        assert reasons[0] == f"expected an object, got {kind}"
    if kind not in {"a string", "int", "null"}:  # those are identifiers, or missing
        assert reasons[-1] == f"msgId is {kind}, not a string"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ValueError("boom"), "unexpected ValueError: boom"),
        (KeyError(), "unexpected KeyError"),
        (ValueError("x" * 500), "unexpected ValueError: " + "x" * 120),
    ],
)
def test_an_unforeseen_error_in_one_record_is_its_reason(
    monkeypatch: pytest.MonkeyPatch, error: Exception, reason: str
) -> None:
    def broken(item: dict, now: datetime) -> None:
        if item.get("broken"):
            raise error

    monkeypatch.setitem(records._PARSERS, "SMS_NEW", broken)
    batch = parse_payload("SMS_NEW", [{"broken": True}, {}])
    assert [(r.index, r.item, r.reason) for r in batch.rejected] == [(0, {"broken": True}, reason)]
    assert batch.records == [None]


def test_extra_fields_are_encoded_sorted_readable_and_storable() -> None:
    assert records.encode_extra({}) is None
    assert records.encode_extra({"b": [1, None], "a": "é"}) == '{"a": "é", "b": [1, null]}'
    # A lone surrogate cannot be stored as UTF-8: escaped instead.
    assert records.encode_extra({"b": 1, "a": "é\ud800"}) == '{"a": "\\u00e9\\ud800", "b": 1}'


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"phone": "1", "status": 4001, "receiveTime": 1}, "msgId is missing"),
        ({"msgId": "1", "phone": "1", "status": True, "receiveTime": 1}, "status is a boolean"),
        ({"msgId": {}, "phone": "1", "status": 1, "receiveTime": 1}, "msgId is an object"),
        ({"msgId": "1", "phone": "1", "status": 1, "receiveTime": "soon"}, "not a known format"),
        ({"msgId": "x" * 65, "phone": "1", "status": 1, "receiveTime": 1}, "1 to 64"),
        ({"msgId": "1", "phone": "1", "status": 2**40, "receiveTime": 1}, "out of range"),
        ({"msgId": "1\x00", "phone": "1", "status": 1, "receiveTime": 1}, "msgId contains a NUL"),
        ({"msgId": "1", "phone": "\ud800", "status": 1, "receiveTime": 1}, "phone is not valid"),
    ],
)
def test_bad_report_items_are_rejected_with_a_reason(item: dict, reason: str) -> None:
    batch = parse_payload("SMS_REPORT", [item])
    assert batch.records == []
    assert reason in batch.rejected[0].reason
    assert batch.rejected[0].item == item


def test_unknown_type_rejects_every_item() -> None:
    batch = parse_payload("SMS_NEW", [{"a": 1}, {"b": 2}])
    assert [r.index for r in batch.rejected] == [0, 1]
    assert all("unknown type" in r.reason for r in batch.rejected)
    long = parse_payload("X" * 100, [1, {}])
    assert [(r.index, r.item, r.reason) for r in long.rejected] == [
        (0, 1, f"unknown type {'X' * 64!r}"),
        (1, {}, f"unknown type {'X' * 64!r}"),
    ]
    assert parse_payload("SMS_REPORT", [[1]]).rejected[0].item == [1]


def test_times_are_judged_against_the_clock_given() -> None:
    """A time more than 24 h after the `now` passed in is implausible, whatever the real clock
    says; without `now`, the real clock (an aware one) is the judge."""
    item = {"msgId": "1", "phone": "1" * 32, "status": 1, "receiveTime": 1575015093000}
    then = datetime(2019, 11, 27, tzinfo=UTC)  # two days before the receive time
    [rejected] = parse_payload("SMS_REPORT", item, then).rejected
    assert rejected.reason.startswith("receiveTime: implausible time 2019-11-29T08:11:33")
    assert len(parse_payload("SMS_REPORT", item).records) == 1
    assert (
        "phone must be 1 to 32"
        in parse_payload("SMS_REPORT", item | {"phone": "1" * 33}).rejected[0].reason
    )


def test_exactly_the_allowed_number_of_items_is_read() -> None:
    batch = parse_payload("SMS_REPORT", [{}] * 1000, max_items=1000)
    assert (batch.unread, len(batch.rejected)) == (0, 1000)


@given(
    record_type=st.sampled_from(["SMS_REPORT", "SMS_REPLY", "SMS_TEMPLATE", "SMS_SIGN", "X"]),
    data=JSON,
)
def test_any_json_gives_records_or_reasons_never_an_exception(
    record_type: str, data: object
) -> None:
    batch = parse_payload(record_type, data)
    items = data if isinstance(data, list) else [data]
    assert len(batch.records) + len(batch.rejected) == len(items)


@given(
    st.fixed_dictionaries(
        {
            "msgId": FIELD_VALUES,
            "phone": FIELD_VALUES,
            "status": FIELD_VALUES,
            "receiveTime": FIELD_VALUES,
        }
    )
)
def test_any_report_shape_is_a_record_or_a_reason(item: dict) -> None:
    batch = parse_payload("SMS_REPORT", item)
    assert len(batch.records) + len(batch.rejected) == 1
    for record in batch.records:
        assert isinstance(record, Report) and record.received_at.tzinfo is UTC


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_records_whose_fields_hold_anything_are_read_or_rejected_never_raised(
    data: st.DataObject,
) -> None:
    record_type = data.draw(st.sampled_from(sorted(VALID)), "type")
    tagged = data.draw(mixed_items(record_type, max_size=10), "items")
    batch = parse_payload(record_type, [item for _, item in tagged])
    assert batch.items == len(tagged) and batch.unread == 0
    assert [r.index for r in batch.rejected] == sorted({r.index for r in batch.rejected})
    valid = sum(1 for is_valid, _ in tagged if is_valid)
    assert len(batch.records) >= valid
    for rejected in batch.rejected:
        assert rejected.reason and len(rejected.reason) < 300


def test_a_batch_that_cannot_be_read_is_kept_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise MemoryError

    monkeypatch.setattr(records, "_parse_items", broken)
    batch = parse_payload("SMS_REPORT", [{"a": 1}, {"b": 2}])
    assert (batch.records, batch.rejected, batch.unread) == ([], [], 2)
    assert batch.reasons() == "the batch could not be read: MemoryError"


def test_more_items_than_allowed_are_kept_whole_and_unread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(records._PARSERS, "SMS_REPORT", lambda item, now: pytest.fail("read"))
    batch = parse_payload("SMS_REPORT", [{}] * 1001, max_items=1000)
    assert (batch.unread, batch.quarantined, batch.items) == (1001, 1001, 1001)
    assert batch.reasons() == "1001 items, more than 1000 in one payload: kept raw, unread"


def test_quarantine_reasons_are_bounded() -> None:
    batch = parse_payload("SMS_REPORT", ["x" * 10_000] * 500)
    lines = (batch.reasons() or "").splitlines()
    assert len(lines) == 21 and lines[-1] == "… and 480 more"
    assert lines[0] == "#0: expected an object, got a string"


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"phone": "1", "content": 5, "replyTime": 1}, "content is int, not a string"),
        ({"phone": "1", "content": "a\x00", "replyTime": 1}, "content contains a NUL character"),
        ({"phone": "1" * 33, "content": "", "replyTime": 1}, "phone must be 1 to 32 characters"),
    ],
)
def test_bad_reply_items_are_rejected_with_their_reason(item: dict, reason: str) -> None:
    batch = parse_payload("SMS_REPLY", [item])
    assert batch.records == [] and [r.reason for r in batch.rejected] == [reason]


def test_a_reply_whose_extra_fields_cannot_be_encoded_is_rejected_not_stored() -> None:
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    item = {"phone": "1" * 32, "content": "", "replyTime": 1575015093, "deep": deep}
    batch = parse_payload("SMS_REPLY", [item])
    assert batch.records == [] and batch.rejected[0].reason.startswith("unexpected RecursionError")


def test_reasons_are_cut_at_200_characters_and_counted_with_the_unread_reason() -> None:
    long = records.ParsedBatch(rejected=[records.Rejected(0, None, "x" * 300)])
    assert long.reasons() == "#0: " + "x" * 200
    exactly = records.ParsedBatch(rejected=[records.Rejected(i, None, "r") for i in range(20)])
    assert len((exactly.reasons() or "").splitlines()) == 20  # 20 reasons: all shown
    one_over = records.ParsedBatch(
        rejected=[records.Rejected(i, None, "r") for i in range(20)], unread_reason="unread"
    )
    lines = (one_over.reasons() or "").splitlines()
    assert (len(lines), lines[0], lines[-1]) == (21, "unread", "… and 1 more")


@pytest.mark.parametrize(
    ("status", "stored"),
    [(-(2**31), True), (2**31 - 1, True), (-(2**31) - 1, False), (2**31, False)],
)
def test_status_codes_are_32_bit_integers(status: int, stored: bool) -> None:
    item = {"msgId": "1", "phone": "1", "status": str(status), "receiveTime": 1575015093}
    batch = parse_payload("SMS_REPORT", [item])
    if stored:
        assert [r.status for r in batch.records] == [status]  # type: ignore[union-attr]
    else:
        assert [r.reason for r in batch.rejected] == [f"status {status} is out of range"]
