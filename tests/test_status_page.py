"""The status page: login, content against a seeded database, and a real headless Chromium."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.store.db import Database
from app.store.models import RawEvent, SyncState
from tests.servers import running_gunicorn, service_env
from tests.support import APPS, TOKEN
from tests.wire import report, signed_form

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def seed(client: FlaskClient, database: Database) -> None:
    """Two days of reports (3 of 4 delivered today, 1 of 2 yesterday), one quarantined event,
    and sync states in each mode."""
    now = datetime.now(UTC)
    today, yesterday = now - timedelta(minutes=5), now - timedelta(days=1)
    ms = lambda t: int(t.timestamp() * 1000)  # noqa: E731
    items = [report(f"t{i}", status=4001, receive_time=ms(today)) for i in range(3)]
    items += [report("t3", status=4004, receive_time=ms(today))]
    items += [
        report("y0", receive_time=ms(yesterday)),
        report("y1", 4002, receive_time=ms(yesterday)),
    ]
    items[-1]["status"] = 4002
    forms = [
        signed_form("app-one", APPS["app-one"], "SMS_REPORT", items),
        signed_form("app-one", APPS["app-one"], "SMS_MYSTERY", {"x": 1}),
    ]
    for form in forms:
        assert client.post("/callbacks/jsms", data=form).status_code == 200
    with database.session() as session:
        session.add_all(
            [
                SyncState(
                    app_key="app-one",
                    kind="report",
                    mode="callback",
                    last_error_code=50202,
                    last_error_message="pull not allow",
                    last_attempt_at=now,
                    next_attempt_at=now + timedelta(hours=1),
                ),
                SyncState(
                    app_key="app-two",
                    kind="report",
                    mode="paused",
                    last_error_code=50301,
                    last_error_message="account frozen",
                    last_attempt_at=now,
                ),
                SyncState(
                    app_key="app-two",
                    kind="reply",
                    mode="pull",
                    last_success_at=now - timedelta(minutes=3),
                    last_attempt_at=now,
                ),
            ]
        )
        session.commit()


def sign_in(client: FlaskClient) -> None:
    response = client.post("/login", data={"token": TOKEN})
    assert response.status_code == 302 and response.location == "/"


def test_status_page_needs_a_token(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 302 and response.location == "/login"
    assert b'name="token"' in client.get("/login").data
    wrong = client.post("/login", data={"token": "nope"}, headers={"Accept": "text/html"})
    assert wrong.status_code == 401 and b"not accepted" in wrong.data
    as_json = client.post("/login", data={"token": "nope"}, headers={"Accept": "application/json"})
    assert as_json.status_code == 401 and as_json.get_json()["error"]["code"] == "unauthorized"
    assert client.get("/").status_code == 302


def test_status_page_shows_modes_callbacks_chart_and_quarantine(
    client: FlaskClient, database: Database
) -> None:
    seed(client, database)
    sign_in(client)
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "mode-callback" in html and "mode-paused" in html and "mode-pull" in html
    assert "callback mode: JSMS posts this app&#39;s receipts" in html  # 50202 explained
    assert "developer account frozen" in html  # 50301 explained, with its fix
    assert "fix: contact JSMS support; once the account is unfrozen, run: jsms resume app-two" in (
        html
    )
    assert "3 min ago" in html
    assert "<td>SMS_REPORT</td><td>1</td><td>6</td>" in html
    assert 'data-rate="0.7500"' in html and 'data-rate="0.5000"' in html
    assert "unknown type &#39;SMS_MYSTERY&#39;" in html
    assert "13800138000" not in html  # no phone number on the page
    # Every time in the tables is in the business zone (or relative): no UTC clock time mixed in.
    at_risk = html[html.index('id="at-risk"') : html.index("</table>", html.index('id="at-risk"'))]
    assert "last successful pull 3 min ago" in at_risk and "UTC" not in at_risk


def test_the_status_page_shows_only_the_start_of_a_huge_quarantine_reason(
    client: FlaskClient, database: Database
) -> None:
    """Rows written before reasons were bounded can hold megabytes: only an excerpt is read."""
    huge = "".join(f"#{i}: expected an object, got a list\n" for i in range(200_000))
    with database.session() as session:
        session.add(
            RawEvent(
                app_key="app-one",
                source="callback",
                type="SMS_REPORT",
                payload="[]",
                records=200_000,
                quarantined=200_000,
                quarantine_reason=huge,
            )
        )
        session.commit()
    sign_in(client)
    html = client.get("/").get_data(as_text=True)
    assert "#0: expected an object, got a list" in html
    assert "#199999:" not in html and len(html) < 50_000


def test_revoking_the_token_signs_out(app: Flask, client: FlaskClient) -> None:
    sign_in(client)
    assert client.get("/").status_code == 200
    app.config["SETTINGS"] = app.config["SETTINGS"].model_copy(update={"api_tokens": ("other",)})
    assert client.get("/").status_code == 302


def test_logout(client: FlaskClient) -> None:
    sign_in(client)
    assert client.post("/logout").status_code == 302
    assert client.get("/").status_code == 302


@pytest.mark.slow
def test_status_page_in_headless_chromium(
    client: FlaskClient, database: Database, database_url: str, tmp_path: Path
) -> None:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium for the status page test (apt-get install chromium)")
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    seed(client, database)
    env = service_env(
        database_url, JSMS_APPS=",".join(f"{k}:{v}" for k, v in APPS.items()), API_TOKENS=TOKEN
    )
    screenshot = tmp_path / "status-page.png"
    with running_gunicorn(env, workers=1) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(f"{server.url}/")
        assert page.url.endswith("/login")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_selector("#delivery-chart")
        assert page.locator("#sync .mode-paused").inner_text() == "paused"
        assert page.locator("#delivery-chart rect.bar").count() == 2
        assert "SMS_MYSTERY" in page.locator("#quarantined").inner_text()
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("STATUS_SCREENSHOT"):  # how docs/status-page.png is made
        shutil.copy(screenshot, os.environ["STATUS_SCREENSHOT"])
