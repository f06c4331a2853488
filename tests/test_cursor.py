"""Cursor tokens as such: exact encoding, every padding length, the bounds a forged one must
meet, and the messages a client sees (killing mutmut's survivors in app/query/cursor.py)."""

from __future__ import annotations

import base64
import json

import pytest

from app.errors import InvalidParameter
from app.query.cursor import decode_cursor, encode_cursor


def forged(body: object) -> str:
    """A token for any JSON body, encoded the way the API encodes its own."""
    text = json.dumps(body, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def refusal(cursor: str, fingerprint: str = "f") -> str:
    with pytest.raises(InvalidParameter) as caught:
        decode_cursor(cursor, fingerprint)
    assert caught.value.parameter == "cursor"
    return str(caught.value)


def test_the_token_is_compact_json_in_unpadded_urlsafe_base64() -> None:
    assert encode_cursor(42, "abc") == "eyJ2IjoxLCJhZnRlciI6NDIsImYiOiJhYmMifQ"
    assert encode_cursor(42, "abc") == forged({"v": 1, "after": 42, "f": "abc"})


@pytest.mark.parametrize("fingerprint", ["", "a", "ab", "abc", "abcd", "abcde"])
def test_every_padding_length_round_trips(fingerprint: str) -> None:
    token = encode_cursor(7, fingerprint)
    assert "=" not in token
    assert decode_cursor(token, fingerprint) == 7


def test_a_cursor_of_the_maximum_length_is_read_and_one_longer_is_refused() -> None:
    fingerprint = next("x" * n for n in range(200) if len(encode_cursor(1, "x" * n)) == 200)
    assert decode_cursor(encode_cursor(1, fingerprint), fingerprint) == 1
    longer = next("x" * n for n in range(200) if len(encode_cursor(1, "x" * n)) == 202)
    assert refusal(encode_cursor(1, longer), longer).endswith("not a cursor this API issued")


@pytest.mark.parametrize("after", [0, 1, 2**63 - 1])
def test_the_whole_id_range_is_accepted(after: int) -> None:
    assert decode_cursor(encode_cursor(after, "f"), "f") == after


@pytest.mark.parametrize(
    "body",
    [
        {"v": 1, "after": -1, "f": "f"},
        {"v": 1, "after": 2**63, "f": "f"},
        {"v": 1, "after": True, "f": "f"},
        {"v": 1, "after": "1", "f": "f"},
        {"v": 2, "after": 1, "f": "f"},
        {"v": 1, "after": 1, "f": 1},
        {"after": 1, "f": "f"},
        {"v": 1, "f": "f"},
    ],
)
def test_a_forged_cursor_is_refused(body: object) -> None:
    assert refusal(forged(body)) == "parameter 'cursor': not a cursor this API issued"


def test_a_cursor_for_other_filters_says_so() -> None:
    message = refusal(encode_cursor(1, "other"), "mine")
    assert message == "parameter 'cursor': issued for other filters; repeat the same filters"
