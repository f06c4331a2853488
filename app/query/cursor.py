"""Opaque keyset cursors: the last id a walk has covered, bound to the walk's filters and
signed (HMAC-SHA256 with SECRET_KEY), so a hand-edited cursor is refused, not followed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from app.errors import InvalidParameter

_VERSION = 2
_MAX_LENGTH = 200
_MAC_BYTES = 16


def encode_cursor(after: int, fingerprint: str, key: str) -> str:
    """A URL-safe token that resumes a walk after `after` with the same filters."""
    body = json.dumps({"v": _VERSION, "after": after, "f": fingerprint}, separators=(",", ":"))
    encoded = _b64(body.encode("ascii"))
    return f"{encoded}.{_b64(_mac(encoded, key))}"


def decode_cursor(cursor: str, fingerprint: str, key: str) -> int:
    """The id a cursor resumes after; `InvalidParameter('cursor')` if tampered or for other
    filters."""
    try:
        if len(cursor) > _MAX_LENGTH:
            raise ValueError("too long")
        encoded, _, mac = cursor.partition(".")
        if not hmac.compare_digest(_unb64(mac), _mac(encoded, key)):
            raise ValueError("not signed with our key")
        body = json.loads(_unb64(encoded))
        after = body["after"]
        valid = (
            body.get("v") == _VERSION
            and type(after) is int
            and 0 <= after < 2**63
            and isinstance(body.get("f"), str)
        )
    except (ValueError, TypeError, KeyError, UnicodeError, binascii.Error):
        valid = False
    if not valid:
        raise InvalidParameter("cursor", "not a cursor this API issued")
    if body["f"] != fingerprint:
        raise InvalidParameter("cursor", "issued for other filters; repeat the same filters")
    return int(after)


def _mac(encoded: str, key: str) -> bytes:
    digest = hmac.new(key.encode("utf-8"), b"cursor\n" + encoded.encode("ascii"), hashlib.sha256)
    return digest.digest()[:_MAC_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode("ascii"))
