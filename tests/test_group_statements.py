"""What a group commit costs the database, statement by statement, on SQLite and PostgreSQL:
a round trip added to the write path fails here before it shows in bench/ingest."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from app.store.db import Database
from app.store.group import write_group
from tests.support import APPS, QueryRecorder
from tests.test_group_commit import pending
from tests.wire import report, signed_form


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
    form = signed_form("app-one", APPS["app-one"], "SMS_REPORT", [report("m1"), report("m2")])
    assert client.post("/callbacks/jsms", data=form).status_code == 200
    assert query_recorder.heads() == expected(database.engine.dialect.name, 1)
    assert query_recorder.commits == 1
