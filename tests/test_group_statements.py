"""What a group commit costs the database, statement by statement, on SQLite and PostgreSQL:
a round trip added to the write path fails here before it shows in bench/ingest."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.store.db import Database
from app.store.group import GroupWriter, write_group
from tests.support import APPS, QueryRecorder
from tests.test_group_commit import pending
from tests.wire import report, signed_form

ONE, SECRET = "app-one", APPS["app-one"]


def expected(dialect: str, callbacks: int) -> list[str]:
    """The statements one group of `callbacks` new SMS_REPORT callbacks issues."""
    begin = ["BEGIN IMMEDIATE"] if dialect == "sqlite" else []  # PostgreSQL's is implicit
    # Raw events come back with their ids in order: PostgreSQL in one multi-row INSERT;
    # SQLAlchemy cannot promise that order from SQLite's RETURNING, so it sends one per row.
    raw_events = callbacks if dialect == "sqlite" else 1
    return [
        *begin,
        "INSERT INTO callback_signatures",  # every signature of the group in one statement
        *["INSERT INTO raw_events"] * raw_events,
        "INSERT INTO delivery_reports",  # every record of the group in one statement
    ]


@pytest.mark.parametrize("callbacks", [1, 3, 10])
def test_a_group_issues_one_insert_per_table_and_commits_once(
    database: Database, query_recorder: QueryRecorder, callbacks: int
) -> None:
    group = [pending(str(n), [report(f"m{n}"), report(f"x{n}")]) for n in range(callbacks)]
    write_group(database, group)
    assert query_recorder.heads() == expected(database.engine.dialect.name, callbacks)
    assert query_recorder.commits == 1


def test_a_callback_alone_costs_what_a_group_of_one_does(
    client: FlaskClient, database: Database, query_recorder: QueryRecorder
) -> None:
    form = signed_form(ONE, SECRET, "SMS_REPORT", [report("m1"), report("m2")])
    assert client.post("/callbacks/jsms", data=form).status_code == 200
    assert query_recorder.heads() == expected(database.engine.dialect.name, 1)
    assert query_recorder.commits == 1


def test_callbacks_queued_behind_a_held_writer_cost_one_group(
    app: Flask,
    database: Database,
    query_recorder: QueryRecorder,
    held_writer: tuple[threading.Event, threading.Event],  # noqa: F811 (the imported fixture)
) -> None:
    """The writer as the web app runs it: the first callback alone, the four that queued
    behind it in one group."""
    entered, release = held_writer
    forms = [signed_form(ONE, SECRET, "SMS_REPORT", [report(f"m{n}")]) for n in range(5)]
    answers: dict[int, Any] = {}

    def post(n: int) -> None:
        answers[n] = app.test_client().post("/callbacks/jsms", data=forms[n])

    threads = [threading.Thread(target=post, args=(n,)) for n in range(len(forms))]
    threads[0].start()
    assert entered.wait(10)
    writer: GroupWriter = app.extensions["group_writer"]
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 10
    while len(writer._waiting) < len(forms) - 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(writer._waiting) == len(forms) - 1
    release.set()
    for thread in threads:
        thread.join(10)
    assert [answers[n].status_code for n in range(len(forms))] == [200] * len(forms)
    dialect = database.engine.dialect.name
    assert query_recorder.heads() == expected(dialect, 1) + expected(dialect, len(forms) - 1)
    assert query_recorder.commits == 2
