"""The JSMS REST client: the receipt API (`GET /v1/report`, `GET /v1/reply`) and the app's
balance (`GET /v1/accounts/app`), nothing else.

Knows HTTP and the upstream's answer shapes; knows nothing about the database or Flask.
"""

from __future__ import annotations

from typing import Any

import httpx

from app.jsms.accounts import Balance, NotABalance, parse_balance
from app.jsms.pulled import Kind, PulledBatch, decode_json

DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
BALANCE_PATH = "/v1/accounts/app"


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

    def pull(self, app_key: str, secret: str, kind: Kind) -> PulledBatch:
        """Fetch the next batch of `kind` (report | reply) for one app.

        Raises `JsmsApiError` for a JSMS error answer, `UpstreamUnavailable` for anything else
        that is not a 200.
        """
        body, data, decode_error = self._get(Kind(kind).path, app_key, secret)
        return PulledBatch(body, data, decode_error)

    def balance(self, app_key: str, secret: str) -> Balance:
        """How many messages the app can still send (`GET /v1/accounts/app`, the app's own
        credentials). Raises as `pull` does; a 200 that is not the balance shape raises
        `UpstreamUnavailable` (nothing was handed out, so nothing is lost)."""
        _body, data, _decode_error = self._get(BALANCE_PATH, app_key, secret)
        try:
            return parse_balance(data)
        except NotABalance as exc:
            raise UpstreamUnavailable(f"not a balance answer: {exc}", 200) from exc

    def _get(self, path: str, app_key: str, secret: str) -> tuple[str, Any, str | None]:
        """GET `path` with the app's HTTP Basic credentials: a 200's body, its JSON (None when
        it is not JSON) and the decoding error; JSMS errors and other answers raise."""
        try:
            response = self._http.get(path, auth=(app_key, secret))
        except httpx.TimeoutException as exc:
            raise UpstreamUnavailable(f"timed out: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"network error: {type(exc).__name__}: {exc}") from exc
        body = response.text
        data, decode_error = decode_json(body)
        error = _jsms_error(data)
        if error is not None:
            raise JsmsApiError(error[0], error[1], response.status_code)
        if response.status_code != 200:
            raise UpstreamUnavailable(
                f"HTTP {response.status_code} without a JSMS error body", response.status_code
            )
        return body, data, decode_error

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def __enter__(self) -> JsmsClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _jsms_error(data: Any) -> tuple[int, str] | None:
    """(code, message) when `data` is JSMS's error shape, else None."""
    if not isinstance(data, dict) or not isinstance(data.get("error"), dict):
        return None
    error = data["error"]
    code = error.get("code")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if isinstance(code, str) and code.strip().isascii() and code.strip().isdigit():
        code = int(code.strip())
    if isinstance(code, bool) or not isinstance(code, int):
        return None
    return code, str(error.get("message", ""))[:500]
