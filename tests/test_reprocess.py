"""`jsms reprocess`: quarantined raw events normalized again after an upgrade, idempotently."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select

from app.db import Database
from app.jsms import records
from app.models import DeliveryReport, RawEvent
from tests.conftest import APPS
from tests.jsms_callbacks import report, signed_form


def test_reprocess_recovers_what_a_fixed_parser_can_read(
    client: FlaskClient,
    runner: FlaskCliRunner,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    items = [report("m1"), report("m2", status=4004) | {"status": "4004 "}, {"junk": 1}]
    # Today's parser cannot read "SMS_REPORT_V2"; a later release learns that it is a report.
    form = signed_form("app-one", APPS["app-one"], "SMS_REPORT_V2", items)
    assert client.post("/callbacks/jsms", data=form).get_json()["quarantined"] == 3

    monkeypatch.setitem(records._PARSERS, "SMS_REPORT_V2", records._parse_report)
    first = runner.invoke(args=["jsms", "reprocess"])
    assert first.exit_code == 0, first.output
    assert "1 quarantined raw events: 2 records stored, 1 still quarantined" in first.output

    again = runner.invoke(args=["jsms", "reprocess"])
    assert "2 records stored" not in again.output and "0 records stored" in again.output
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(DeliveryReport)) == 2
        [event] = session.scalars(select(RawEvent)).all()
    assert (event.records, event.stored, event.duplicates, event.quarantined) == (3, 2, 0, 1)
    assert event.quarantine_reason and event.quarantine_reason.startswith("#2:")


def test_reprocess_with_nothing_quarantined(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["jsms", "reprocess"])
    assert result.exit_code == 0 and "reprocessed 0 quarantined raw events" in result.output
