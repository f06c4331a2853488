"""Template and signature reviews through HTTP: `/api/v1/reviews` with its texts and filters,
the status page's rejections of the last 7 days, and the rejection metrics."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import update

from app.store.db import Database
from app.store.models import ReviewResult
from tests.support import APPS, TOKEN
from tests.wire import signed_form

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def post_reviews(client: FlaskClient, app_key: str, record_type: str, data: Any) -> None:
    form = signed_form(app_key, APPS[app_key], record_type, data)
    response = client.post("/callbacks/jsms", data=form)
    assert response.status_code == 200, response.get_json()


def seed(client: FlaskClient) -> None:
    """app-one: templates approved, rejected, pending and of an unknown status 7, a signature
    in each of 0..3; app-two: one rejected template."""
    post_reviews(client, "app-one", "SMS_TEMPLATE", [
        {"tempId": 101, "status": 1},
        {"tempId": 102, "status": 2, "refuseReason": "签名与内容不符"},
        {"tempId": 103, "status": 0},
        {"tempId": 104, "status": 7},
        {"tempId": 105, "status": 3},
    ])  # fmt: skip
    post_reviews(client, "app-one", "SMS_SIGN", [
        {"signId": 201, "status": 0},
        {"signId": 202, "status": 1},
        {"signId": 203, "status": 2, "refuseReason": "missing licence"},
        {"signId": 204, "status": 3},
    ])  # fmt: skip
    post_reviews(client, "app-two", "SMS_TEMPLATE", {"tempId": 301, "status": 2})


def reviews(client: FlaskClient, **query: str) -> dict[str, Any]:
    response = client.get("/api/v1/reviews", query_string=query, headers=AUTH)
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def test_reviews_are_listed_with_their_texts(client: FlaskClient) -> None:
    seed(client)
    items = reviews(client)["items"]
    texts = {(i["template_id"] or i["sign_id"]): i["status_text"] for i in items}
    assert texts == {
        "101": "approved", "102": "rejected", "103": "pending", "104": "unknown",
        "105": "unknown",  # 3 (deleted) is a signature's status only
        "201": "pending", "202": "approved", "203": "rejected", "204": "deleted",
        "301": "rejected",
    }  # fmt: skip
    [rejected] = [i for i in items if i["template_id"] == "102"]
    assert rejected == {
        "id": rejected["id"],
        "app_key": "app-one",
        "kind": "template",
        "template_id": "102",
        "sign_id": None,
        "status": 2,
        "status_text": "rejected",
        "refuse_reason": "签名与内容不符",
        "received_at": rejected["received_at"],
    }
    assert rejected["received_at"].endswith("Z")
    [sign] = [i for i in items if i["sign_id"] == "203"]
    assert sign["template_id"] is None and sign["kind"] == "sign"
    assert sign["refuse_reason"] == "missing licence"


def test_reviews_are_filtered_and_paged(client: FlaskClient, database: Database) -> None:
    seed(client)
    ids = lambda body: sorted(i["template_id"] or i["sign_id"] for i in body["items"])  # noqa: E731
    assert ids(reviews(client, kind="sign")) == ["201", "202", "203", "204"]
    assert ids(reviews(client, status="2")) == ["102", "203", "301"]
    assert ids(reviews(client, status="2", kind="template", app_key="app-one")) == ["102"]
    assert ids(reviews(client, app_key="app-two")) == ["301"]
    # since/until are on received_at: move app-two's review back two days.
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    with database.session() as session, session.begin():
        session.execute(
            update(ReviewResult)
            .where(ReviewResult.app_key == "app-two")
            .values(ingested_at=two_days_ago)
        )
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert "301" not in ids(reviews(client, since=yesterday))
    assert ids(reviews(client, until=yesterday)) == ["301"]

    seen, cursor = [], None
    while True:
        page = reviews(client, limit="3", **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= 3
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 10

    exported = client.get("/api/v1/reviews?format=csv&kind=template", headers=AUTH)
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert exported.mimetype == "text/csv" and len(rows) == 6
    assert {r["status_text"] for r in rows} == {"approved", "rejected", "pending", "unknown"}


def test_bad_filters_are_refused_and_a_token_is_needed(client: FlaskClient) -> None:
    for query, name in (
        ({"kind": "templates"}, "kind"),
        ({"status": "rejected"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"sign_id": "1"}, "sign_id"),
        ({"limit": "1001"}, "limit"),
    ):
        response = client.get("/api/v1/reviews", query_string=query, headers=AUTH)
        assert response.status_code == 400, query
        assert response.get_json()["error"]["parameter"] == name
    assert client.get("/api/v1/reviews").status_code == 401
    page = reviews(client, kind="sign")
    other = client.get(
        "/api/v1/reviews", query_string={"cursor": page["resume_cursor"]}, headers=AUTH
    )
    assert other.status_code == 400  # a cursor is bound to its filters


def test_a_rejection_is_on_the_status_page_for_seven_days(
    client: FlaskClient, database: Database
) -> None:
    seed(client)
    eight_days_ago = datetime.now(UTC) - timedelta(days=8)
    with database.session() as session, session.begin():
        session.execute(
            update(ReviewResult)
            .where(ReviewResult.app_key == "app-two")
            .values(ingested_at=eight_days_ago)
        )
    assert client.post("/login", data={"token": TOKEN}).status_code == 302
    html = client.get("/").get_data(as_text=True)
    section = html.split('<table id="rejections">')[1].split("</table>")[0]
    assert "<td>102</td>" in section and "签名与内容不符" in section
    assert "<td>203</td>" in section and "missing licence" in section
    assert "<td>101</td>" not in section  # approved
    assert "<td>301</td>" not in section  # rejected 8 days ago


def test_a_rejection_is_in_the_metrics(client: FlaskClient) -> None:
    assert "jsms_review_rejections_total{" not in client.get("/metrics").text
    seed(client)
    text = client.get("/metrics").text
    assert 'jsms_review_rejections_total{app_key="app-one",kind="template"} 1.0' in text
    assert 'jsms_review_rejections_total{app_key="app-one",kind="sign"} 1.0' in text
    assert 'jsms_review_rejections_total{app_key="app-two",kind="template"} 1.0' in text
    newest = [
        line
        for line in text.splitlines()
        if line.startswith('jsms_review_last_rejection_timestamp_seconds{app_key="app-two"')
    ]
    [line] = newest
    assert abs(float(line.rsplit(" ", 1)[1]) - datetime.now(UTC).timestamp()) < 600
