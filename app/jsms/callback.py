"""Reading a JSMS callback: from its form fields to a verified, parsed callback, or a named
refusal. Pure (no Flask, no database), like gidgethub's `Event.from_http` or svix's
`Webhook.verify`: the view reads the request and stores; everything in between is here.

JSMS signs only the app's key and secret, a nonce and a timestamp, never `type` or `data`. So a
verified callback carries its `SignedUse`: the signed triple and a digest of what it carried,
which the replay memory (`app/store/replay.py`) remembers. Nothing correctly signed is refused
for what it carries or when it was signed: a timestamp older than that memory or too far ahead
makes the callback a `Suspect` (`signature_time`, with the skew), kept raw and quarantined; data
nested deeper than `json` reads is kept raw, unread. Only a malformed form (a field missing, data
that is not JSON, a nonce or timestamp the memory cannot hold) is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.jsms.records import MAX_CALLBACK_ITEMS, ParsedBatch, parse_payload
from app.jsms.signature import find_signer
from app.spans import span_text

# JSMS's clock and ours may disagree a little; a signature from further ahead is suspect.
MAX_AHEAD = timedelta(hours=1)
MAX_NONCE_LENGTH = 64
DAY_MS = 86_400_000
# The longest span a timedelta holds, in ms (a signed BIGINT timestamp may lie further off).
_MAX_SPAN_MS = 999_999_999 * DAY_MS
# What a text column cannot hold (PostgreSQL: NUL; UTF-8: a lone surrogate).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# A timestamp the replay memory can hold: epoch milliseconds in a BIGINT.
_TIMESTAMP = re.compile(r"-?[0-9]{1,18}")
# Python's `int()` refuses longer digit strings (sys.int_max_str_digits): kept as text instead.
_MAX_INT_DIGITS = 4300
# The two reasons a correctly signed callback is kept but its records are not stored.
SIGNATURE_REUSED = "signature_reused"
SIGNATURE_TIME = "signature_time"


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


class SignatureReused(CallbackRefused):
    """The signed triple already carried as many distinct payloads as the replay memory keeps
    (`MAX_PAYLOADS_PER_SIGNATURE`): a flood from one captured signature, refused."""

    code = SIGNATURE_REUSED

    def __init__(
        self,
        message: str = "this signature already carried as many different callbacks as are kept",
    ) -> None:
        super().__init__(message)


class InvalidNonce(CallbackRefused):
    code = "invalid_nonce"


class InvalidTimestamp(CallbackRefused):
    """A signed timestamp that is not epoch milliseconds (JSMS never sends one)."""

    code = "invalid_timestamp"


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
class Suspect:
    """Why a correctly signed callback's records are kept raw, unstored, until an operator
    trusts them (`jsms trust`): `code` is SIGNATURE_REUSED or SIGNATURE_TIME."""

    code: str
    reason: str


def reused_suspect() -> Suspect:
    """The suspicion on a signature's second (third, …) distinct payload."""
    return Suspect(
        SIGNATURE_REUSED,
        "signature_reused: this nonce/timestamp/signature was first used for other data "
        "(JSMS signs neither type nor data); kept raw until an operator runs jsms trust",
    )


@dataclass(frozen=True, slots=True)
class Callback:
    """A verified callback: who signed it, its signed use, its raw `type` and `data`, the
    records parsed from them (never refused: what cannot be read is quarantined by the store),
    and, for a timestamp outside the window, why it is `suspect`."""

    app_key: str
    use: SignedUse
    record_type: str
    data: str
    batch: ParsedBatch
    suspect: Suspect | None = None


def read_callback(
    form: Mapping[str, str], apps: Mapping[str, str], *, now: datetime, memory_days: int
) -> Callback:
    """Verify and parse a callback's form fields against the configured `apps` (key → secret);
    `memory_days` is how far back the replay memory reaches (0: forever). Raises a
    `CallbackRefused` naming the first thing wrong, in this order: signature missing, nonce or
    timestamp missing, bad signature, type or data missing, data not JSON, a nonce or timestamp
    the memory cannot hold. A timestamp outside the window is no refusal: the callback comes
    back `suspect`."""
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
        batch = _batch(record_type, data)
        use = signed_use(app_key, nonce, timestamp, record_type, data)
    except CallbackRefused as refused:
        refused.app_key, refused.record_type = app_key, record_type
        raise
    suspect = window_suspect(use.timestamp, now=now, memory_days=memory_days)
    return Callback(app_key, use, record_type, data, batch, suspect)


def signed_use(
    app_key: str, nonce: str, timestamp: str, record_type: str, data: str
) -> SignedUse:
    """The use a verified callback makes of its signature; raises `InvalidNonce` for a nonce
    and `InvalidTimestamp` for a timestamp the memory cannot hold."""
    if len(nonce) > MAX_NONCE_LENGTH:
        raise InvalidNonce(f"the nonce is longer than {MAX_NONCE_LENGTH} characters")
    if _UNSTORABLE.search(nonce):
        raise InvalidNonce("the nonce holds a NUL or an unpaired surrogate")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise InvalidTimestamp("the timestamp is not epoch milliseconds")
    return SignedUse(app_key, nonce, int(timestamp), digest_of(record_type, data))


def window_suspect(timestamp: int, *, now: datetime, memory_days: int) -> Suspect | None:
    """A `signature_time` suspicion, with the skew, when the signed timestamp (epoch ms) lies
    outside what the replay memory covers (`memory_days` back, 0: forever) or more than
    MAX_AHEAD ahead of `now`: its triple might have been forgotten, or not be remembered long
    enough. None inside the window (its bounds included)."""
    # In integer milliseconds: a signed BIGINT can lie beyond what a datetime holds.
    skew = timestamp - int(now.timestamp() * 1000)
    too_old = bool(memory_days) and skew < -memory_days * DAY_MS
    if not too_old and skew <= MAX_AHEAD // timedelta(milliseconds=1):
        return None
    where = "ahead of" if skew > 0 else "behind"
    return Suspect(
        SIGNATURE_TIME,
        f"signature_time: the signed timestamp is {_span(abs(skew))} {where} the server's clock "
        f"(window: {memory_days or 'any number of'} days back, {MAX_AHEAD} ahead); if JSMS's "
        "clock and the server's disagree, correct the server's clock (NTP), then jsms trust "
        "this event",
    )


def _span(milliseconds: int) -> str:
    """A skew as people read it (`2 h 0 min 5 s`, `91 d 0 h 0 min`), however large."""
    span = timedelta(milliseconds=min(milliseconds, _MAX_SPAN_MS))
    return span_text(span, parts=3, smallest="s")


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


def _batch(record_type: str, data: str) -> ParsedBatch:
    """The records of `data`; raises `InvalidData` when it is not JSON. JSON nested deeper than
    `json` reads is kept whole, unread: it is signed, so it is kept."""
    try:
        parsed = json.loads(data, parse_int=_integer)
    except RecursionError:
        return ParsedBatch.kept_whole(
            1, "the data is nested deeper than the JSON reader goes: kept raw, unread"
        )
    except ValueError:
        raise InvalidData("the data field is not JSON") from None
    return parse_payload(record_type, parsed, max_items=MAX_CALLBACK_ITEMS)


def _integer(digits: str) -> int | str:
    """A JSON integer; one longer than Python converts stays text (the record refuses it)."""
    return int(digits) if len(digits) <= _MAX_INT_DIGITS else digits
