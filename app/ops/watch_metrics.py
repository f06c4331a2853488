"""`/metrics` gauges for what comes back besides receipts: review rejections and balances,
read from the store at scrape time (app/ops/scrape.py collects them)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.jsms.accounts import BALANCE_FIELDS
from app.query.balances import balance_items
from app.query.reviews import REJECTED
from app.store.models import ReviewResult


def review_metrics(session: Session) -> Iterator[Metric]:
    """Rejections per app and kind (template, sign): how many, and when the newest came."""
    app_kind = ["app_key", "kind"]
    rejections = CounterMetricFamily(
        "jsms_review_rejections",
        "Template and signature reviews JSMS rejected (status 2), per app and kind.",
        labels=app_kind,
    )
    newest = GaugeMetricFamily(
        "jsms_review_last_rejection_timestamp_seconds",
        "When the newest rejection of a template or signature was received, per app and kind.",
        labels=app_kind,
    )
    rows = session.execute(
        select(
            ReviewResult.app_key,
            ReviewResult.review_type,
            func.count(),
            func.max(ReviewResult.ingested_at),
        )
        .where(ReviewResult.status == REJECTED)
        .group_by(ReviewResult.app_key, ReviewResult.review_type)
        .order_by(ReviewResult.app_key, ReviewResult.review_type)
    )
    for app_key, kind, count, at in rows:
        rejections.add_metric([app_key, kind], count)
        newest.add_metric([app_key, kind], at.timestamp())
    yield from (rejections, newest)


def balance_metrics(session: Session, apps: Iterable[str], now: datetime) -> Iterator[Metric]:
    """Each app's balance by kind (balance, voice, industry, market) as last read, the last
    day's consumption, the time left at that rate, and whether the newest read failed."""
    balance, read_at, consumed, left, failing = _balance_families()
    for item in balance_items(session, apps, now):
        app_key = item["app_key"]
        for field, kind in BALANCE_FIELDS.items():
            if item[field] is not None:
                balance.add_metric([app_key, kind], item[field])
                consumed.add_metric([app_key, kind], item["consumed_last_day"][kind])
            if item["seconds_left"][kind] is not None:
                left.add_metric([app_key, kind], item["seconds_left"][kind])
        if item["read_at"]:
            read_at.add_metric([app_key], datetime.fromisoformat(item["read_at"]).timestamp())
        if item["last_error_message"] is not None:
            failing.add_metric([app_key, item["last_result"]], 1)
    yield from (balance, read_at, consumed, left, failing)


def _balance_families() -> tuple[GaugeMetricFamily, ...]:
    app_kind = ["app_key", "kind"]
    return (
        GaugeMetricFamily(
            "jsms_app_balance",
            "Messages the app can still send, per kind, as last read from GET /v1/accounts/app.",
            labels=app_kind,
        ),
        GaugeMetricFamily(
            "jsms_app_balance_read_timestamp_seconds",
            "When the app's balance was last read successfully.",
            labels=["app_key"],
        ),
        GaugeMetricFamily(
            "jsms_app_balance_consumed_last_day",
            "Messages spent over the last day's reads (drops between reads; top-ups not counted).",
            labels=app_kind,
        ),
        GaugeMetricFamily(
            "jsms_app_balance_seconds_left",
            "When the balance runs out at the last day's rate (absent while nothing is spent).",
            labels=app_kind,
        ),
        GaugeMetricFamily(
            "jsms_app_balance_read_failing",
            "1 while the app's newest balance read failed, labelled with its result (JSMS code).",
            labels=["app_key", "result"],
        ),
    )
