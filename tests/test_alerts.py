"""The alert rules and the dashboard that ship in deploy/: promtool accepts and tests the rules,
and every metric they name is one a real `/metrics` scrape declares."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from flask.testing import FlaskClient

from app.store.alarms import beat
from app.store.db import Database
from app.store.models import utcnow
from tests.support import APPS, IN_CI
from tests.wire import report, signed_form

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "jsms-receipts.json"
METRIC_NAME = re.compile(r"\bjsms_[a-z0-9_]+\b")
SUFFIXES = {"counter": ("",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def promtool() -> str:
    """promtool's path; skipped locally without it (Debian: apt-get install prometheus), a
    failure under CI=true, where .ci/run installs it."""
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is not installed (apt-get install -y prometheus)"
        if IN_CI:
            pytest.fail(f"CI=true requires {message}", pytrace=False)
        pytest.skip(message)
    return path


def alert_expressions() -> dict[str, str]:
    """Each alert's name and expression."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_expressions() -> list[str]:
    """Every `expr` in the Grafana dashboard."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def declared_names(exposition: str) -> set[str]:
    """The sample names a Prometheus text exposition declares (from its TYPE lines)."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.M):
        names.update(name + suffix for suffix in SUFFIXES.get(kind, ("",)))
    return names


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    tool = promtool()
    checked = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [tool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_test_that_fires_and_one_that_does_not() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = set(alert_expressions())
    assert {
        "JsmsPullStalled",
        "JsmsAppPaused",
        "JsmsCallbackBadSignature",
        "JsmsCallbacksUnavailable",
        "JsmsQuarantineGrowing",
        "JsmsClockSilent",
        "JsmsReviewRejected",
        "JsmsBalanceLow",
        "JsmsBalanceRunningOut",
    } <= alerts
    assert fired == alerts
    assert quiet == alerts


def test_alerts_and_dashboard_name_only_metrics_the_service_exports(
    client: FlaskClient, database: Database
) -> None:
    # Some of everything, so the scrape is a real one with samples.
    form = signed_form("app-one", APPS["app-one"], "SMS_REPORT", [report("m1")])
    assert client.post("/callbacks/jsms", data=form).status_code == 200
    client.post("/callbacks/jsms/app-one", data=form | {"signature": "0" * 40})
    with database.session() as session, session.begin():
        beat(session, "test-clock", utcnow())
    exposition = client.get("/metrics").text
    exported = declared_names(exposition)
    assert "jsms_clock_last_heartbeat_timestamp_seconds" in exposition
    assert 'jsms_callbacks_refused_total{app_key="app-one"' in exposition

    expressions = [*alert_expressions().values(), *dashboard_expressions()]
    assert len(expressions) > 10
    for expression in expressions:
        named = set(METRIC_NAME.findall(expression))
        assert named, f"no jsms_ metric in {expression!r}"
        assert named <= exported, f"{expression!r} names {named - exported}, not exported"
