"""The README renders (its code fences are balanced) and its SQL examples run, as written, on
both databases, with sane answers."""

from __future__ import annotations

import re
import time
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import text

from app.store.db import Database
from tests.servers import ROOT
from tests.support import APPS
from tests.wire import report, signed_form

README = (ROOT / "README.md").read_text(encoding="utf-8")
DIALECT_LABELS = {"-- PostgreSQL:": "postgresql", "-- SQLite:": "sqlite"}


def test_code_fences_are_balanced_and_no_heading_is_inside_one() -> None:
    fence: str | None = None
    for number, line in enumerate(README.splitlines(), start=1):
        if line.startswith("```"):
            fence = None if fence is not None else f"line {number}: {line}"
        elif fence is not None and re.match(r"#{2,6} ", line):
            raise AssertionError(f"heading {line!r} at line {number} renders as code ({fence})")
    assert fence is None, f"the fence opened at {fence} is never closed"


def sql_statements(dialect: str) -> list[str]:
    """Every statement of the README's ```sql blocks meant for `dialect`: unlabelled ones, and
    those under a `-- PostgreSQL:` / `-- SQLite:` line naming it."""
    statements = []
    for block in re.findall(r"^```sql\n(.*?)^```$", README, re.M | re.S):
        for statement in re.split(r";[ \t]*$", block, flags=re.M):
            lines = [line.strip() for line in statement.strip().splitlines()]
            if not any(line and not line.startswith("--") for line in lines):
                continue
            labels = {DIALECT_LABELS[line] for line in lines if line in DIALECT_LABELS}
            if not labels or dialect in labels:
                statements.append(statement.strip())
    return statements


def seed_today(client: FlaskClient) -> None:
    """Reports for today: 3 of 4 delivered for app-one; two replies from two phones."""
    now_ms = int(time.time() * 1000)
    reports = [report(f"r{i}", phone=f"1380013800{i}", receive_time=now_ms) for i in range(3)]
    reports.append(report("r3", status=4004, receive_time=now_ms))
    replies = [
        {"phone": f"1390013900{i}", "replyTime": now_ms, "content": f"reply {i}"} for i in range(2)
    ]
    for record_type, data in (("SMS_REPORT", reports), ("SMS_REPLY", replies)):
        form = signed_form("app-one", APPS["app-one"], record_type, data)
        assert client.post("/callbacks/jsms", data=form).get_json()["stored"] == len(data)


def test_every_sql_example_runs_and_gives_sane_answers(
    client: FlaskClient, database: Database
) -> None:
    seed_today(client)
    dialect = database.engine.dialect.name
    statements = sql_statements(dialect)
    assert len(statements) >= 5, statements  # 3 BI examples + the sync-state queries
    answers: list[list[dict[str, Any]]] = []
    with database.engine.connect() as connection:
        for statement in statements:
            rows = connection.execute(text(statement)).mappings().all()
            answers.append([dict(row) for row in rows])
    rates = [
        float(value)
        for rows in answers
        for row in rows
        for column, value in row.items()
        if "rate" in column and value is not None
    ]
    # 3 of 4 delivered: a rate of 0 would be integer division, a rate of None a bad day filter
    assert rates and all(rate == 0.75 for rate in rates), answers
    failures = [row for rows in answers for row in rows if "failures" in row]
    assert [(row["status"], int(row["failures"])) for row in failures] == [(4004, 1)]
    replies = [row for rows in answers for row in rows if "replies" in row]
    assert [(row["replies"], row["phones"]) for row in replies] == [(2, 2)]
