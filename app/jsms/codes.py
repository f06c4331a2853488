"""JSMS code tables: delivery statuses and the REST error codes a receipt puller meets."""

from __future__ import annotations

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

ERROR_TEXT: dict[int, str] = {
    50001: "auth missing",
    50002: "auth failed",
    50008: "SMS service not activated",
    50016: "API not found",
    50018: "request method not supported",
    50019: "server error",
    50201: "pulled faster than once per window",
    50202: "pull not allowed: callbacks are on for this app",
    50301: "developer account frozen",
}


def status_text(status: int) -> str:
    """A short English meaning for a delivery status code (unknown codes say so)."""
    return DELIVERY_STATUS_TEXT.get(status, f"unknown status {status}")
