"""What a refused callback tells the person reading it (the JSMS console's test, the logs):
each refusal's `error.message` says what is wrong, in the contract's shape, never a bare
`None`. The codes are the machine contract; these texts are what an operator acts on."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.support import APPS
from tests.wire import report, signed_form

FORM = signed_form("app-one", APPS["app-one"], "SMS_REPORT", [report("m1")])


@pytest.mark.parametrize(
    ("form", "code", "message"),
    [
        ({k: v for k, v in FORM.items() if k != "signature"}, "missing_signature",
         "the signature is missing"),
        (FORM | {"nonce": ""}, "missing_nonce", "the nonce field is required"),
        ({k: v for k, v in FORM.items() if k != "type"}, "missing_type",
         "the type field is required"),
        (FORM | {"signature": "0" * 40}, "bad_signature",
         "the signature does not match any configured app"),
        (signed_form("app-one", APPS["app-one"], "SMS_REPORT", [report("m1")], nonce="n\x00"),
         "invalid_nonce", "the nonce holds a NUL or an unpaired surrogate"),
        (signed_form("app-one", APPS["app-one"], "SMS_REPORT", [report("m1")], timestamp="1e3"),
         "invalid_timestamp", "the timestamp is not epoch milliseconds"),
    ],
    ids=["no-signature", "blank-nonce", "no-type", "bad-signature", "nul-nonce", "timestamp"],
)  # fmt: skip
def test_each_refusal_says_what_is_wrong(
    client: FlaskClient, form: dict[str, str], code: str, message: str
) -> None:
    response = client.post("/callbacks/jsms", data=form)
    assert 400 <= response.status_code < 500
    assert response.get_json() == {"error": {"code": code, "message": message}}
