"""The OpenAPI 3 description of the whole HTTP surface, served at `/api/v1/openapi.json`.

Hand-written on purpose: it is the contract users read. `tests/test_openapi.py` checks that every
route the app serves is described here and that every path described here is served.
"""

from __future__ import annotations

from typing import Any

from app.query.openapi_components import (
    API_ERRORS,
    APP_KEY,
    CURSOR,
    ECHOSTR,
    FORMAT,
    HTML,
    JSON,
    LIMIT,
    PHONE,
    SCHEMAS,
    SINCE,
    TIME_PARAM_SCHEMA,
    UNTIL,
    error,
    json_body,
    param,
    text_schema,
)
from app.query.openapi_watch import REVIEW_KIND, REVIEW_STATUS, WATCH_SCHEMAS
from app.query.params import (
    BUCKETS,
    MAX_STATUSES,
    QUARANTINE_REASONS,
    SOURCES,
    STATUS_LIST,
)


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
    not_found = {"404": error("No such app is configured.")} if app_param else {}
    return {"get": _url_check(app_param, not_found), "post": _receipts(app_param, not_found)}


def _url_check(app_param: list[dict[str, Any]], not_found: dict[str, Any]) -> dict[str, Any]:
    echostr = param("echostr", "Echoed verbatim.", {"type": "string", "pattern": ECHOSTR})
    return {
        "summary": "JSMS console URL check: echoes `echostr` as text/plain.",
        "parameters": [*app_param, {**echostr, "required": True}],
        "responses": {
            "200": {"description": "The echostr", "content": {"text/plain": {}}},
            "400": error("No echostr, or not 1-64 letters, digits, `-` or `_`."),
            "403": error("The caller is outside CALLBACK_ALLOWED_NETWORKS."),
            **not_found,
        },
    }


def _receipts(app_param: list[dict[str, Any]], not_found: dict[str, Any]) -> dict[str, Any]:
    form = {"schema": {"$ref": "#/components/schemas/CallbackForm"}}
    return {
        "summary": "A signed JSMS callback (SMS_REPORT, SMS_REPLY, SMS_TEMPLATE, SMS_SIGN).",
        "parameters": app_param,
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": form}},
        "responses": {
            "200": json_body("Stored (after commit).", "#/components/schemas/IngestResult"),
            "400": error(
                "The body is not form-encoded (`form_encoded_body_expected`), a field is "
                "missing, `data` is not JSON, or the nonce or timestamp cannot be remembered "
                "(`invalid_nonce`, `invalid_timestamp`)."
            ),
            "401": error(
                "Signature missing or wrong (`missing_signature`, `bad_signature`), or it "
                "already carried 16 different callbacks (`signature_reused`). A signature "
                "reused with other data, or a timestamp outside the window, is kept and "
                "quarantined (`signature_reused`, `signature_time`) with a 200."
            ),
            "403": error("The caller is outside CALLBACK_ALLOWED_NETWORKS."),
            **not_found,
            "413": error("Body over 1 MiB."),
            "503": error("The database is unavailable; JSMS will retry."),
        },
    }


APP_KEY_PATH = [{"name": "app_key", "in": "path", "required": True, "schema": {"type": "string"}}]
STATUS_SCHEMA = {"type": "object", "properties": {"status": {"type": "string"}}}

REPORT_FILTERS = [
    APP_KEY,
    param("msg_id", "Only this msg_id.", text_schema(64)),
    PHONE,
    param(
        "status",
        f"Comma-separated status codes (up to {MAX_STATUSES}), e.g. `4002,4004`.",
        {"type": "string", "pattern": "^" + STATUS_LIST.pattern + "$"},
    ),
    param(
        "delivered",
        "Only delivered (`true`) or undelivered (`false`).",
        {"type": "string", "enum": ["true", "false"]},
    ),
    param("source", "How the report arrived.", {"type": "string", "enum": list(SOURCES)}),
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
                "503": error(
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
    "/api/v1/reviews": {
        "get": _list_operation(
            "Template and signature review results, keyset-paginated by id (`since`/`until` "
            "on received_at).",
            [APP_KEY, REVIEW_KIND, REVIEW_STATUS, SINCE, UNTIL],
            "#/components/schemas/Review",
        )
    },
    "/api/v1/balances": {
        "get": {
            "summary": "Each app's latest balance (GET /v1/accounts/app, read by the clock), "
            "the last day's consumption and the time left at that rate.",
            "security": [{"bearer": []}],
            "responses": {
                "200": {
                    "description": "One item per configured app (JSMS_APPS).",
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "items": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Balance"},
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
    "/api/v1/balances/history": {
        "get": _list_operation(
            "Every balance read kept, good or failed, keyset-paginated by id (`since`/`until` "
            "on read_at).",
            [APP_KEY, SINCE, UNTIL],
            "#/components/schemas/BalanceRead",
        )
    },
    "/api/v1/opt-outs": {
        "get": _list_operation(
            "The phones opted out now, keyset-paginated by the change that opted them out "
            "(`since`/`until` on when they opted out).",
            [APP_KEY, SINCE, UNTIL],
            "#/components/schemas/OptOutListItem",
        )
    },
    "/api/v1/opt-outs/{phone}": {
        "get": {
            "summary": "May this phone be texted for this app? Its opt-out state (a phone never "
            "opted out: `opted_out` false, the rest null). One primary-key read.",
            "security": [{"bearer": []}],
            "parameters": [
                {
                    "name": "phone",
                    "in": "path",
                    "required": True,
                    "description": "The phone as replies carry it.",
                    "schema": text_schema(32),
                },
                {**APP_KEY, "required": True, "description": "The app (opt-outs are per app)."},
            ],
            "responses": {
                "200": json_body("The phone's state.", "#/components/schemas/OptOut"),
                **API_ERRORS,
            },
        }
    },
    "/api/v1/quarantine": {
        "get": _list_operation(
            "Quarantined raw events (`since`/`until` on received_at), keyset-paginated by id: "
            "callbacks whose signature the service cannot vouch for (`signature_reused`, "
            "`signature_time`: check them, then `jsms trust ID`) and payloads holding records "
            "that could not be stored (`records`: `jsms reprocess`).",
            [
                APP_KEY,
                param(
                    "reason",
                    "Only this reason.",
                    {"type": "string", "enum": list(QUARANTINE_REASONS)},
                ),
                SINCE,
                UNTIL,
            ],
            "#/components/schemas/QuarantinedEvent",
        )
    },
    "/api/v1/stats/delivery": {
        "get": {
            "summary": "Delivery totals per local hour or day of a time zone (BUSINESS_TIMEZONE "
            "unless `tz`); only buckets holding reports. A DST day is one 23- or 25-hour bucket.",
            "security": [{"bearer": []}],
            "parameters": [
                APP_KEY,
                param(
                    "since",
                    "Inclusive lower bound: ISO 8601 (no offset = in the zone, `tz`) or epoch ms.",
                    TIME_PARAM_SCHEMA,
                ),
                UNTIL,
                param(
                    "bucket",
                    "Bucket size.",
                    {"type": "string", "enum": list(BUCKETS), "default": "day"},
                ),
                param(
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
        "schemas": {**SCHEMAS, **WATCH_SCHEMAS},
    },
}
