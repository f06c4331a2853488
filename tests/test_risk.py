"""The receipts-at-risk countdowns, as pure functions: plain values in, a `Risk` out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.ops.risk import LAST_RETRY_AFTER, pull_risk, refusal_risk, risks
from app.spans import span_text
from app.store.alarms import Refusals

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def refused(app_key: str, oldest_ago: timedelta, reason: str = "bad_signature") -> Refusals:
    return Refusals(app_key, "report", reason, 3, NOW - oldest_ago, NOW - timedelta(minutes=1))


def test_jsms_retries_end_13_hours_3_minutes_after_the_first_attempt() -> None:
    assert timedelta(hours=13, minutes=3) == LAST_RETRY_AFTER


def test_a_recent_pull_leaves_three_days_and_is_not_red() -> None:
    risk = pull_risk("a", "report", "pull", NOW - timedelta(hours=1), NOW)
    assert risk is not None
    assert risk.deadline == NOW + timedelta(days=2, hours=23)
    assert (risk.red, risk.countdown()) == (False, "2 d 23 h")
    assert "in 2 d 23 h" in risk.detail and "jsms sync --app-key a" in risk.fix


def test_under_a_day_left_is_red_with_the_fix() -> None:
    risk = pull_risk("a", "reply", "pull", NOW - timedelta(days=2, hours=1), NOW)
    assert risk is not None and risk.red and risk.countdown() == "23 h 0 min"
    assert "heroku ps:scale clock=1" in risk.fix
    just_over = pull_risk("a", "reply", "pull", NOW - timedelta(days=1, hours=23), NOW)
    assert just_over is not None and not just_over.red


def test_past_the_deadline_is_overdue() -> None:
    risk = pull_risk("a", "report", "pull", NOW - timedelta(days=3, hours=2, minutes=5), NOW)
    assert risk is not None and risk.red
    assert risk.countdown() == "overdue by 2 h 5 min"
    assert "since 2 h 5 min ago" in risk.detail


def test_paused_counts_down_with_its_own_fix_and_callback_mode_does_not() -> None:
    paused = pull_risk("a", "report", "paused", NOW - timedelta(days=2, hours=12), NOW)
    assert paused is not None and paused.red and "jsms resume a" in paused.fix
    assert pull_risk("a", "report", "callback", NOW - timedelta(days=30), NOW) is None


def test_never_pulled_is_red_with_no_deadline() -> None:
    risk = pull_risk("a", "report", "pull", None, NOW)
    assert risk is not None and risk.red and risk.deadline is None
    assert risk.countdown() == "unknown" and "never pulled" in risk.detail


def test_a_refused_callback_counts_down_to_jsms_last_retry() -> None:
    risk = refusal_risk(refused("a", timedelta(hours=2)), NOW)
    assert risk.deadline == NOW + timedelta(hours=11, minutes=3)
    assert (risk.red, risk.countdown(), risk.cause) == (True, "11 h 3 min", "bad_signature")
    assert "3 callback(s) refused (bad_signature)" in risk.detail
    assert "master secret in JSMS_APPS" in risk.fix
    shared = refusal_risk(refused("", timedelta(hours=1), "database_unavailable"), NOW)
    assert shared.app_key == "(shared URL: app unknown)" and "/readyz" in shared.fix


def test_risks_are_soonest_first_and_refusals_past_the_last_retry_are_gone() -> None:
    states = [
        ("a", "report", "pull", NOW - timedelta(hours=1)),
        ("b", "report", "pull", NOW - timedelta(days=2, hours=20)),
        ("c", "report", "callback", None),
        ("d", "reply", "pull", None),
    ]
    found = risks(
        states, [refused("e", timedelta(hours=1)), refused("f", timedelta(hours=14))], NOW
    )
    assert [(r.app_key, r.cause) for r in found] == [
        ("d", "pull"),  # unknown: first
        ("b", "pull"),  # 4 h
        ("e", "bad_signature"),  # 12 h 3 min
        ("a", "pull"),  # 2 d 23 h
    ]


def test_span_text() -> None:
    assert span_text(timedelta(days=2, hours=3, minutes=59)) == "2 d 3 h"
    assert span_text(timedelta(hours=5, minutes=12, seconds=40)) == "5 h 12 min"
    assert span_text(timedelta(seconds=59)) == "0 min"
    assert span_text(abs(-timedelta(minutes=40))) == "40 min"
    # The status page's ages: the largest unit only, down to seconds.
    assert span_text(timedelta(hours=3, minutes=59), parts=1, smallest="s") == "3 h"
    assert span_text(timedelta(seconds=59), parts=1, smallest="s") == "59 s"
    assert span_text(timedelta(seconds=60), parts=1, smallest="s") == "1 min"
