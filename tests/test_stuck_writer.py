"""A stuck writer cannot hang or swell a worker: a lock on the tables fails the writer's
statement before the request's wait ends (503), `/readyz` says so while it lasts, and the
service recovers when it goes; the queue is bounded in bytes, and a callback whose request gave
up leaves it. Through HTTP; the lock on PostgreSQL, the queue on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy.engine import make_url

from app import create_app
from app.store import group
from app.store.db import Database
from app.store.group import GroupWriter
from app.store.models import RawEvent
from tests.support import APPS, holding_the_writer, make_settings, row_count
from tests.wire import report, signed_form

ONE, SECRET = "app-one", APPS["app-one"]
# A callback of about 0.9 MiB: as large as the body limit lets it be.
BIG = json.dumps([{"msgId": "x" * 900_000, "phone": "1", "status": 4001}])


def form(n: int, data: str | None = None) -> dict[str, str]:
    return signed_form(ONE, SECRET, "SMS_REPORT", data or [report(f"m{n}")])


def test_a_writer_held_behind_a_table_lock_answers_503_and_readyz_says_so(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("LOCK TABLE is PostgreSQL's")
    monkeypatch.setattr(group, "WAIT_SECONDS", 4.0)  # lock_timeout 2 s (ConnectionLimits)
    app = create_app(make_settings(database_url))
    client = app.test_client()
    try:
        assert client.post("/callbacks/jsms", data=form(0)).status_code == 200
        plain = make_url(database_url).set(drivername="postgresql")
        with psycopg.connect(plain.render_as_string(hide_password=False)) as locker:
            locker.execute("LOCK TABLE raw_events IN ACCESS EXCLUSIVE MODE")
            for n in range(1, 10):
                refused = client.post("/callbacks/jsms", data=form(n))
                assert refused.status_code == 503
                # The lock timeout answered, not the request's wait running out.
                assert refused.get_json()["error"] == {
                    "code": "database_unavailable",
                    "message": "the database is unavailable; retry",
                }
                if client.get("/readyz").status_code == 503:
                    break
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.get_json()["error"]["code"] == "writer_stalled"
            locker.rollback()
        assert client.post("/callbacks/jsms", data=form(99)).status_code == 200
        assert client.get("/readyz").status_code == 200
        assert row_count(app.extensions["database"], RawEvent) == 2
    finally:
        app.extensions["database"].engine.dispose()


@pytest.fixture
def long_held_writer(database: Database) -> Iterator[tuple[threading.Event, threading.Event]]:
    """`held_writer`, held up to a minute: big callbacks take a while to arrive on a busy
    machine. Yields (entered, release)."""
    with holding_the_writer(database.engine, seconds=60) as held:
        yield held


def test_the_queue_is_bounded_in_bytes_while_big_callbacks_keep_coming(
    app: Flask,
    database: Database,
    long_held_writer: tuple[threading.Event, threading.Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bound = 4 * len(BIG) + 1000  # four big callbacks fit, a fifth does not
    monkeypatch.setattr(group, "MAX_QUEUED_BYTES", bound)
    monkeypatch.setattr(group, "WAIT_SECONDS", 120.0)  # none gives up while the test looks
    entered, release = long_held_writer
    answers: dict[int, Any] = {}

    def post(n: int) -> None:
        answers[n] = app.test_client().post("/callbacks/jsms", data=form(n, BIG))

    first = threading.Thread(target=post, args=(0,))
    first.start()
    assert entered.wait(10)  # the first is in the writer's hands, held
    writer: GroupWriter = app.extensions["group_writer"]
    threads = [threading.Thread(target=post, args=(n,)) for n in range(1, 13)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 50
    while len(answers) < 8 and time.monotonic() < deadline:
        assert writer.queued_bytes <= bound
        time.sleep(0.01)
    assert len(answers) == 8  # refused at once, while the writer is still held
    assert {a.status_code for a in answers.values()} == {503}
    assert {a.get_json()["error"]["message"] for a in answers.values()} == {
        "callbacks are queued up behind a slow database; retry"
    }
    assert len(writer._waiting) == 4 and writer.queued_bytes <= bound
    release.set()
    for thread in [first, *threads]:
        thread.join(30)
    assert sorted(a.status_code for a in answers.values()) == [200] * 5 + [503] * 8
    assert row_count(database, RawEvent) == 5 and writer.queued_bytes == 0


def test_a_callback_whose_request_gave_up_leaves_the_queue(
    app: Flask,
    database: Database,
    held_writer: tuple[threading.Event, threading.Event],  # noqa: F811 (the imported fixture)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(group, "WAIT_SECONDS", 0.5)
    entered, release = held_writer
    client = app.test_client()
    answers: list[Any] = []
    first = threading.Thread(
        target=lambda: answers.append(app.test_client().post("/callbacks/jsms", data=form(0)))
    )
    first.start()
    assert entered.wait(10)
    gave_up = client.post("/callbacks/jsms", data=form(1))
    assert gave_up.status_code == 503
    assert gave_up.get_json()["error"]["message"] == (
        "the database did not commit the callback in time"
    )
    writer: GroupWriter = app.extensions["group_writer"]
    assert writer._waiting == [] and writer.queued_bytes == 0
    release.set()
    first.join(30)
    assert answers[0].status_code == 503  # it gave up too, but was already being written
    deadline = time.monotonic() + 10
    while writer._running and time.monotonic() < deadline:  # the writer ends once idle
        time.sleep(0.05)
    # The first committed after all (JSMS's retry of it will be a duplicate); the second was
    # dropped (its retry will store it).
    assert row_count(database, RawEvent) == 1
