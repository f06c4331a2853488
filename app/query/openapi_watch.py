"""The OpenAPI document's parts for reviews and balances: their filters and item schemas
(`openapi.py` assembles the paths)."""

from __future__ import annotations

from typing import Any

from app.jsms.accounts import BALANCE_FIELDS, BALANCE_KINDS
from app.query.openapi_components import UTC_TIME, param
from app.query.params import MAX_STATUSES, STATUS_LIST
from app.query.reviews import KINDS

NULLABLE_TIME = {**UTC_TIME, "type": ["string", "null"]}
NULLABLE_COUNT = {"type": ["integer", "null"]}

REVIEW_KIND = param(
    "kind", "Template or signature reviews.", {"type": "string", "enum": list(KINDS)}
)
REVIEW_STATUS = param(
    "status",
    f"Comma-separated review statuses (up to {MAX_STATUSES}): 0 pending, 1 approved, "
    "2 rejected, 3 deleted (signatures).",
    {"type": "string", "pattern": "^" + STATUS_LIST.pattern + "$"},
)


def _by_kind(description: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": {kind: value for kind in BALANCE_KINDS},
    }


WATCH_SCHEMAS: dict[str, Any] = {
    "Review": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "app_key": {"type": "string"},
            "kind": {"type": "string", "enum": list(KINDS)},
            "template_id": {"type": ["string", "null"], "description": "tempId (templates)"},
            "sign_id": {"type": ["string", "null"], "description": "signId (signatures)"},
            "status": {"type": "integer", "examples": [2]},
            "status_text": {
                "type": "string",
                "examples": ["pending", "approved", "rejected", "deleted", "unknown"],
            },
            "refuse_reason": {"type": ["string", "null"]},
            "received_at": {**UTC_TIME, "description": "when this service received it"},
        },
    },
    "Balance": {
        "type": "object",
        "properties": {
            "app_key": {"type": "string"},
            "read_at": {**NULLABLE_TIME, "description": "the latest successful read"},
            **{field: NULLABLE_COUNT for field in BALANCE_FIELDS},
            "consumed_last_day": _by_kind(
                "Messages spent over the last day's reads (top-ups not counted).",
                {"type": "integer"},
            ),
            "consumption_seconds": {
                "type": "number",
                "description": "the time the last day's reads span",
            },
            "seconds_left": _by_kind(
                "When each count runs out at that rate (null: nothing spent).",
                {"type": ["number", "null"]},
            ),
            "last_attempt_at": {**NULLABLE_TIME, "description": "the newest read, good or not"},
            "last_result": {"type": ["string", "null"], "examples": ["ok", "50002"]},
            "last_error_code": NULLABLE_COUNT,
            "last_error_message": {"type": ["string", "null"]},
            "last_error_text": {"type": ["string", "null"]},
        },
    },
    "BalanceRead": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "app_key": {"type": "string"},
            "read_at": UTC_TIME,
            "result": {"type": "string", "examples": ["ok", "50002", "unavailable"]},
            **{field: NULLABLE_COUNT for field in BALANCE_FIELDS},
            "error_code": NULLABLE_COUNT,
            "error_message": {"type": ["string", "null"]},
        },
    },
}
