"""The callback URL JSMS posts to: echostr check, signature, then the one ingest path."""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.datastructures import MultiDict

from app.config import Settings
from app.db import get_session
from app.errors import BadInput, NotFound, Unauthenticated
from app.ingest import RawPayload, ingest
from app.jsms.records import parse_payload
from app.jsms.signature import find_signer

log = logging.getLogger(__name__)
bp = Blueprint("callbacks", __name__, url_prefix="/callbacks/jsms")


@bp.get("", defaults={"app_key": None})
@bp.get("/<app_key>")
def echo(app_key: str | None) -> Response:
    """The console's URL check: answer `echostr` exactly, as plain text."""
    _candidates(app_key)
    echostr = request.args.get("echostr")
    if echostr is None:
        raise BadInput("the echostr parameter is required", "missing_echostr")
    return Response(echostr, mimetype="text/plain")


@bp.post("", defaults={"app_key": None})
@bp.post("/<app_key>")
def receive(app_key: str | None) -> Response:
    """Verify, parse, store in one transaction, and only then answer 200."""
    apps = _candidates(app_key)
    form = request.form
    signature = form.get("signature")
    if not signature:
        raise Unauthenticated("the signature is missing", "missing_signature")
    nonce, timestamp = _field(form, "nonce"), _field(form, "timestamp")
    signer = find_signer(apps, nonce, timestamp, signature)
    if signer is None:
        raise Unauthenticated("the signature does not match any configured app", "bad_signature")
    record_type, data = _field(form, "type"), _field(form, "data")
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than json can read
        raise BadInput("the data field is not JSON", "invalid_data") from None
    batch = parse_payload(record_type, payload)
    raw = RawPayload(signer, "callback", record_type, data, nonce, _as_int(timestamp))
    session = get_session()
    try:
        result = ingest(session, raw, batch)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    log.info(
        "callback app=%s type=%s stored=%d duplicates=%d quarantined=%d",
        signer,
        record_type[:64],
        result.stored,
        result.duplicates,
        result.quarantined,
    )
    return jsonify(result.as_json())


def _candidates(app_key: str | None) -> dict[str, str]:
    """The apps a request may be signed by: all of them, or the one its URL names."""
    settings: Settings = current_app.config["SETTINGS"]
    if app_key is None:
        return settings.jsms_apps
    if app_key not in settings.jsms_apps:
        raise NotFound(f"no JSMS app {app_key[:64]!r} is configured here", "unknown_app")
    return {app_key: settings.jsms_apps[app_key]}


def _field(form: MultiDict[str, str], name: str) -> str:
    value = form.get(name)
    if value is None or value == "":
        raise BadInput(f"the {name} field is required", f"missing_{name}")
    return str(value)


def _as_int(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if -(2**63) <= value < 2**63 else None
