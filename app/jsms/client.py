"""The JSMS receipt API client: `GET /v1/report` and `GET /v1/reply`, nothing else.

Knows HTTP and the upstream's answer shapes; knows nothing about the database or Flask.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from app.jsms.records import SMS_REPLY, SMS_REPORT

# The most records JSMS hands out per call; a batch this size means "there may be more".
MAX_BATCH = 500
# What each pull kind is called upstream, and the record type its items carry.
KIND_PATHS = {"report": "/v1/report", "reply": "/v1/reply"}
KIND_TYPES = {"report": SMS_REPORT, "reply": SMS_REPLY}
KINDS = tuple(KIND_PATHS)
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


class JsmsApiError(Exception):
    """The upstream answered with its `{"error": {"code", "message"}}` shape."""

    def __init__(self, code: int, message: str, http_status: int) -> None:
        super().__init__(f"JSMS error {code} (HTTP {http_status}): {message}")
        self.code = code
        self.message = message
        self.http_status = http_status


class UpstreamUnavailable(Exception):
    """No JSMS answer: a timeout, a network error, or a non-200 without a JSMS error body."""

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status


@dataclass(frozen=True, slots=True)
class PulledBatch:
    """One successful pull: the body as received and, when it is JSON, what it decoded to.

    `decode_error` is set (and `data` is None) when a 200 body is not JSON: the records in it
    were still handed out, so the caller must keep the body.
    """

    body_text: str
    data: Any
    decode_error: str | None = None

    @classmethod
    def from_body(cls, body: str) -> PulledBatch:
        """A batch from its body as received (e.g. read back from the spool)."""
        data, decode_error = _decode(body)
        return cls(body, data, decode_error)

    @property
    def item_count(self) -> int:
        """How many items the upstream handed out (0 when the body could not be decoded)."""
        if self.decode_error is not None or self.data is None:
            return 0
        return len(self.data) if isinstance(self.data, list) else 1

    @property
    def is_full(self) -> bool:
        """A full batch: the backlog may hold more, pull again when the window allows."""
        return self.item_count >= MAX_BATCH


class JsmsClient:
    """A pooled HTTP client for the receipt API; one per process, closed when done."""

    def __init__(
        self,
        base_url: str,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "jsms-receipts"},
        )

    def pull(self, app_key: str, secret: str, kind: str) -> PulledBatch:
        """Fetch the next batch of `kind` (report | reply) for one app.

        Raises `JsmsApiError` for a JSMS error answer, `UpstreamUnavailable` for anything else
        that is not a 200.
        """
        try:
            response = self._http.get(KIND_PATHS[kind], auth=(app_key, secret))
        except httpx.TimeoutException as exc:
            raise UpstreamUnavailable(f"timed out: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"network error: {type(exc).__name__}: {exc}") from exc
        body = response.text
        data, decode_error = _decode(body)
        error = _jsms_error(data)
        if error is not None:
            raise JsmsApiError(error[0], error[1], response.status_code)
        if response.status_code != 200:
            raise UpstreamUnavailable(
                f"HTTP {response.status_code} without a JSMS error body", response.status_code
            )
        return PulledBatch(body, data, decode_error)

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def __enter__(self) -> JsmsClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _decode(body: str) -> tuple[Any, str | None]:
    """The JSON a body holds, or None and why it is not JSON."""
    try:
        return json.loads(body), None
    except ValueError as exc:
        return None, f"body is not JSON: {exc}"


def _jsms_error(data: Any) -> tuple[int, str] | None:
    """(code, message) when `data` is JSMS's error shape, else None."""
    if not isinstance(data, dict) or not isinstance(data.get("error"), dict):
        return None
    error = data["error"]
    code = error.get("code")
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code.strip())
    if isinstance(code, bool) or not isinstance(code, int):
        return None
    return code, str(error.get("message", ""))[:500]
