"""End to end: the `web` process as deployed (gunicorn, two workers) on each database."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app.store.db import Database
from app.store.models import DeliveryReport, RawEvent
from tests.servers import running_gunicorn, service_env
from tests.support import APPS
from tests.wire import report, signed_form

pytestmark = pytest.mark.slow


def test_gunicorn_serves_callbacks_and_collapses_concurrent_duplicates(database_url: str) -> None:
    env = service_env(database_url, JSMS_APPS=",".join(f"{k}:{v}" for k, v in APPS.items()))
    form = signed_form("app-one", APPS["app-one"], "SMS_REPORT", [report("m1"), report("m2")])
    with running_gunicorn(env) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        echo = http.get("/callbacks/jsms/app-one", params={"echostr": "x7Yz0aBc"})
        assert (echo.status_code, echo.text) == (200, "x7Yz0aBc")

        with ThreadPoolExecutor(max_workers=12) as pool:
            responses = list(pool.map(lambda _: http.post("/callbacks/jsms", data=form), range(48)))
        assert [r.status_code for r in responses] == [200] * 48
        assert sum(r.json()["stored"] for r in responses) == 2

        bad = http.post("/callbacks/jsms", data=form | {"signature": "f" * 40})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "bad_signature"
        big = http.post("/callbacks/jsms", data={"data": "x" * (1024 * 1024 + 10)})
        assert big.status_code == 413 and big.json()["error"]["code"] == "request_entity_too_large"
        assert http.get("/readyz").status_code == 200

    database = Database(database_url)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(DeliveryReport)) == 2
        # One signed form posted 48 times: the first is stored, the rest are retries of it.
        assert session.scalar(select(func.count()).select_from(RawEvent)) == 1
    database.engine.dispose()


def test_a_callback_logs_one_line_and_other_routes_keep_their_access_line(
    database_url: str, tmp_path: Path
) -> None:
    env = service_env(database_url, JSMS_APPS=",".join(f"{k}:{v}" for k, v in APPS.items()))
    form = signed_form("app-one", APPS["app-one"], "SMS_REPORT", [report("m1")])
    log = tmp_path / "web.log"
    with (
        running_gunicorn(env, workers=1, log_path=log) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        assert http.post("/callbacks/jsms", data=form).status_code == 200
        refused = http.post("/callbacks/jsms/app-one", data=form | {"signature": "0" * 40})
        assert refused.status_code == 401
        assert http.get("/callbacks/jsms/app-one", params={"echostr": "x7Yz"}).status_code == 200
        assert http.get("/readyz").status_code == 200
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    callbacks = [line for line in lines if line["logger"] == "app.callbacks"]
    access = [line["message"] for line in lines if line["logger"] == "gunicorn.access"]
    # Each callback POST: its own line only, with what the access line would have said.
    assert [(c["status"], c["outcome"]) for c in callbacks] == [
        (200, "stored"),
        (401, "bad_signature"),
    ]
    assert all(c["duration_ms"] > 0 for c in callbacks)
    assert not [m for m in access if '"POST /callbacks' in m]
    # Every other request keeps gunicorn's access line, the callback URL's GET included.
    assert [m for m in access if "/callbacks" in m] == [
        next(m for m in access if '"GET /callbacks/jsms/app-one" 200' in m)
    ]
    assert any('"GET /readyz" 200' in m for m in access)


def test_a_request_gunicorn_refuses_itself_gets_a_json_error(database_url: str) -> None:
    """A request line over gunicorn's 4,094 bytes never reaches the app: still the contract's
    JSON error, not gunicorn's HTML page."""
    with (
        running_gunicorn(service_env(database_url), workers=1) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        response = http.get("/api/v1/opt-outs", params={"cursor": "x" * 4100})
        inside = http.get("/api/v1/opt-outs", params={"cursor": "x" * 4000})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "bad_request"
    assert "too large" in response.json()["error"]["message"]
    assert inside.status_code == 401  # inside the limit: the app answers (no token)
