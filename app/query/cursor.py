"""Opaque keyset cursors: the last id a walk has covered, bound to the walk's filters."""

from __future__ import annotations

import base64
import binascii
import json

from app.errors import InvalidParameter

_VERSION = 1
_MAX_LENGTH = 200


def encode_cursor(after: int, fingerprint: str) -> str:
    """A URL-safe token that resumes a walk after `after` with the same filters."""
    body = json.dumps({"v": _VERSION, "after": after, "f": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, fingerprint: str) -> int:
    """The id a cursor resumes after; `InvalidParameter('cursor')` if tampered or for other
    filters."""
    try:
        if len(cursor) > _MAX_LENGTH:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
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
