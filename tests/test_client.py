"""How `JsmsClient` reads the upstream's answers (docs/jsms-protocol.md): each answer is served
by an `httpx.MockTransport`, so what is tested is the client's reading, not the network."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import httpx
import pytest

from app.jsms.client import JsmsApiError, JsmsClient, UpstreamUnavailable
from app.jsms.pulled import Kind, PulledBatch

Handler = Callable[[httpx.Request], httpx.Response]


def pull(handler: Handler, kind: Kind = Kind.REPORT) -> PulledBatch:
    """One pull by app `app-one` (secret `s3cret`) against an upstream answering `handler`."""
    with JsmsClient("http://jsms.test/", transport=httpx.MockTransport(handler)) as client:
        return client.pull("app-one", "s3cret", kind)


def answer(status: int, body: object) -> Handler:
    """An upstream answering `status` with `body` (bytes as they are, else JSON)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda request: httpx.Response(status, content=content)


def test_the_pull_asks_for_its_kind_with_basic_auth_and_json() -> None:
    requests: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=b"[]")

    pull(upstream, Kind.REPLY)
    [request] = requests
    assert (request.method, str(request.url)) == ("GET", "http://jsms.test/v1/reply")
    expected = base64.b64encode(b"app-one:s3cret").decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"] == "jsms-receipts"


def test_a_200_with_records_is_a_batch_holding_the_body_as_received() -> None:
    body = b'[{"msgId": "m1", "status": 4001}]'
    batch = pull(answer(200, body))
    assert (batch.body_text, batch.data, batch.decode_error) == (
        body.decode(), [{"msgId": "m1", "status": 4001}], None,
    )  # fmt: skip


@pytest.mark.parametrize("code", [50201, "50201", " 50201 "])
def test_an_error_body_with_a_numeric_or_string_code_is_a_jsms_api_error(code: object) -> None:
    body = {"error": {"code": code, "message": "pull out of frequency"}}
    with pytest.raises(JsmsApiError) as raised:
        pull(answer(403, body))
    error = raised.value
    assert (error.code, error.message, error.http_status) == (50201, "pull out of frequency", 403)


def test_pull_not_allowed_is_a_jsms_api_error_the_caller_can_tell_apart() -> None:
    body = {"error": {"code": 50202, "message": "pull not allow"}}
    with pytest.raises(JsmsApiError) as raised:
        pull(answer(403, body))
    assert (raised.value.code, raised.value.http_status) == (50202, 403)
    assert str(raised.value) == "JSMS error 50202 (HTTP 403): pull not allow"


def test_an_error_body_is_an_error_whatever_the_status_even_200() -> None:
    with pytest.raises(JsmsApiError) as raised:
        pull(answer(200, {"error": {"code": 50002}}))
    assert (raised.value.code, raised.value.message, raised.value.http_status) == (50002, "", 200)


def test_an_error_message_is_kept_to_500_characters() -> None:
    with pytest.raises(JsmsApiError) as raised:
        pull(answer(400, {"error": {"code": 50001, "message": "x" * 600}}))
    assert raised.value.message == "x" * 500


@pytest.mark.parametrize(
    "body",
    [
        b"Internal Server Error",  # a bare 500: no JSON at all
        b"",
        {"error": {"code": "not a number", "message": "?"}},
        {"error": {"code": True, "message": "?"}},  # JSON true is not the code 1
        {"error": "boom"},
        {"message": "no error object"},
    ],
)
def test_a_non_200_without_a_jsms_error_body_is_upstream_unavailable(body: object) -> None:
    with pytest.raises(UpstreamUnavailable) as raised:
        pull(answer(500, body))
    assert raised.value.http_status == 500
    assert raised.value.message == "HTTP 500 without a JSMS error body"


def test_a_200_that_is_not_json_is_a_batch_keeping_the_body_and_why() -> None:
    batch = pull(answer(200, b"<html>maintenance</html>"))
    assert batch.body_text == "<html>maintenance</html>"
    assert batch.data is None
    assert (batch.decode_error or "").startswith("body is not JSON: JSONDecodeError")


@pytest.mark.parametrize("body", [b"", b" \r\n", b"[]"])
def test_an_empty_200_is_an_empty_batch(body: bytes) -> None:
    batch = pull(answer(200, body))
    assert batch.is_empty and batch.item_count == 0
    assert batch.body_text == body.decode()


def test_a_timeout_is_upstream_unavailable_without_a_status() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    with pytest.raises(UpstreamUnavailable) as raised:
        pull(slow)
    assert (raised.value.message, raised.value.http_status) == ("timed out: ReadTimeout", None)
    assert isinstance(raised.value.__cause__, httpx.ReadTimeout)


def test_a_network_error_is_upstream_unavailable_and_says_which() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(UpstreamUnavailable) as raised:
        pull(refused)
    assert raised.value.message == "network error: ConnectError: connection refused"
    assert raised.value.http_status is None


def test_an_error_code_int_cannot_read_is_not_an_error_body() -> None:
    with pytest.raises(UpstreamUnavailable):
        pull(answer(500, {"error": {"code": "²", "message": "?"}}))
