"""The OpenAPI document's parts: reusable parameters and responses, and the component schemas
(items, buckets, sync states, errors, the callback form). `openapi.py` assembles the paths."""

from __future__ import annotations

from typing import Any

from app.jsms.pulled import KINDS
from app.query.params import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    SOURCES,
    TEXT_VALUE,
)
from app.store.models import SyncMode
from app.store.opt_outs import MANUAL

# How an opt-out came: with a reply (its source), or by hand.
OPT_OUT_SOURCES = (*SOURCES, MANUAL)

UTC_TIME = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC, with Z"}
JSON = "application/json"
# What the callback URL check echoes (app/callbacks.py).
ECHOSTR = "^[A-Za-z0-9_-]{1,64}$"


def param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A query parameter."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


HTML = {"type": "string"}


def error(description: str) -> dict[str, Any]:
    """A response carrying the contract's error shape."""
    return {
        "description": description,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def json_body(description: str, ref: str) -> dict[str, Any]:
    """A JSON response with the given schema."""
    return {"description": description, "content": {JSON: {"schema": {"$ref": ref}}}}


TIME_PARAM_SCHEMA = {"type": "string", "examples": ["2024-05-01T00:00:00Z", "1714521600000"]}
SINCE = param(
    "since", "Inclusive lower bound: ISO 8601 (no offset = UTC) or epoch ms.", TIME_PARAM_SCHEMA
)
UNTIL = param(
    "until", "Exclusive upper bound ([since, until)): ISO 8601 or epoch ms.", TIME_PARAM_SCHEMA
)


def text_schema(max_length: int) -> dict[str, Any]:
    """What `params._text` accepts: 1 to max_length characters, none of them a control one."""
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": TEXT_PATTERN}


TEXT_PATTERN = "^" + TEXT_VALUE.pattern + "$"
APP_KEY = param("app_key", "Only this JSMS app.", text_schema(64))
PHONE = param("phone", "Only this phone number.", text_schema(32))
LIMIT = param(
    "limit",
    f"Page size (JSON only; CSV streams every match). Default {DEFAULT_LIMIT}.",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
)
CURSOR = param(
    "cursor",
    "`next_cursor` or `resume_cursor` of an earlier page, same filters (signed: any other value "
    "is a 400).",
    {"type": "string", "maxLength": 200, "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$"},
)
FORMAT = param(
    "format",
    "`csv` streams every matching record as CSV (also chosen by `Accept: text/csv`).",
    {"type": "string", "enum": ["json", "csv"], "default": "json"},
)
API_ERRORS = {
    "400": error("A parameter is unknown, repeated or invalid; `parameter` names it."),
    "401": error("No or wrong bearer token (or no tokens configured)."),
    "503": error("The database is unavailable; retry."),
}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "examples": ["invalid_parameter"]},
                    "message": {"type": "string"},
                    "parameter": {"type": "string"},
                },
            }
        },
    },
    "Report": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "app_key": {"type": "string"},
            "msg_id": {"type": "string"},
            "phone": {"type": "string"},
            "status": {"type": "integer", "examples": [4001]},
            "status_text": {"type": "string"},
            "delivered": {"type": "boolean"},
            "received_at": UTC_TIME,
            "source": {"type": "string", "enum": list(SOURCES)},
            "ingested_at": UTC_TIME,
            "extra": {
                "type": ["object", "null"],
                "description": "Fields upstream sent that are not modelled, or null.",
            },
        },
    },
    "Reply": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "app_key": {"type": "string"},
            "phone": {"type": "string"},
            "content": {"type": "string"},
            "replied_at": UTC_TIME,
            "source": {"type": "string", "enum": list(SOURCES)},
            "ingested_at": UTC_TIME,
            "extra": {
                "type": ["object", "null"],
                "description": "Fields upstream sent that are not modelled, or null.",
            },
        },
    },
    "OptOut": {
        "type": "object",
        "required": ["app_key", "phone", "opted_out", "since", "keyword", "source"],
        "properties": {
            "app_key": {"type": "string"},
            "phone": {"type": "string"},
            "opted_out": {"type": "boolean", "description": "true: do not text this phone"},
            "since": {
                **UTC_TIME,
                "type": ["string", "null"],
                "description": "The time of the change that decided the state (a reply's "
                "replied_at, or when it was changed by hand); null: never opted out or in.",
            },
            "keyword": {
                "type": ["string", "null"],
                "description": "The keyword the deciding reply was (as configured); null by hand.",
            },
            "source": {"type": ["string", "null"], "enum": [*OPT_OUT_SOURCES, None]},
        },
    },
    "OptOutListItem": {
        "type": "object",
        "properties": {
            "app_key": {"type": "string"},
            "phone": {"type": "string"},
            "opted_out": {"type": "boolean", "const": True},
            "since": UTC_TIME,
            "keyword": {"type": ["string", "null"]},
            "source": {"type": "string", "enum": list(OPT_OUT_SOURCES)},
            "changed_by": {"type": ["string", "null"], "description": "who, by hand"},
            "reason": {"type": ["string", "null"], "description": "why, by hand"},
        },
    },
    "QuarantinedEvent": {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "description": "The raw event's id (`jsms trust ID`)."},
            "app_key": {"type": "string"},
            "source": {"type": "string", "enum": list(SOURCES)},
            "type": {"type": "string"},
            "received_at": UTC_TIME,
            "reason": {
                "type": ["string", "null"],
                "description": "Why it is quarantined (its first 2,000 characters); a suspect "
                "signature's reason starts with its code and says the skew or the reuse.",
            },
            "suspect": {
                "type": ["string", "null"],
                "enum": ["signature_reused", "signature_time", None],
                "description": "Set when the records wait for `jsms trust`.",
            },
            "records": {"type": "integer", "description": "Items the payload held."},
            "quarantined": {"type": "integer"},
            "payload_excerpt": {
                "type": "string",
                "description": "The payload's first 1,000 characters, as received.",
            },
            "payload_length": {"type": "integer"},
        },
    },
    "DeliveryBucket": {
        "type": "object",
        "properties": {
            "start": {
                "type": "string",
                "format": "date-time",
                "description": "The bucket's first instant in the zone, with its offset "
                "(`2025-11-25T00:00:00+08:00`; `Z` for a zero offset).",
            },
            "total": {"type": "integer"},
            "delivered": {"type": "integer"},
            "failed": {"type": "integer"},
            "delivery_rate": {"type": "number", "minimum": 0, "maximum": 1},
            "by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
    "SyncState": {
        "type": "object",
        "properties": {
            "app_key": {"type": "string"},
            "kind": {"type": "string", "enum": [k.value for k in KINDS]},
            "mode": {"type": "string", "enum": [m.value for m in SyncMode]},
            "configured": {"type": "boolean"},
            "last_attempt_at": {**UTC_TIME, "type": ["string", "null"]},
            "last_success_at": {**UTC_TIME, "type": ["string", "null"]},
            "last_error_code": {"type": ["integer", "null"]},
            "last_error_message": {"type": ["string", "null"]},
            "last_error_text": {
                "type": ["string", "null"],
                "description": "what last_error_code means (null: no error, or a code the "
                "service does not know)",
            },
            "last_error_fix": {
                "type": ["string", "null"],
                "description": "what to do about last_error_code (often: fix the cause, then "
                "`jsms resume APP_KEY`)",
            },
            "next_attempt_at": {**UTC_TIME, "type": ["string", "null"]},
            "consecutive_failures": {"type": "integer"},
            "records_pulled": {"type": "integer"},
            "newest_record_at": {
                **UTC_TIME,
                "type": ["string", "null"],
                "description": "carrier time of the newest record pulled",
            },
            "newest_record_age_seconds": {
                "type": ["number", "null"],
                "description": "pull lag: seconds since newest_record_at, as of the request",
            },
            "last_success_age_seconds": {
                "type": ["number", "null"],
                "description": "seconds since last_success_at, as of the request",
            },
            "catching_up": {
                "type": "boolean",
                "description": "draining a backlog: the last call came back full (500), so "
                "the next is due one window later",
            },
            "records_pulled_last_minute": {
                "type": "integer",
                "minimum": 0,
                "description": "records pulled for this app and kind in the minute up to "
                "the request (from the pulled batches in raw_events)",
            },
            "last_callback_at": {
                **UTC_TIME,
                "type": ["string", "null"],
                "description": "When the newest signed callback of this app and kind was "
                "stored (from raw_events; null: none kept).",
            },
        },
    },
    "CallbackForm": {
        "type": "object",
        "required": ["nonce", "timestamp", "signature", "type", "data"],
        "properties": {
            "nonce": {"type": "string", "minLength": 1},
            "timestamp": {"type": "string", "minLength": 1, "description": "epoch milliseconds"},
            "signature": {"type": "string", "description": "sha1 hex, see JSMS docs"},
            "type": {"type": "string", "minLength": 1},
            "data": {"type": "string", "minLength": 1, "description": "JSON: one record or a list"},
        },
    },
    "IngestResult": {
        "type": "object",
        "properties": {
            "stored": {"type": "integer"},
            "duplicates": {"type": "integer"},
            "quarantined": {"type": "integer"},
        },
    },
}
