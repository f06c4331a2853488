"""Load reports and replies through the one write path, and call the query API."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.jsms.records import ParsedBatch, ReplyMessage, Report
from app.store.db import Database
from app.store.ingest import RawPayload, ingest
from tests.support import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def at(text: str) -> datetime:
    """An aware UTC datetime from 'YYYY-MM-DD HH:MM[:SS]'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def report(
    msg_id: str, phone: str = "13800000001", status: int = 4001, when: str = "2024-05-01 08:00"
) -> Report:
    """A parsed delivery report."""
    return Report(msg_id=msg_id, phone=phone, status=status, received_at=at(when))


def reply(phone: str, content: str, when: str = "2024-05-01 08:00") -> ReplyMessage:
    """A parsed uplink reply."""
    return ReplyMessage(phone=phone, content=content, replied_at=at(when))


def store(
    database: Database,
    app_key: str,
    records: Sequence[Report | ReplyMessage],
    source: str = "callback",
) -> None:
    """Ingest the records in one committed transaction, as a callback or pull would."""
    kind = "SMS_REPORT" if records and isinstance(records[0], Report) else "SMS_REPLY"
    with database.session() as session:
        ingest(session, RawPayload(app_key, source, kind, "[]"), ParsedBatch(list(records)))
        session.commit()


def get(
    client: FlaskClient, path: str, headers: dict[str, str] | None = None, **params: Any
) -> TestResponse:
    """GET an API path with the test token and the given query parameters."""
    return client.get(f"/api/v1{path}", query_string=params, headers={**AUTH, **(headers or {})})


def walk(client: FlaskClient, path: str, **params: Any) -> tuple[list[dict[str, Any]], str]:
    """Follow next_cursor until null; every item, and the last page's resume_cursor."""
    items: list[dict[str, Any]] = []
    while True:
        response = get(client, path, **params)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        items.extend(body["items"])
        if body["next_cursor"] is None:
            return items, body["resume_cursor"]
        params["cursor"] = body["next_cursor"]
