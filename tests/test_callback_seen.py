"""Per app and kind, when the last signed callback was stored: read from the store, so every
process and every restart shows the same, in /metrics, /api/v1/sync and the status page."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from sqlalchemy import select

from app import create_app
from app.config import Settings
from app.query.items import iso_utc
from app.store.db import Database
from app.store.models import RawEvent
from tests.support import APPS, TOKEN, sample
from tests.wire import report, signed_form


def test_last_callback_per_app_and_kind_everywhere(
    client: FlaskClient, database: Database, settings: Settings
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    before = {
        (i["app_key"], i["kind"]): i["last_callback_at"]
        for i in client.get("/api/v1/sync", headers=auth).get_json()["items"]
    }
    assert before == dict.fromkeys([(a, k) for a in APPS for k in ("report", "reply")])

    form = signed_form("app-one", APPS["app-one"], "SMS_REPORT", [report("m1")])
    assert client.post("/callbacks/jsms", data=form).status_code == 200
    bad = signed_form("app-two", "not-the-secret", "SMS_REPORT", [report("m2")])
    assert client.post("/callbacks/jsms", data=bad).status_code == 401
    with database.session() as session:
        stored_at = session.scalars(select(RawEvent.received_at)).one()

    # A fresh app on the same database (another dyno, or after a restart) sees the same.
    other = create_app(settings)
    try:
        fresh = other.test_client()
        items = fresh.get("/api/v1/sync", headers=auth).get_json()["items"]
        seen = {(i["app_key"], i["kind"]): i["last_callback_at"] for i in items}
        assert seen == before | {("app-one", "report"): iso_utc(stored_at)}

        metrics = fresh.get("/metrics").text
        gauge = "jsms_last_callback_timestamp_seconds"
        assert sample(metrics, gauge, app_key="app-one", kind="report") == stored_at.timestamp()
        assert f'{gauge}{{app_key="app-two"' not in metrics  # never got a valid callback

        fresh.post("/login", data={"token": TOKEN})
        page = fresh.get("/").get_data(as_text=True)
    finally:
        other.extensions["database"].engine.dispose()
    cells = re.findall(r'<td class="last-callback">(.*?)<br>', page)
    # rows by app, then kind: app-one reply, app-one report, app-two reply, app-two report
    assert [cell == "never" for cell in cells] == [True, False, True, True]
    assert cells[1].endswith(" ago")
    # The page's times are in the business zone (it used to pass on a UTC time elsewhere).
    shown = stored_at.astimezone(settings.business_zone()).strftime("%Y-%m-%d %H:%M")
    assert f'<span class="muted">{shown}</span>' in page
