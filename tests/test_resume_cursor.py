"""`resume_cursor` from every page of a walk, not only the last: resuming from any page's
cursor, while ingest goes on, returns every matching record after that page exactly once; on
SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from app.store.db import Database
from app.store.models import DeliveryReport
from tests.api_data import get, report, store, walk

LIMIT = 4
WRITER_BATCHES = 12


def app_one_ids(database: Database) -> list[int]:
    with database.session() as session:
        query = select(DeliveryReport.id).where(DeliveryReport.app_key == "app-one")
        return list(session.scalars(query.order_by(DeliveryReport.id)))


def pages(client: FlaskClient) -> list[dict[str, Any]]:
    """Every page of one walk of app-one's reports, as answered."""
    bodies: list[dict[str, Any]] = []
    params: dict[str, Any] = {"app_key": "app-one", "limit": LIMIT}
    while True:
        response = get(client, "/reports", **params)
        assert response.status_code == 200, response.get_json()
        bodies.append(response.get_json())
        if bodies[-1]["next_cursor"] is None:
            return bodies
        params["cursor"] = bodies[-1]["next_cursor"]


def resumed_ids(client: FlaskClient, cursor: str) -> list[int]:
    rest, _ = walk(client, "/reports", app_key="app-one", limit=5, cursor=cursor)
    return [item["id"] for item in rest]


def cursor_after(cursor: str) -> int:
    """The id a cursor resumes after (its signed body is readable JSON)."""
    body = cursor.partition(".")[0]
    after: int = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["after"]
    return after


def all_ids(database: Database) -> list[int]:
    with database.session() as session:
        return list(session.scalars(select(DeliveryReport.id).order_by(DeliveryReport.id)))


def seen_up_to(walked: list[dict[str, Any]], page: int) -> set[int]:
    return {item["id"] for body in walked[: page + 1] for item in body["items"]}


def test_resuming_from_any_page_returns_the_rest_exactly_once(
    client: FlaskClient, database: Database
) -> None:
    for n in range(6):  # app-two's records interleave: ids app-one's filter must skip
        store(database, "app-one", [report(f"pre{n}-{i}") for i in range(4)])
        store(database, "app-two", [report(f"other{n}")])
    go, stop = threading.Event(), threading.Event()

    def writer() -> None:
        go.wait()
        for batch in range(WRITER_BATCHES):
            store(database, "app-one", [report(f"w{batch}-{i}") for i in range(3)])
            store(database, "app-two", [report(f"w-other{batch}")])
            if stop.wait(0.01):
                return

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        go.set()
        walked = pages(client)
        assert len(walked) >= 6  # middle pages to resume from
        for page, body in enumerate(walked):
            committed = set(app_one_ids(database))
            seen = seen_up_to(walked, page)
            rest = resumed_ids(client, body["resume_cursor"])
            assert rest == sorted(set(rest)), f"page {page}: a record twice or out of order"
            assert not set(rest) & seen, f"page {page}: the walk's records again"
            assert committed - seen <= set(rest), f"page {page}: a record missed"
    finally:
        stop.set()
        thread.join()

    # Quiet now: from each page's cursor, exactly the records after that page.
    everything = app_one_ids(database)
    for page, body in enumerate(walked):
        seen = seen_up_to(walked, page)
        assert resumed_ids(client, body["resume_cursor"]) == [
            i for i in everything if i not in seen
        ], f"page {page} of {len(walked)}"


def test_the_last_pages_resume_cursor_is_at_the_horizon_not_its_last_row(
    client: FlaskClient, database: Database
) -> None:
    """A page after which no more follow has looked at every id up to the horizon, matching or
    not: its resume cursor is there, so a resume does not scan the other app's rows again. A
    page with more to come resumes after its own last row."""
    store(database, "app-one", [report(f"one{i}") for i in range(3)])
    store(database, "app-two", [report(f"two{i}") for i in range(2)])
    ids, horizon = app_one_ids(database), max(all_ids(database))
    assert horizon > ids[-1]

    first = get(client, "/reports", app_key="app-one", limit=2).get_json()
    assert cursor_after(first["resume_cursor"]) == ids[1]
    last = get(client, "/reports", app_key="app-one", limit=2, cursor=first["next_cursor"])
    assert last.get_json()["next_cursor"] is None
    assert cursor_after(last.get_json()["resume_cursor"]) == horizon
    whole = get(client, "/reports", app_key="app-one", limit=10).get_json()
    assert [item["id"] for item in whole["items"]] == ids
    assert cursor_after(whole["resume_cursor"]) == horizon
    # From there, only what comes later; an empty page keeps the cursor where it was.
    empty = get(client, "/reports", app_key="app-one", cursor=whole["resume_cursor"]).get_json()
    assert empty["items"] == []
    assert cursor_after(empty["resume_cursor"]) == horizon
