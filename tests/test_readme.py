"""The README renders (its code fences are balanced), its map names every module, and its SQL
examples run, as written, on both databases, with sane answers."""

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
# A ```sql block whose first line is one of these runs on that database only.
DIALECT_LABELS = {"-- PostgreSQL": "postgresql", "-- SQLite": "sqlite"}


def test_code_fences_are_balanced_and_no_heading_is_inside_one() -> None:
    fence: str | None = None
    for number, line in enumerate(README.splitlines(), start=1):
        if line.startswith("```"):
            fence = None if fence is not None else f"line {number}: {line}"
        elif fence is not None and re.match(r"#{2,6} ", line):
            raise AssertionError(f"heading {line!r} at line {number} renders as code ({fence})")
    assert fence is None, f"the fence opened at {fence} is never closed"


def sql_blocks() -> list[tuple[str | None, str]]:
    """The README's ```sql blocks: (the database its first line names, or None, the text)."""
    blocks = []
    for block in re.findall(r"^```sql\n(.*?)^```$", README, re.M | re.S):
        first = block.strip().splitlines()[0].strip()
        blocks.append((DIALECT_LABELS.get(first), block))
    return blocks


def sql_statements(dialect: str) -> list[str]:
    """Every statement of the README's ```sql blocks meant for `dialect`: its own block(s) and
    the unlabelled ones."""
    statements = []
    for label, block in sql_blocks():
        if label not in (None, dialect):
            continue
        for statement in re.split(r";[ \t]*$", block, flags=re.M):
            lines = [line.strip() for line in statement.strip().splitlines()]
            if any(line and not line.startswith("--") for line in lines):
                statements.append(statement.strip())
    return statements


def test_each_database_has_its_own_sql_block_and_none_mixes_them() -> None:
    labels = [label for label, _ in sql_blocks()]
    assert labels.count("postgresql") == 1 and labels.count("sqlite") == 1, labels
    for label, block in sql_blocks():
        inner = [line.strip() for line in block.strip().splitlines()[1:]]
        assert not set(inner) & set(DIALECT_LABELS), f"a {label} block names another database"
    sqlite_block = next(block for label, block in sql_blocks() if label == "sqlite")
    assert "current_date" not in sqlite_block and "date_trunc" not in sqlite_block


def test_the_pandas_example_reads_phone_as_text() -> None:
    example = README[README.index("Loading records into pandas") :]
    example = example[: example.index("```\n", example.index("```python") + 9)]
    assert 'dtype={"phone": "string"' in example and "pd.read_csv(" in example


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


def test_the_map_names_every_module_under_app() -> None:
    """A newcomer finds each file from the README's map (`How it works`)."""
    start = README.index("| package | concern |")
    table = README[start : README.index("\n\n", start)]
    root = ROOT / "app"
    modules = [p for p in root.rglob("*.py") if p.name != "__init__.py" or p.parent == root]
    missing = [
        str(p.relative_to(ROOT))
        for p in modules
        if f"`{p.name}`" not in table and f"`{p.relative_to(ROOT)}`" not in table
    ]
    assert missing == []
