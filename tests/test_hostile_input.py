"""Hostile input at the HTTP edge: any form and any signed JSON gives a stored record, a
quarantine reason or a 4xx — never a 5xx, never a lost signed record."""

from __future__ import annotations

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.callbacks import URLENCODED, read_form
from app.jsms.records import parse_payload
from tests import strategies
from tests.support import APPS
from tests.wire import signed_form

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
APP, SECRET = "app-one", APPS["app-one"]


@SETTINGS
@given(form=strategies.unsigned_forms())
def test_any_unsigned_form_is_refused_with_json(client: FlaskClient, form: dict[str, str]) -> None:
    response = client.post("/callbacks/jsms", data=form)
    assert response.status_code in (400, 401)
    assert response.get_json()["error"]["code"]


@SETTINGS
@given(signed=strategies.signed_forms(APP, SECRET))
def test_any_signed_json_is_stored_or_quarantined(
    client: FlaskClient, signed: tuple[dict[str, str], str, object]
) -> None:
    form, record_type, data = signed
    response = client.post("/callbacks/jsms", data=form)
    if not record_type:
        assert response.status_code == 400  # an empty field is a missing field
        return
    assert response.status_code == 200, response.get_data(as_text=True)
    counts = response.get_json()
    items = data if isinstance(data, list) else [data]
    assert counts["stored"] + counts["duplicates"] + counts["quarantined"] == len(items)
    # What the parser accepts is what gets stored (the receiver adds no refusal of its own).
    parsed = parse_payload(record_type, data)
    assert counts["quarantined"] == len(parsed.rejected)


@pytest.mark.parametrize(
    ("record_type", "data", "counts"),
    [
        ("SMS_REPLY", '{"phone":"1","content":"a\\u0000b","replyTime":1}', (0, 0, 1)),
        ("SMS_REPLY", '{"phone":"1","content":"a\\ud800b","replyTime":1}', (0, 0, 1)),
        ("SMS_REPLY", '{"phone":"1","content":"ok","replyTime":1e12,"x":"\\ud800"}', (1, 0, 0)),
        ("SMS_REPORT", '{"msgId":"a\\u0000","phone":"1","status":1,"receiveTime":1}', (0, 0, 1)),
        ("SMS_\x00X", '{"a":1}', (0, 0, 1)),
    ],
)
def test_text_a_database_cannot_hold_is_quarantined_not_500(
    client: FlaskClient, record_type: str, data: str, counts: tuple[int, int, int]
) -> None:
    form = signed_form("app-one", APPS["app-one"], record_type, data)
    response = client.post("/callbacks/jsms", data=form)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["stored"], body["duplicates"], body["quarantined"]) == counts


# Pieces of urlencoded bodies, the awkward ones included: escapes that are not UTF-8, broken
# escapes, blank and repeated fields, `+`, `;`, raw non-ASCII and invalid UTF-8 bytes.
_BODY_PIECES = st.sampled_from(
    [b"signature", b"type", b"data", b"=", b"&", b";", b"+", b"%", b"%2", b"%zz", b"%FF",
     b"%E4%B8%AD", b"%E4%B8", b"%00", b"%26", b"%3D", b"\xe4\xb8\xad", b"\xff", b"a b", b"x"]
)  # fmt: skip


@settings(max_examples=400, deadline=None, database=None)
@given(body=st.one_of(st.lists(_BODY_PIECES, max_size=12).map(b"".join), st.binary(max_size=64)))
def test_the_callback_form_reads_exactly_as_werkzeug_reads_it(body: bytes) -> None:
    """read_form skips Werkzeug's form parser for urlencoded bodies: same fields, same order,
    same answers to bad escapes and invalid UTF-8 (hence the same 4xx from the view)."""
    app = Flask(__name__)
    context = {"method": "POST", "data": body, "content_type": URLENCODED}
    with app.test_request_context(**context):
        ours = list(read_form().items(multi=True))
    with app.test_request_context(**context):
        werkzeugs = list(request.form.items(multi=True))
    assert ours == werkzeugs
