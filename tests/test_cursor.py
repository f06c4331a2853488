"""Cursor tokens as such: exact encoding, every padding length, the signature, the bounds a
token signed with our key must still meet, and the messages a client sees (killing mutmut's
survivors in app/query/cursor.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from app.errors import InvalidParameter
from app.query.cursor import decode_cursor, encode_cursor

KEY = "cursor-test-key"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def signed(body: object, key: str = KEY) -> str:
    """A token for any JSON body, encoded and signed the way the API signs its own."""
    encoded = b64(json.dumps(body, separators=(",", ":")).encode())
    mac = hmac.new(key.encode(), b"cursor\n" + encoded.encode(), hashlib.sha256).digest()[:16]
    return f"{encoded}.{b64(mac)}"


def refusal(cursor: str, fingerprint: str = "f", key: str = KEY) -> str:
    with pytest.raises(InvalidParameter) as caught:
        decode_cursor(cursor, fingerprint, key)
    assert caught.value.parameter == "cursor"
    return str(caught.value)


def test_the_token_is_compact_json_and_its_mac_in_unpadded_urlsafe_base64() -> None:
    token = encode_cursor(42, "abc", KEY)
    assert token == signed({"v": 2, "after": 42, "f": "abc"})
    assert token.split(".")[0] == "eyJ2IjoyLCJhZnRlciI6NDIsImYiOiJhYmMifQ"


@pytest.mark.parametrize("fingerprint", ["", "a", "ab", "abc", "abcd", "abcde"])
def test_every_padding_length_round_trips(fingerprint: str) -> None:
    token = encode_cursor(7, fingerprint, KEY)
    assert "=" not in token
    assert decode_cursor(token, fingerprint, KEY) == 7


def test_a_cursor_of_the_maximum_length_is_read_and_one_longer_is_refused() -> None:
    at_most = max(n for n in range(200) if len(encode_cursor(1, "x" * n, KEY)) <= 200)
    assert decode_cursor(encode_cursor(1, "x" * at_most, KEY), "x" * at_most, KEY) == 1
    longer = "x" * (at_most + 1)
    assert len(encode_cursor(1, longer, KEY)) > 200
    assert refusal(encode_cursor(1, longer, KEY), longer).endswith("not a cursor this API issued")


@pytest.mark.parametrize("after", [0, 1, 2**63 - 1])
def test_the_whole_id_range_is_accepted(after: int) -> None:
    assert decode_cursor(encode_cursor(after, "f", KEY), "f", KEY) == after


def test_an_edited_or_foreign_cursor_is_refused() -> None:
    token = encode_cursor(1, "f", KEY)
    body, mac = token.split(".")
    edited = signed({"v": 2, "after": 99, "f": "f"}).split(".")[0] + "." + mac
    for cursor in (edited, body, body + ".", encode_cursor(1, "f", "another key")):
        assert refusal(cursor) == "parameter 'cursor': not a cursor this API issued"


@pytest.mark.parametrize(
    "body",
    [
        {"v": 2, "after": -1, "f": "f"},
        {"v": 2, "after": 2**63, "f": "f"},
        {"v": 2, "after": True, "f": "f"},
        {"v": 2, "after": "1", "f": "f"},
        {"v": 1, "after": 1, "f": "f"},
        {"v": 2, "after": 1, "f": 1},
        {"after": 1, "f": "f"},
        {"v": 2, "f": "f"},
    ],
)
def test_a_signed_cursor_of_the_wrong_shape_is_refused(body: object) -> None:
    assert refusal(signed(body)) == "parameter 'cursor': not a cursor this API issued"


def test_a_cursor_for_other_filters_says_so() -> None:
    message = refusal(encode_cursor(1, "other", KEY), "mine")
    assert message == "parameter 'cursor': issued for other filters; repeat the same filters"
