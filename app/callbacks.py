"""The callback URL JSMS posts to: allow-list, echostr check, then the callback reader
(`app/jsms/callback.py`) and the one ingest path."""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

# Registers the "werkzeug.url_quote" codec error handler, read_form's (and Werkzeug's) answer to
# percent escapes that are not UTF-8.
import werkzeug.urls  # noqa: F401
from flask import Blueprint, Response, current_app, g, jsonify, request
from flask.blueprints import BlueprintSetupState
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from app.config import get_settings
from app.errors import BadInput, Forbidden, NotFound
from app.jsms.callback import Callback, CallbackRefused, read_callback
from app.jsms.records import KNOWN_TYPES
from app.metrics import CALLBACKS, INGEST_SECONDS, RECORDS
from app.network import client_address, is_allowed
from app.store.alarms import count_refusal
from app.store.group import GroupWriter
from app.store.ingest import RawPayload
from app.store.models import Source, utcnow
from app.web_db import get_database

log = logging.getLogger(__name__)
# Refusals counted durably (JSMS's retries run out ~13 h after the first attempt): a bad
# signature (JSMS's, or a wrong secret here), the database unavailable, and every refusal of a
# correctly signed callback whatever its reason (`_count_refusal`); never a stranger's missing
# signature.
COUNTED_REFUSALS = {"bad_signature", "database_unavailable"}
# What JSMS posts (form-encoded); multipart is a form too and reads the same.
URLENCODED = "application/x-www-form-urlencoded"
FORM_TYPES = frozenset({URLENCODED, "multipart/form-data"})
bp = Blueprint("callbacks", __name__, url_prefix="/callbacks/jsms")
_ECHOSTR = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The paths `receive` answers (gunicorn.conf.py leaves their POSTs out of the access log).
_CALLBACK_PATH = re.compile(r"/callbacks/jsms(?:/[^/]+)?")


def is_callback_post(method: str, path: str) -> bool:
    """Whether a request is a callback POST, which gets its own log line (`_record`)."""
    return method == "POST" and _CALLBACK_PATH.fullmatch(path) is not None


def read_form() -> MultiDict[str, str]:
    """The posted fields. The urlencoded body JSMS posts (a few hundred bytes) is decoded here
    exactly as Werkzeug's form parser would, without its general machinery: a body that is not
    UTF-8 is no form at all, blank values are kept, percent escapes that are not UTF-8 stay as
    written, `get` answers the first of repeated fields, and reading past MAX_CONTENT_LENGTH is
    a 413. Multipart goes through `request.form`."""
    if request.mimetype != URLENCODED:
        return request.form
    body = request.get_data()
    _refuse_cut_body(len(body))
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return MultiDict()
    return MultiDict(parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote"))


def _refuse_cut_body(read: int) -> None:
    """A chunked body (no Content-Length) is read only up to MAX_CONTENT_LENGTH: if more is
    still coming, the body is over the limit (413), not the part that was read."""
    if request.content_length is not None:  # the whole body was read (werkzeug's limit)
        return
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is None or read < limit:
        return
    if request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()


@bp.before_request
def _start() -> None:
    """Refuse callers outside CALLBACK_ALLOWED_NETWORKS before reading anything."""
    g.callback_started = time.perf_counter()
    settings = get_settings()
    if settings.callback_allowed_networks:
        address = client_address(request, settings.trusted_proxies)
        if not is_allowed(address, settings.callback_allowed_networks):
            raise Forbidden("this address may not post callbacks", "address_not_allowed")


@bp.get("", defaults={"app_key": None})
@bp.get("/<app_key>")
def echo(app_key: str | None) -> Response:
    """The console's URL check: answer `echostr` exactly, as plain text."""
    _candidates(app_key)
    echostr = request.args.get("echostr")
    if echostr is None:
        raise BadInput("the echostr parameter is required", "missing_echostr")
    # Echoed verbatim: only what a console check sends, never markup someone could plant.
    if not _ECHOSTR.fullmatch(echostr):
        raise BadInput("the echostr must be 1 to 64 letters, digits, '-' or '_'", "invalid_echostr")
    return Response(echostr, mimetype="text/plain")


@bp.post("", defaults={"app_key": None})
@bp.post("/<app_key>")
def receive(app_key: str | None) -> Response:
    """Read the callback (`read_callback`), store it (group commit), and only once committed
    answer 200."""
    apps = _candidates(app_key)
    _require_form()
    callback = _read(read_form(), apps)
    raw = RawPayload(
        callback.app_key, Source.CALLBACK, callback.record_type, callback.data,
        callback.use.nonce, callback.use.timestamp,
    )  # fmt: skip
    with _ingest_seconds().time():
        # Stored with whatever else this worker received meanwhile, in one transaction (the
        # raw `data` whatever the store makes of its records); returns once that committed.
        # A retry of a stored callback counts its records as duplicates.
        result = _writer().store(callback.use, raw, callback.batch, callback.suspect)
    # Committed: only now may JSMS be told the records are safe.
    g.callback_result = result
    return jsonify(result.as_json())


def _read(form: Mapping[str, str], apps: Mapping[str, str]) -> Callback:
    """The verified callback; what was learnt of a refused one (its app, its type) is left in
    `g` for the log line and the refusal count."""
    try:
        callback = read_callback(
            form, apps, now=utcnow(), memory_days=get_settings().raw_event_retention_days
        )
    except CallbackRefused as refused:
        if refused.app_key is not None:
            g.callback_app, g.callback_signed = refused.app_key, True
        if refused.record_type is not None:
            g.callback_type = refused.record_type
        raise
    g.callback_app, g.callback_type = callback.app_key, callback.record_type
    g.callback_signed = True
    return callback


@bp.after_request
def _record(response: Response) -> Response:
    """One metric sample and one log line per callback, whatever its outcome."""
    if request.method != "POST":
        return response
    record_type = g.get("callback_type", "")
    type_label = record_type if record_type in KNOWN_TYPES else ("other" if record_type else "-")
    result = g.get("callback_result")
    outcome = _outcome(response.status_code, result.quarantined if result else 0)
    _callbacks_counter(type_label, outcome).inc()
    fields: dict[str, object] = {
        "event": "callback",
        "app_key": g.get("callback_app"),
        "type": record_type[:64] or None,
        "status": response.status_code,
        "outcome": outcome,
        "duration_ms": round((time.perf_counter() - g.callback_started) * 1000, 2),
    }
    if result:
        fields.update(result.as_json())
        counts = (result.stored, result.duplicates, result.quarantined)
        for counter, count in zip(_records_counters(type_label), counts, strict=True):
            if count:  # the series exists from the first callback of the kind (labels())
                counter.inc(count)
    log.info("callback", extra=fields)
    _count_refusal(response, type_label.removeprefix("SMS_").lower())
    return response


# Labelled children, looked up once per label set: labels() validates and locks every time.
# Every label set is bounded (a source; KNOWN_TYPES, "other", "-"; the service's codes).
@functools.cache
def _ingest_seconds() -> Any:
    return INGEST_SECONDS.labels(Source.CALLBACK)


@functools.cache
def _callbacks_counter(type_label: str, outcome: str) -> Any:
    return CALLBACKS.labels(type_label, outcome)


@functools.cache
def _records_counters(type_label: str) -> tuple[Any, ...]:
    """The stored, duplicate and quarantined record counters of one callback type."""
    kind = type_label.removeprefix("SMS_").lower()
    results = ("stored", "duplicate", "quarantined")
    return tuple(RECORDS.labels(Source.CALLBACK, kind, result) for result in results)


def _count_refusal(response: Response, kind: str) -> None:
    """Count a refusal JSMS will retry (any refusal of a signed callback, a bad signature, the
    database unavailable), with its reason, against the app that signed it or the app its URL
    names ("" on the shared URL, where a bad signature names none). Best effort: with the
    database down, the 503 itself cannot be counted (the metrics and /readyz still show it)."""
    reason = str(g.get("error_code", ""))
    if response.status_code < 400:
        return
    if reason not in COUNTED_REFUSALS and not g.get("callback_signed"):
        return
    app_key = g.get("callback_app") or (request.view_args or {}).get("app_key") or ""
    if kind == "-":
        kind = _kind_of(read_form().get("type", ""))
    try:
        with get_database().session() as session, session.begin():
            count_refusal(session, app_key, kind, reason[:32], utcnow())
    except SQLAlchemyError as exc:
        log.warning("refused callback not counted: %s", type(exc).__name__)


@bp.record_once
def _make_writer(state: BlueprintSetupState) -> None:
    """One group writer per app (its thread starts with the first callback of each process)."""
    state.app.extensions["group_writer"] = GroupWriter(state.app.extensions["database"])


def _writer() -> GroupWriter:
    writer: GroupWriter = current_app.extensions["group_writer"]
    return writer


def _kind_of(record_type: str) -> str:
    """`SMS_REPORT` → `report`; anything unknown → `other`."""
    return record_type.removeprefix("SMS_").lower() if record_type in KNOWN_TYPES else "other"


def _outcome(status: int, quarantined: int) -> str:
    """The metric and log label: stored or quarantined, else the error code that was raised."""
    if status == 200:
        return "quarantined" if quarantined else "stored"
    return str(g.get("error_code", "error"))


def _candidates(app_key: str | None) -> dict[str, str]:
    """The apps a request may be signed by: all of them, or the one its URL names."""
    settings = get_settings()
    if app_key is None:
        return settings.jsms_apps
    if app_key not in settings.jsms_apps:
        raise NotFound(f"no JSMS app {app_key[:64]!r} is configured here", "unknown_app")
    return {app_key: settings.jsms_apps[app_key]}


def _require_form() -> None:
    """A body in another encoding (JSON, say) is a mistake worth naming, not a missing
    signature: JSMS always posts form fields."""
    if request.mimetype in FORM_TYPES or not (request.mimetype or request.content_length):
        return
    got = request.mimetype[:64] or "a body without a Content-Type"
    raise BadInput(
        "the callback body must be form-encoded (application/x-www-form-urlencoded) with the "
        f"fields nonce, timestamp, signature, type and data; got {got}",
        "form_encoded_body_expected",
    )
