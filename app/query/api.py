"""The query API (JSON or CSV, bearer tokens): thin views over `app.query`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from flask import Blueprint, Response, request, stream_with_context
from sqlalchemy import Connection, Row
from sqlalchemy.orm import Session

from app.auth import require_bearer
from app.config import get_settings
from app.query import (
    balance_history,
    balances,
    items,
    lists,
    opt_outs,
    params,
    reviews,
    stats,
    sync_items,
)
from app.query.cursor import encode_cursor
from app.query.openapi import OPENAPI_DOCUMENT
from app.web_db import get_database, get_session

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# Endpoints anyone may read: the API's description holds no data.
PUBLIC_ENDPOINTS = frozenset({"api.openapi"})


@bp.before_request
def require_token() -> None:
    """Let a request through only with `Authorization: Bearer <a configured token>`."""
    if request.endpoint not in PUBLIC_ENDPOINTS:
        require_bearer(request, get_settings().api_tokens)


@bp.get("/reports")
def reports() -> Response:
    """Delivery reports matching the filters: a keyset page as JSON, or all of them as CSV."""
    return _list(
        params.parse_report_query,
        lists.report_walk,
        items.REPORT_FIELDS,
        items.report_item,
        "reports.csv",
    )


@bp.get("/replies")
def replies() -> Response:
    """Replies matching the filters: a keyset page as JSON, or all of them as CSV."""
    return _list(
        params.parse_reply_query,
        lists.reply_walk,
        items.REPLY_FIELDS,
        items.reply_item,
        "replies.csv",
    )


@bp.get("/reviews")
def review_results() -> Response:
    """Template and signature review results: a keyset page as JSON, or all of them as CSV."""
    return _list(
        reviews.parse_review_query,
        reviews.review_walk,
        reviews.FIELDS,
        reviews.review_item,
        "reviews.csv",
    )


@bp.get("/balances")
def app_balances() -> Response:
    """Each app's latest balance, the last day's consumption and the time left at that rate."""
    params.reject_any(request.args)
    session = get_session()
    with session.begin():
        body = {"items": balances.balance_items(session, get_settings().jsms_apps)}
    return _json(body)


@bp.get("/balances/history")
def balance_reads() -> Response:
    """Every balance read kept: a keyset page as JSON, or all of them as CSV."""
    return _list(
        balance_history.parse_history_query,
        balance_history.history_walk,
        balance_history.FIELDS,
        balance_history.history_item,
        "balances.csv",
    )


@bp.get("/opt-outs")
def opt_out_list() -> Response:
    """The phones opted out now, matching the filters: a keyset page, or all of them as CSV."""
    return _list(
        params.parse_opt_out_query,
        opt_outs.opt_out_walk,
        items.OPT_OUT_FIELDS,
        items.opt_out_item,
        "opt-outs.csv",
    )


@bp.get("/opt-outs/<path:phone>")
def opt_out(phone: str) -> Response:
    """May this phone be texted for this app? One primary-key read, made to precede a send."""
    app_key, phone = params.parse_opt_out_lookup(phone, request.args)
    state = opt_outs.lookup(get_database(), app_key, phone)
    return _json(items.opt_out_lookup_item(app_key, phone, state))


@bp.get("/quarantine")
def quarantine() -> Response:
    """Quarantined raw events matching the filters: a keyset page as JSON, or all as CSV."""
    return _list(
        params.parse_quarantine_query,
        lists.quarantine_walk,
        items.QUARANTINE_FIELDS,
        items.quarantine_item,
        "quarantine.csv",
    )


@bp.get("/stats/delivery")
def delivery_stats() -> Response:
    """Delivery totals, rate and counts by status per local hour or day of `tz` (by default
    BUSINESS_TIMEZONE); `timezone` names the zone the buckets are in."""
    query = params.parse_stats_query(request.args, get_settings().business_zone())
    session = get_session()
    with session.begin():
        items = stats.delivery_stats(session, query)
    return _json({"items": items, "timezone": query.zone.key})


@bp.get("/sync")
def sync() -> Response:
    """The sync state of every app and kind."""
    params.reject_any(request.args)
    settings = get_settings()
    session = get_session()
    with session.begin():
        items = sync_items.sync_items(
            session, settings.jsms_apps, window=settings.jsms_rate_limit_seconds
        )
    return _json({"items": items})


@bp.get("/openapi.json")
def openapi() -> Response:
    """This service's OpenAPI 3 description (no token needed)."""
    return _json(OPENAPI_DOCUMENT)


Serializer = Callable[[Any], dict[str, Any]]


def _list(
    parse: Callable[..., tuple[Any, params.PageRequest]],
    walk_of: Callable[[Any], lists.Walk],
    fields: tuple[str, ...],
    item: Serializer,
    filename: str,
) -> Response:
    """A list endpoint: its filters and page from the query string (`parse`), then a keyset
    page as JSON, or every matching row as CSV."""
    query_filter, page = parse(request.args, _cursor_key(), _wants_csv())
    walk = walk_of(query_filter)
    if page.format == "csv":
        return _csv(walk, page, fields, item, filename)
    return _json_page(walk, page, item)


def _json_page(walk: lists.Walk, page: params.PageRequest, item: Serializer) -> Response:
    """One page; `next_cursor` while more follow, `resume_cursor` always (for later exports)."""
    fingerprint = page.fingerprint
    with _page_reads() as connection:
        result = lists.fetch_page(connection, walk, page.after, page.limit)
    last = page.after if result.last_id is None else result.last_id
    next_cursor = encode_cursor(last, fingerprint, _cursor_key()) if result.has_more else None
    # Everything up to the horizon has been looked at; nothing below it can still appear.
    resume_after = last if result.has_more else max(page.after, result.horizon)
    return _json(
        {
            "items": [item(row) for row in result.rows],
            "next_cursor": next_cursor,
            "resume_cursor": encode_cursor(resume_after, fingerprint, _cursor_key()),
        }
    )


def _csv(
    walk: lists.Walk,
    page: params.PageRequest,
    fields: tuple[str, ...],
    item: Serializer,
    filename: str,
) -> Response:
    """Every matching record after the cursor (ignoring `limit`), streamed in keyset chunks,
    up to the horizon at the start of the export."""
    session = get_session()
    with _page_reads() as connection:
        horizon = lists.read_horizon(connection, walk.model)

    def lines() -> Iterator[str]:
        rows = _export_rows(session, walk, page.after, horizon)
        yield from items.csv_lines(fields, (item(row) for row in rows))

    response = Response(stream_with_context(lines()), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@contextmanager
def _page_reads() -> Iterator[Connection]:
    """The unit of work of a page (or an export's horizon): a connection of the readers'
    engine, for one transaction that ends with the block.

    On PostgreSQL that transaction runs in autocommit: the horizon's SHARE lock ends with its
    own statement (ingest waits no longer than that), the page's query (READ COMMITTED, a fresh
    snapshot) sees every id up to the horizon, and no BEGIN/COMMIT round trips are paid. On
    SQLite an ordinary read transaction: horizon and page read one snapshot. A Core connection,
    not the request's session: a page needs none of the ORM's bookkeeping.
    """
    with get_database().reader_engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            yield connection.execution_options(isolation_level="AUTOCOMMIT")
        else:
            with connection.begin():
                yield connection


def _export_rows(
    session: Session, walk: lists.Walk, after: int, horizon: int
) -> Iterator[Row[Any]]:
    """Every matching row after `after` up to the horizon, a chunk at a time, each chunk its own
    short transaction, so a long download holds no lock and no snapshot."""
    while True:
        with session.begin():
            rows = lists.fetch_chunk(session.connection(), walk, after, horizon)
        yield from rows
        if len(rows) < lists.STREAM_CHUNK:
            return
        after = rows[-1].id


def _cursor_key() -> str:
    """What signs cursors: SECRET_KEY (or the key derived from the tokens when it is unset)."""
    return get_settings().session_secret()


def _wants_csv() -> bool:
    """True when the client prefers CSV to JSON in its Accept header."""
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"])
    return best == "text/csv"


def _json(body: dict[str, Any]) -> Response:
    """JSON in the order the fields were built (the contract's order); orjson, because a
    1,000-item page is serialized several times faster than by the standard library."""
    # OPT_UTC_Z writes UTC datetimes exactly as iso_utc does (`…T08:11:33.5Z`), in C; a naive
    # one is UTC, as everywhere in the store (a page's times on PostgreSQL, app/query/pg_pages.py).
    options = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
    return Response(orjson.dumps(body, option=options), mimetype="application/json")
