"""Catching up is visible (`catching_up`, records pulled in the last minute), and the report and
reply backlogs of one app share its window: neither waits until the other is empty."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from flask import Flask

from app import create_app
from app.jsms.client import JsmsClient
from app.pull.puller import Puller
from app.pull.state import PassResult, SyncPolicy
from app.store.db import Database
from tests.api_data import AUTH
from tests.fake_jsms import FakeJsms, synthetic_replies
from tests.support import APPS, FAKE_WINDOW, TOKEN, make_settings

APP, SECRET = "app-one", APPS["app-one"]


def sync_item(app: Flask, kind: str) -> dict[str, Any]:
    response = app.test_client().get("/api/v1/sync", headers=AUTH)
    assert response.status_code == 200
    [item] = [i for i in response.get_json()["items"] if (i["app_key"], i["kind"]) == (APP, kind)]
    return item  # type: ignore[no-any-return]


def status_page(app: Flask) -> str:
    client = app.test_client()
    client.post("/login", data={"token": TOKEN})
    return client.get("/").get_data(as_text=True)


def test_catching_up_is_true_during_a_drain_and_false_after(
    database_url: str, fake_jsms: FakeJsms, store: Database, tmp_path: Path
) -> None:
    fake_jsms.add_reports(APP, 1200)
    fake_jsms.hold_answer(after=1)  # the second batch is handed out, its answer held
    app = create_app(make_settings(database_url, jsms_rate_limit_seconds=FAKE_WINDOW))
    results: list[PassResult] = []
    with JsmsClient(fake_jsms.url) as client:
        puller = Puller(store, client, SyncPolicy(window=FAKE_WINDOW), spool=tmp_path)
        drain = threading.Thread(
            target=lambda: results.extend(puller.sync_app(APP, SECRET, ["report"]))
        )
        drain.start()
        try:
            assert fake_jsms.wait_for_held() is not None
            during = sync_item(app, "report")
            page = status_page(app)
        finally:
            fake_jsms.release()
            drain.join(timeout=60)
    after = sync_item(app, "report")

    assert (during["catching_up"], during["records_pulled_last_minute"]) == (True, 500)
    assert "catching up" in page and "500 pulled in the last minute" in page
    assert (after["catching_up"], after["records_pulled_last_minute"]) == (False, 1200)
    assert [r.items for r in results] == [1200]
    assert "catching up" not in status_page(app)
    app.extensions["database"].engine.dispose()
    assert sync_item_never_pulled(database_url)["catching_up"] is False


def sync_item_never_pulled(database_url: str) -> dict[str, Any]:
    app = create_app(make_settings(database_url))
    try:
        response = app.test_client().get("/api/v1/sync", headers=AUTH)
        [item] = [i for i in response.get_json()["items"] if i["app_key"] == "app-two"][:1]
        return item  # type: ignore[no-any-return]
    finally:
        app.extensions["database"].engine.dispose()


def test_reports_and_replies_take_turns_in_the_window(
    fake_jsms: FakeJsms, store: Database, tmp_path: Path
) -> None:
    fake_jsms.add_reports(APP, 1500)
    fake_jsms.add(APP, "reply", synthetic_replies(700))
    with JsmsClient(fake_jsms.url) as client:
        puller = Puller(store, client, SyncPolicy(window=FAKE_WINDOW), spool=tmp_path)
        report, reply = puller.sync_app(APP, SECRET, ["report", "reply"])

    kinds = [c.kind for c in fake_jsms.calls]
    assert kinds == ["report", "reply", "report", "reply", "report", "report"]
    assert (report.outcome, report.calls, report.items) == ("drained", 4, 1500)
    assert (reply.outcome, reply.calls, reply.items) == ("drained", 2, 700)
    assert fake_jsms.calls_with(50201) == []
