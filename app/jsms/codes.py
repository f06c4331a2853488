"""JSMS code tables: delivery statuses and the REST error codes a receipt puller meets."""

from __future__ import annotations

from dataclasses import dataclass

DELIVERED = 4001

DELIVERY_STATUS_TEXT: dict[int, str] = {
    4001: "delivered",
    4002: "number is on the carrier's blacklist",
    4003: "handset problem: off or suspended",
    4004: "number does not exist",
    4005: "not enough SMS balance",
    4006: "carrier frequency limit hit",
    4007: "voice code: call not answered or refused",
    4008: "voice code: callee busy",
    4009: "voice code: unreachable",
    4010: "blocked by the carrier for sensitive words",
    4100: "other error",
}


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """What a JSMS REST error code means for a receipt puller, and what a person does about it."""

    meaning: str
    fix: str


# Every code a pull of /v1/report or /v1/reply can meet (the upstream's table has more, for
# sending). A fix that names `jsms resume` applies once the cause is gone: a paused app is only
# retried hourly otherwise.
ERROR_CODES: dict[int, ErrorCode] = {
    50001: ErrorCode(
        "auth missing: the call carried no app key and master secret",
        "set JSMS_APPS=appKey:masterSecret, restart, then run: jsms resume APP_KEY",
    ),
    50002: ErrorCode(
        "auth failed: JSMS does not accept this app key and master secret",
        "copy the app key and master secret from the JSMS console into JSMS_APPS, "
        "restart, then run: jsms resume APP_KEY",
    ),
    50008: ErrorCode(
        "SMS service not activated for this app",
        "activate SMS for the app in the JSMS console, then run: jsms resume APP_KEY",
    ),
    50016: ErrorCode(
        "API not found: the URL does not lead to JSMS's receipt API",
        "check JSMS_API_BASE_URL (default https://api.sms.jpush.cn, or a proxy that "
        "forwards /v1/report and /v1/reply), then run: jsms resume APP_KEY",
    ),
    50017: ErrorCode(
        "media type not supported: something between here and JSMS changed the request",
        "check the proxy in JSMS_API_BASE_URL, if any, then run: jsms resume APP_KEY",
    ),
    50018: ErrorCode(
        "request method not supported: the request did not reach the receipt API as a GET",
        "check the proxy in JSMS_API_BASE_URL, if any, then run: jsms resume APP_KEY",
    ),
    50019: ErrorCode(
        "server error on JSMS's side",
        "nothing to change here: pulling backs off and retries by itself",
    ),
    50035: ErrorCode(
        "illegal IP: the app has an IP allow-list in the JSMS console and this host's "
        "outbound address is not on it",
        "add this host's outbound IP to the app's allow-list in the JSMS console, or turn the "
        "list off; on a platform whose outbound IPs change (Heroku-style dynos) use a "
        "static-IP add-on and list its addresses; then run: jsms resume APP_KEY",
    ),
    50036: ErrorCode(
        "app blocked: JSMS has put this app on its blacklist",
        "contact JSMS support with the app key; once they unblock it, run: jsms resume APP_KEY",
    ),
    50201: ErrorCode(
        "pulled more often than once per window: another client uses this app key",
        "make sure only this service pulls with this app key; nothing else to do, the next "
        "call waits out the window",
    ),
    50202: ErrorCode(
        "callback mode: JSMS posts this app's receipts to the callback URL, so pulling is off",
        "nothing, if the callback URL is this service's /callbacks/jsms/APP_KEY; to pull "
        "instead, turn the callbacks off in the JSMS console, then run: jsms resume APP_KEY",
    ),
    50301: ErrorCode(
        "developer account frozen",
        "contact JSMS support; once the account is unfrozen, run: jsms resume APP_KEY",
    ),
}


def explain(code: int | None, app_key: str = "APP_KEY") -> ErrorCode | None:
    """The meaning and fix of a JSMS error code, the fix naming `app_key`; None when the code
    is unknown (or None: no answer came back)."""
    known = ERROR_CODES.get(code) if code is not None else None
    if known is None:
        return None
    return ErrorCode(known.meaning, known.fix.replace("APP_KEY", app_key))


def status_text(status: int) -> str:
    """A short English meaning for a delivery status code (unknown codes say so)."""
    return DELIVERY_STATUS_TEXT.get(status, f"unknown status {status}")
