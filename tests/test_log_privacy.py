"""Personal data stays out of logs: phone masks in every spelling, in exception text and
tracebacks, no statement parameters in database errors, no pulled body in any log line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from app.jsms.client import JsmsClient
from app.logs import mask_phone
from app.pull import puller as pull_module
from app.pull.puller import BatchNotStored, Puller
from app.pull.state import SyncPolicy
from app.store.db import Database
from app.store.models import DeliveryReport
from tests.fake_jsms import FakeJsms
from tests.support import APPS, FAKE_WINDOW, failing_statements, json_lines


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("138-1234-5678", "138****5678"),
        ("138 1234 5678", "138****5678"),
        ("+86 13812345678", "+86 138****5678"),
        ("8613812345678", "861****5678"),
        ("+86-138-1234-5678", "+86-138****5678"),
        ("on 2026-11-25 06:00:00 from 10.0.0.1 port 5432", None),
    ],
)
def test_the_mask_catches_every_common_spelling(text: str, expected: str | None) -> None:
    assert mask_phone(text) == (expected or text)


def test_exception_text_and_tracebacks_are_masked() -> None:
    with json_lines("test.privacy") as (logger, stream):
        try:
            raise ValueError("no row for 13812345678 (138-1234-9999)")
        except ValueError:
            logger.exception("lookup failed")
    line = json.loads(stream.getvalue())
    assert "ValueError: no row for 138****5678 (138****9999)" in line["exc_info"]
    assert "13812345678" not in stream.getvalue() and "1234-9999" not in stream.getvalue()


def test_database_errors_carry_no_parameters_into_logs(store: Database) -> None:
    row = {"app_key": "a", "msg_id": "m", "phone": "13812345678", "status": 1, "delivered": None}
    with pytest.raises(IntegrityError) as failure, store.engine.begin() as connection:
        connection.execute(insert(DeliveryReport), row)  # NOT NULL columns missing
    assert "SQL parameters hidden" in str(failure.value)
    # PostgreSQL's own DETAIL still quotes the row: the log's mask catches that.
    with json_lines("test.privacy.db") as (logger, stream):
        logger.error("store failed: %s", failure.value, exc_info=failure.value)
    assert "13812345678" not in stream.getvalue()


def test_a_batch_the_store_cannot_take_is_never_logged(
    store: Database,
    fake_jsms: FakeJsms,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(pull_module, "STORE_RETRY_SECONDS", 0.3)
    fake_jsms.add_reports("app-one", 3)

    gone = failing_statements(store.engine, "INSERT INTO raw_events")
    with gone, JsmsClient(fake_jsms.url) as jsms:
        puller = Puller(store, jsms, SyncPolicy(window=FAKE_WINDOW), spool=tmp_path)
        with pytest.raises(BatchNotStored):
            puller.sync_app("app-one", APPS["app-one"], ["report"])
    [spooled] = list(tmp_path.glob("*.json"))
    body = json.loads(json.loads(spooled.read_text())["body"])
    phones = {item["phone"] for item in body}
    assert phones and "NOT STORED" in caplog.text
    assert not any(phone in caplog.text for phone in phones)
    assert "msgId" not in caplog.text
