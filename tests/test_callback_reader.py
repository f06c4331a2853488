"""The callback reader alone: form fields in, a verified callback or a named refusal out. No
server, no database, a fixed clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from app.jsms import callback
from app.jsms.callback import Callback, CallbackRefused, read_callback
from tests.support import APPS
from tests.wire import report, signed_form

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
DAY_MS = 24 * 3_600_000
ONE, TWO = "app-one", "app-two"


def form(app_key: str = ONE, record_type: str = "SMS_REPORT", data: object = None,
         **fields: str) -> dict[str, str]:  # fmt: skip
    """A form JSMS would post now for `app_key`, with `fields` replacing or adding fields."""
    body = signed_form(app_key, APPS[app_key], record_type,
                       [report("m1")] if data is None else data,
                       nonce="nonce-1", timestamp=str(NOW_MS))  # fmt: skip
    return body | fields


def read(fields: dict[str, str], apps: dict[str, str] = APPS, memory_days: int = 90) -> Callback:
    return read_callback(fields, apps, now=NOW, memory_days=memory_days)


def refusal(fields: dict[str, str], **kwargs: object) -> CallbackRefused:
    with pytest.raises(CallbackRefused) as refused:
        read(fields, **kwargs)  # type: ignore[arg-type]
    return refused.value


def test_a_signed_callback_is_read_whole() -> None:
    fields = form(TWO)
    got = read(fields)
    assert (got.app_key, got.record_type, got.data) == (TWO, "SMS_REPORT", fields["data"])
    assert got.use == callback.SignedUse(
        TWO, "nonce-1", NOW_MS, callback.digest_of("SMS_REPORT", fields["data"])
    )
    assert got.use.triple == (TWO, "nonce-1", NOW_MS)
    assert [r.msg_id for r in got.batch.records] == ["m1"]  # type: ignore[union-attr]


def test_only_the_configured_apps_can_sign() -> None:
    refused = refusal(form(TWO), apps={ONE: APPS[ONE]})
    assert (type(refused), refused.code) == (callback.BadSignature, "bad_signature")
    assert refused.app_key is None


@pytest.mark.parametrize("field", ["nonce", "timestamp", "signature", "type", "data"])
@pytest.mark.parametrize("absent", ["missing", "blank"])
def test_each_missing_or_blank_field_is_named(field: str, absent: str) -> None:
    fields = form()
    if absent == "missing":
        del fields[field]
    else:
        fields[field] = ""
    refused = refusal(fields)
    assert isinstance(refused, callback.MissingField)
    assert refused.code == f"missing_{field}"
    assert isinstance(refused, callback.MissingSignature) == (field == "signature")


def test_the_signature_is_checked_before_the_type_and_data_are_read() -> None:
    unsigned = form(type="", data="not json", signature="0" * 40)
    assert refusal(unsigned).code == "bad_signature"


def test_a_refusal_after_the_signature_names_the_app_and_the_type() -> None:
    refused = refusal(form(TWO, data="{not json"))
    assert (refused.code, refused.message) == ("invalid_data", "the data field is not JSON")
    assert (refused.app_key, refused.record_type) == (TWO, "SMS_REPORT")
    assert refusal(form(TWO, type="")).app_key == TWO


def test_data_nested_deeper_than_json_reads_is_kept_whole_not_a_crash() -> None:
    got = read(form(data="[" * 100_000))
    assert (got.batch.records, got.batch.unread) == ([], 1)
    # The quarantine's reason, as the operator reads it.
    reason = "the data is nested deeper than the JSON reader goes: kept raw, unread"
    assert got.batch.unread_reason == reason


@pytest.mark.parametrize(("digits", "kind"), [(1, int), (4300, int), (4301, str)])
def test_json_integers_are_numbers_up_to_4300_digits_and_their_text_past_that(
    digits: int, kind: type
) -> None:
    """Python converts at most 4,300 digits to an int: a JSON integer up to that is a number
    in the record (here an unknown field, kept in `extra`), a longer one its digits as text,
    never a crash."""
    data = json.dumps([report("m1")])[:-2] + ', "big": ' + "7" * digits + "}]"
    (record,) = read(form(data=data)).batch.records
    big = record.extra["big"]  # type: ignore[union-attr]
    assert type(big) is kind
    assert str(big) == "7" * digits


def test_unreadable_records_are_parsed_into_quarantine_not_refused() -> None:
    got = read(form(record_type="SMS_SOMETHING_NEW", data=json.dumps([{"x": 1}])))
    assert got.batch.records == [] and got.record_type == "SMS_SOMETHING_NEW"


def test_the_nonce_bound_and_the_time_window_are_the_readers() -> None:
    assert read(form(**resigned(nonce="n" * 64))).use.nonce == "n" * 64
    refused = refusal(form(**resigned(nonce="n" * 65)))
    assert (type(refused), refused.code) == (callback.InvalidNonce, "invalid_nonce")
    oldest = NOW_MS - 90 * DAY_MS
    inside = read(form(**resigned(timestamp=oldest)))
    assert (inside.use.timestamp, inside.suspect) == (oldest, None)
    for outside in (oldest - 1, NOW_MS + 3_600_000 + 1):
        suspect = read(form(**resigned(timestamp=outside))).suspect
        assert suspect is not None and suspect.code == "signature_time"
    refused = refusal(form(**resigned(timestamp="soon")))
    assert (type(refused), refused.code) == (callback.InvalidTimestamp, "invalid_timestamp")
    assert refused.app_key == ONE
    assert read(form(**resigned(timestamp=1)), memory_days=0).suspect is None


def test_the_first_of_repeated_fields_counts() -> None:
    """A mapping that answers the first value of a repeated field (Werkzeug's MultiDict) is
    read through `get`, as the view hands it over."""
    from werkzeug.datastructures import MultiDict

    fields = MultiDict(list(form().items()) + [("type", "SMS_REPLY")])
    assert read(fields).record_type == "SMS_REPORT"  # type: ignore[arg-type]


def resigned(nonce: str = "nonce-1", timestamp: int | str = NOW_MS) -> dict[str, str]:
    """The nonce, timestamp and signature of app-one's callback with these values."""
    signed = signed_form(ONE, APPS[ONE], "SMS_REPORT", [], nonce=nonce, timestamp=str(timestamp))
    return {name: signed[name] for name in ("nonce", "timestamp", "signature")}
