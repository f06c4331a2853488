"""Reading a JSMS callback: from its form fields to a verified, parsed callback, or a named
refusal. Pure (no Flask, no database), like gidgethub's `Event.from_http` or svix's
`Webhook.verify`: the view reads the request and stores; everything in between is here.

JSMS signs only the app's key and secret, a nonce and a timestamp, never `type` or `data`. So a
verified callback carries its `SignedUse`: the signed triple and a digest of what it carried,
which the replay memory (`app/store/replay.py`) remembers. A timestamp older than that memory,
or too far ahead, is refused here: its triple might have been forgotten.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.jsms.records import MAX_CALLBACK_ITEMS, ParsedBatch, parse_payload
from app.jsms.signature import find_signer

# JSMS's clock and ours may disagree a little; a signature from further ahead is refused.
MAX_AHEAD = timedelta(hours=1)
MAX_NONCE_LENGTH = 64


class CallbackRefused(Exception):
    """A callback that is not taken; `code` is the contract's snake_case error code. What was
    learnt before the refusal (the signing app, the record type) rides along, for the log line
    and the metrics."""

    code = "bad_request"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.app_key: str | None = None
        self.record_type: str | None = None


class MissingField(CallbackRefused):
    """A required form field is absent or blank (`missing_<field>`)."""

    def __init__(self, field: str, message: str | None = None) -> None:
        super().__init__(message or f"the {field} field is required", f"missing_{field}")
        self.field = field


class MissingSignature(MissingField):
    """No signature at all: the caller is not JSMS, or not configured to sign."""

    def __init__(self) -> None:
        super().__init__("signature", "the signature is missing")


class BadSignature(CallbackRefused):
    code = "bad_signature"


class SignatureExpired(CallbackRefused):
    """The signed timestamp lies outside what the replay memory covers."""

    code = "signature_expired"


class SignatureReused(CallbackRefused):
    """The signed triple was already used for another callback (the replay memory's finding)."""

    code = "signature_reused"

    def __init__(
        self, message: str = "this signature was already used for another callback"
    ) -> None:
        super().__init__(message)


class InvalidNonce(CallbackRefused):
    code = "invalid_nonce"


class InvalidData(CallbackRefused):
    code = "invalid_data"


@dataclass(frozen=True, slots=True)
class SignedUse:
    """One use of a verified signature: its triple and a digest of what it carried."""

    app_key: str
    nonce: str
    timestamp: int
    digest: str

    @property
    def triple(self) -> tuple[str, str, int]:
        """What JSMS signed: the key of the replay memory."""
        return (self.app_key, self.nonce, self.timestamp)


@dataclass(frozen=True, slots=True)
class Callback:
    """A verified callback: who signed it, its signed use, its raw `type` and `data`, and the
    records parsed from them (never refused: what cannot be read is quarantined by the store)."""

    app_key: str
    use: SignedUse
    record_type: str
    data: str
    batch: ParsedBatch


def read_callback(
    form: Mapping[str, str], apps: Mapping[str, str], *, now: datetime, memory_days: int
) -> Callback:
    """Verify and parse a callback's form fields against the configured `apps` (key → secret);
    `memory_days` is how far back the replay memory reaches (0: forever). Raises a
    `CallbackRefused` naming the first thing wrong, in this order: signature missing, nonce or
    timestamp missing, bad signature, type or data missing, data not JSON, nonce too long,
    timestamp outside the window."""
    signature = form.get("signature")
    if not signature:
        raise MissingSignature()
    nonce, timestamp = _field(form, "nonce"), _field(form, "timestamp")
    app_key = find_signer(apps, nonce, timestamp, signature)
    if app_key is None:
        raise BadSignature("the signature does not match any configured app")
    record_type = None
    try:
        record_type, data = _field(form, "type"), _field(form, "data")
        batch = parse_payload(record_type, _json(data), max_items=MAX_CALLBACK_ITEMS)
        use = signed_use(
            app_key, nonce, timestamp, record_type, data, now=now, memory_days=memory_days
        )
    except CallbackRefused as refused:
        refused.app_key, refused.record_type = app_key, record_type
        raise
    return Callback(app_key, use, record_type, data, batch)


def signed_use(
    app_key: str, nonce: str, timestamp: str, record_type: str, data: str, *, now: datetime,
    memory_days: int,
) -> SignedUse:  # fmt: skip
    """The use a verified callback makes of its signature; raises `InvalidNonce` for a nonce
    the memory cannot hold, `SignatureExpired` when the timestamp lies outside what the replay
    memory covers (`memory_days` 0: forever)."""
    if len(nonce) > MAX_NONCE_LENGTH:
        raise InvalidNonce(f"the nonce is longer than {MAX_NONCE_LENGTH} characters")
    signed_at = _epoch_ms(timestamp)
    oldest = now - timedelta(days=memory_days) if memory_days else None
    if signed_at is None or signed_at > now + MAX_AHEAD or (oldest and signed_at < oldest):
        raise SignatureExpired(
            "the signature's timestamp is outside the accepted window "
            f"({memory_days or 'any number of'} days back, {MAX_AHEAD} ahead)"
        )
    return SignedUse(app_key, nonce, int(timestamp), digest_of(record_type, data))


def digest_of(record_type: str, data: str) -> str:
    """What a signature was used for: a digest of the callback's `type` and `data`."""
    return hashlib.sha256(
        record_type.encode("utf-8", "surrogatepass") + b"\x1f"
        + data.encode("utf-8", "surrogatepass")
    ).hexdigest()  # fmt: skip


def _field(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if value is None or value == "":
        raise MissingField(name)
    return str(value)


def _json(data: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than json can read
        raise InvalidData("the data field is not JSON") from None


def _epoch_ms(timestamp: str) -> datetime | None:
    """A signed timestamp (epoch milliseconds) as a datetime, or None if it is not one."""
    try:
        milliseconds = int(timestamp)
        return datetime.fromtimestamp(milliseconds / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
