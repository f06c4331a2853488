"""Prometheus metrics: values after known traffic, in one process and across gunicorn workers."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from flask.testing import FlaskClient

from app.jsms.client import JsmsClient
from app.pull.puller import Puller
from app.pull.state import SyncPolicy
from app.store.db import Database
from tests.fake_jsms import FakeJsms
from tests.servers import running_gunicorn, service_env
from tests.support import APPS, FAKE_WINDOW, sample
from tests.wire import report, signed_form


def test_callback_counters_and_store_gauges(client: FlaskClient) -> None:
    before = client.get("/metrics").text
    form = signed_form("app-one", APPS["app-one"], "SMS_REPORT", [report("m1"), {"bad": 1}])
    assert client.post("/callbacks/jsms", data=form).status_code == 200
    client.post("/callbacks/jsms", data=form | {"signature": "0" * 40})
    after = client.get("/metrics")
    assert after.mimetype == "text/plain"
    # Prometheus's own content type, once: no second `charset=utf-8` from Flask.
    assert after.headers["Content-Type"] == "text/plain; version=1.0.0; charset=utf-8"

    def delta(name: str, **labels: str) -> float:
        return sample(after.text, name, **labels) - sample(before, name, **labels)

    assert delta("jsms_callbacks_total", type="SMS_REPORT", outcome="quarantined") == 1
    assert delta("jsms_callbacks_total", type="-", outcome="bad_signature") == 1
    assert delta("jsms_records_total", source="callback", kind="report", result="stored") == 1
    assert delta("jsms_records_total", source="callback", kind="report", result="quarantined") == 1
    assert delta("jsms_ingest_duration_seconds_count", source="callback") == 1
    assert sample(after.text, "jsms_quarantined_events") == 1


@pytest.mark.slow
def test_metrics_add_up_across_gunicorn_workers(database_url: str, tmp_path: Path) -> None:
    env = service_env(
        database_url,
        JSMS_APPS=",".join(f"{k}:{v}" for k, v in APPS.items()),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    with running_gunicorn(env, workers=2) as server:
        for i in range(40):  # a new connection each time, so both workers take some
            form = signed_form("app-one", APPS["app-one"], "SMS_REPORT", report(f"m{i}"))
            assert httpx.post(f"{server.url}/callbacks/jsms", data=form).status_code == 200
        scrapes = [httpx.get(f"{server.url}/metrics").text for _ in range(10)]
        writers = {p.name.rsplit("_", 1)[-1] for p in (tmp_path / "metrics").glob("counter_*.db")}
    assert len(writers) == 2, "both workers should have counted callbacks"
    for text in scrapes:  # whichever worker answers, it reports all workers' callbacks
        assert sample(text, "jsms_callbacks_total", type="SMS_REPORT", outcome="stored") == 40
        assert sample(text, "jsms_ingest_duration_seconds_count", source="callback") == 40


def test_pull_calls_and_records_pulled_come_from_the_store(
    client: FlaskClient,
    fake_jsms: FakeJsms,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    """The clock runs elsewhere (another dyno): web's /metrics reads what it recorded."""
    fake_jsms.add_reports("app-one", 700)
    database = Database(database_url)
    caplog.set_level(logging.INFO, logger="app.pull.puller")
    with JsmsClient(fake_jsms.url) as jsms:
        puller = Puller(database, jsms, SyncPolicy(window=FAKE_WINDOW), spool=tmp_path)
        puller.sync_app("app-one", APPS["app-one"], ["report"])
        fake_jsms.set_mode("app-two", "callback")
        puller.sync_app("app-two", APPS["app-two"], ["report"])
    database.engine.dispose()
    text = client.get("/metrics").text
    assert sample(text, "jsms_pull_calls_total", app_key="app-one", result="ok") == 2
    assert sample(text, "jsms_pull_calls_total", app_key="app-two", result="50202") == 1
    assert sample(text, "jsms_records_pulled_total", app_key="app-one", kind="report") == 700
    assert sample(text, "jsms_sync_mode", app_key="app-two", mode="callback") == 1
    assert sample(text, "jsms_sync_last_success_timestamp_seconds", app_key="app-one") > 0

    calls = [r for r in caplog.records if getattr(r, "event", None) == "pull_call"]
    assert [(c.app_key, c.result, c.items, c.stored) for c in calls] == [  # type: ignore[attr-defined]
        ("app-one", "ok", 500, 500),
        ("app-one", "ok", 200, 200),
        ("app-two", "50202", 0, 0),
    ]
