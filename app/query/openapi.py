"""The OpenAPI 3 description of the whole HTTP surface, served at `/api/v1/openapi.json`.

Hand-written on purpose: it is the contract users read. `tests/test_openapi.py` checks that every
route the app serves is described here and that every path described here is served.
"""

from __future__ import annotations

from typing import Any

from app.jsms.pulled import KINDS
from app.query.params import (
    BUCKETS,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_STATUSES,
    SOURCES,
    STATUS_LIST,
    TEXT_VALUE,
)
from app.store.models import SyncMode

JSON = "application/json"
# What the callback URL check echoes (app/callbacks.py).
ECHOSTR = "^[A-Za-z0-9_-]{1,64}$"
UTC_TIME = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC, with Z"}


def _param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A query parameter."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


HTML = {"type": "string"}


def _error(description: str) -> dict[str, Any]:
    """A response carrying the contract's error shape."""
    return {
        "description": description,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json_body(description: str, ref: str) -> dict[str, Any]:
    """A JSON response with the given schema."""
    return {"description": description, "content": {JSON: {"schema": {"$ref": ref}}}}


TIME_PARAM_SCHEMA = {"type": "string", "examples": ["2024-05-01T00:00:00Z", "1714521600000"]}
SINCE = _param(
    "since", "Inclusive lower bound: ISO 8601 (no offset = UTC) or epoch ms.", TIME_PARAM_SCHEMA
)
UNTIL = _param(
    "until", "Exclusive upper bound ([since, until)): ISO 8601 or epoch ms.", TIME_PARAM_SCHEMA
)


def _text_schema(max_length: int) -> dict[str, Any]:
    """What `params._text` accepts: 1 to max_length characters, none of them a control one."""
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": TEXT_PATTERN}


TEXT_PATTERN = "^" + TEXT_VALUE.pattern + "$"
APP_KEY = _param("app_key", "Only this JSMS app.", _text_schema(64))
PHONE = _param("phone", "Only this phone number.", _text_schema(32))
LIMIT = _param(
    "limit",
    f"Page size (JSON only; CSV streams every match). Default {DEFAULT_LIMIT}.",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
)
CURSOR = _param(
    "cursor",
    "`next_cursor` or `resume_cursor` of an earlier page, same filters (signed: any other value "
    "is a 400).",
    {"type": "string", "maxLength": 200, "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$"},
)
FORMAT = _param(
    "format",
    "`csv` streams every matching record as CSV (also chosen by `Accept: text/csv`).",
    {"type": "string", "enum": ["json", "csv"], "default": "json"},
)
API_ERRORS = {
    "400": _error("A parameter is unknown, repeated or invalid; `parameter` names it."),
    "401": _error("No or wrong bearer token (or no tokens configured)."),
    "503": _error("The database is unavailable; retry."),
}


def _list_operation(summary: str, filters: list[dict[str, Any]], item_ref: str) -> dict[str, Any]:
    """A keyset-paginated list endpoint answering JSON or CSV."""
    return {
        "summary": summary,
        "security": [{"bearer": []}],
        "parameters": [*filters, LIMIT, CURSOR, FORMAT],
        "responses": {
            "200": {
                "description": "A page (JSON) or the whole export (CSV).",
                "content": {
                    JSON: {
                        "schema": {
                            "type": "object",
                            "required": ["items", "next_cursor"],
                            "properties": {
                                "items": {"type": "array", "items": {"$ref": item_ref}},
                                "next_cursor": {"type": ["string", "null"]},
                                "resume_cursor": {
                                    "type": "string",
                                    "description": "Where a later incremental export resumes.",
                                },
                            },
                        }
                    },
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            **API_ERRORS,
        },
    }


def _callback_operations(app_param: list[dict[str, Any]]) -> dict[str, Any]:
    """GET (URL check) and POST (receipts) of a callback URL."""
    not_found = {"404": _error("No such app is configured.")} if app_param else {}
    return {
        "get": {
            "summary": "JSMS console URL check: echoes `echostr` as text/plain.",
            "parameters": [
                *app_param,
                {
                    **_param("echostr", "Echoed verbatim.", {"type": "string", "pattern": ECHOSTR}),
                    "required": True,
                },
            ],
            "responses": {
                "200": {"description": "The echostr", "content": {"text/plain": {}}},
                "400": _error("No echostr, or not 1-64 letters, digits, `-` or `_`."),
                "403": _error("The caller is outside CALLBACK_ALLOWED_NETWORKS."),
                **not_found,
            },
        },
        "post": {
            "summary": "A signed JSMS callback (SMS_REPORT, SMS_REPLY, SMS_TEMPLATE, SMS_SIGN).",
            "parameters": app_param,
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {"$ref": "#/components/schemas/CallbackForm"}
                    }
                },
            },
            "responses": {
                "200": _json_body("Stored (after commit).", "#/components/schemas/IngestResult"),
                "400": _error(
                    "The body is not form-encoded (`form_encoded_body_expected`), a field is "
                    "missing, or `data` is not JSON."
                ),
                "401": _error(
                    "Signature missing or wrong (`missing_signature`, `bad_signature`), already "
                    "used with other data (`signature_reused`), or its timestamp outside the "
                    "replay memory (`signature_expired`)."
                ),
                "403": _error("The caller is outside CALLBACK_ALLOWED_NETWORKS."),
                **not_found,
                "413": _error("Body over 1 MiB."),
                "503": _error("The database is unavailable; JSMS will retry."),
            },
        },
    }


APP_KEY_PATH = [{"name": "app_key", "in": "path", "required": True, "schema": {"type": "string"}}]
STATUS_SCHEMA = {"type": "object", "properties": {"status": {"type": "string"}}}

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
            "last_error_text": {"type": ["string", "null"]},
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

REPORT_FILTERS = [
    APP_KEY,
    _param("msg_id", "Only this msg_id.", _text_schema(64)),
    PHONE,
    _param(
        "status",
        f"Comma-separated status codes (up to {MAX_STATUSES}), e.g. `4002,4004`.",
        {"type": "string", "pattern": "^" + STATUS_LIST.pattern + "$"},
    ),
    _param(
        "delivered",
        "Only delivered (`true`) or undelivered (`false`).",
        {"type": "string", "enum": ["true", "false"]},
    ),
    _param("source", "How the report arrived.", {"type": "string", "enum": list(SOURCES)}),
    SINCE,
    UNTIL,
]

PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "summary": "Liveness: the process is up.",
            "responses": {
                "200": {"description": "up", "content": {JSON: {"schema": STATUS_SCHEMA}}}
            },
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: the database answers and is at the newest migration.",
            "responses": {
                "200": {"description": "ready", "content": {JSON: {"schema": STATUS_SCHEMA}}},
                "503": _error(
                    "The database is unreachable (`database_unavailable`) or not at the newest "
                    "migration (`database_not_migrated`)."
                ),
            },
        }
    },
    "/": {
        "get": {
            "summary": "The status page (HTML); without a session, a redirect to /login.",
            "responses": {
                "200": {"description": "status page", "content": {"text/html": {"schema": HTML}}},
                "302": {"description": "not signed in: to /login"},
            },
        }
    },
    "/login": {
        "get": {
            "summary": "The token sign-in form (HTML).",
            "responses": {
                "200": {"description": "form", "content": {"text/html": {"schema": HTML}}}
            },
        },
        "post": {
            "summary": "Sign in with an API token; sets a signed session cookie.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "properties": {"token": {"type": "string"}},
                            "required": ["token"],
                        }
                    }
                },
            },
            "responses": {
                "302": {"description": "signed in: to /"},
                "401": {
                    "description": "token not accepted (HTML form again, or JSON for non-browsers)",
                    "content": {
                        "text/html": {"schema": HTML},
                        JSON: {"schema": {"$ref": "#/components/schemas/Error"}},
                    },
                },
            },
        },
    },
    "/logout": {
        "post": {
            "summary": "Sign out (clears the session cookie).",
            "responses": {"302": {"description": "to /login"}},
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (text exposition format), summed over all workers.",
            "responses": {
                "200": {
                    "description": "metrics",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/callbacks/jsms": _callback_operations([]),
    "/callbacks/jsms/{app_key}": _callback_operations(APP_KEY_PATH),
    "/api/v1/reports": {
        "get": _list_operation(
            "Delivery reports, keyset-paginated by id.",
            REPORT_FILTERS,
            "#/components/schemas/Report",
        )
    },
    "/api/v1/replies": {
        "get": _list_operation(
            "Uplink replies, keyset-paginated by id (`since`/`until` on replied_at).",
            [APP_KEY, PHONE, SINCE, UNTIL],
            "#/components/schemas/Reply",
        )
    },
    "/api/v1/stats/delivery": {
        "get": {
            "summary": "Delivery totals per local hour or day of a time zone (BUSINESS_TIMEZONE "
            "unless `tz`); only buckets holding reports. A DST day is one 23- or 25-hour bucket.",
            "security": [{"bearer": []}],
            "parameters": [
                APP_KEY,
                _param(
                    "since",
                    "Inclusive lower bound: ISO 8601 (no offset = in the zone, `tz`) or epoch ms.",
                    TIME_PARAM_SCHEMA,
                ),
                UNTIL,
                _param(
                    "bucket",
                    "Bucket size.",
                    {"type": "string", "enum": list(BUCKETS), "default": "day"},
                ),
                _param(
                    "tz",
                    "IANA time zone of the buckets and of offset-less `since`/`until`. "
                    "Default: the service's BUSINESS_TIMEZONE (Asia/Shanghai unless set).",
                    {"type": "string", "examples": ["Asia/Shanghai", "UTC", "Europe/Berlin"]},
                ),
            ],
            "responses": {
                "200": {
                    "description": "Buckets, oldest first.",
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "items": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/DeliveryBucket"},
                                    },
                                    "timezone": {
                                        "type": "string",
                                        "description": "The IANA zone the buckets are in.",
                                    },
                                },
                            }
                        }
                    },
                },
                **API_ERRORS,
            },
        }
    },
    "/api/v1/sync": {
        "get": {
            "summary": "Sync state of every app and kind.",
            "security": [{"bearer": []}],
            "responses": {
                "200": {
                    "description": "One item per app and kind.",
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "items": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/SyncState"},
                                    }
                                },
                            }
                        }
                    },
                },
                **API_ERRORS,
            },
        }
    },
    "/api/v1/openapi.json": {
        "get": {
            "summary": "This document (no token needed).",
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {JSON: {}}}},
        }
    },
}

OPENAPI_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "jsms-receipts",
        "version": "1",
        "description": "Receives JiGuang SMS receipts and answers queries over them.",
    },
    "paths": PATHS,
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": SCHEMAS,
    },
}
