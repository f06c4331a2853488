"""`GET /metrics`: the Prometheus exposition, right across gunicorn's workers and the clock.

Counters and histograms come from every process (`app/metrics.py`); what is true of the store
(sync state, quarantine, pull calls) is read from the database at scrape time, so it is right
whichever process or dyno did the work.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth import require_bearer
from app.config import get_settings
from app.metrics import PROCESS_METRICS
from app.ops.watch_metrics import balance_metrics, review_metrics
from app.store.alarms import last_heartbeat, refusal_totals
from app.store.db import DATABASE_UNAVAILABLE, Database
from app.store.models import PullCallCount, RawEvent, SyncState, utcnow
from app.store.seen import last_callbacks
from app.web_db import get_database

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)


class StoreCollector(Collector):
    """Gauges read from the database at scrape time."""

    def __init__(self, database: Database, apps: Iterable[str] = ()) -> None:
        self.database = database
        # The configured apps: their last callbacks count even before the puller saw them.
        self.apps = frozenset(apps)

    def collect(self) -> Iterator[Metric]:
        """The store's gauges; a database that cannot answer leaves them out, so the processes'
        own counters (the callbacks answered 503 among them) are still scraped."""
        try:
            with self.database.session() as session:
                metrics = [*self._sync_metrics(session), *_alarm_metrics(session)]
                metrics += review_metrics(session)
                metrics += balance_metrics(session, self.apps, utcnow())
        except DATABASE_UNAVAILABLE as exc:
            log.warning("store metrics left out: the database is unavailable (%s)", exc)
            return
        yield from metrics

    def _sync_metrics(self, session: Session) -> Iterator[Metric]:
        states = session.scalars(select(SyncState)).all()
        yield from _state_metrics(states, utcnow())
        calls = CounterMetricFamily(
            "jsms_pull_calls",
            "Upstream pull calls by app, kind and result (ok, JSMS code, unavailable).",
            labels=["app_key", "kind", "result"],
        )
        for row in session.scalars(select(PullCallCount)):
            calls.add_metric([row.app_key, row.kind, row.result], row.calls)
        quarantined = GaugeMetricFamily(
            "jsms_quarantined_events", "Raw events holding records that could not be normalized."
        )
        count = session.scalar(
            select(func.count()).select_from(RawEvent).where(RawEvent.quarantined > 0)
        )
        quarantined.add_metric([], count or 0)
        last_callback = GaugeMetricFamily(
            "jsms_last_callback_timestamp_seconds",
            "When the newest signed callback was stored, per app and kind (from the store).",
            labels=["app_key", "kind"],
        )
        apps = set(self.apps) | {state.app_key for state in states}
        for (app_key, kind), at in sorted(last_callbacks(session, apps).items()):
            last_callback.add_metric([app_key, kind], at.timestamp())
        yield from (quarantined, calls, last_callback)


def _state_metrics(states: Sequence[SyncState], now: datetime) -> Iterator[Metric]:
    """What each app and kind's sync state says: mode, last success, records pulled, lag."""
    app_kind = ["app_key", "kind"]
    last_success = GaugeMetricFamily(
        "jsms_sync_last_success_timestamp_seconds",
        "When the last successful pull ended, per app and kind.",
        labels=app_kind,
    )
    mode = GaugeMetricFamily(
        "jsms_sync_mode", "1 for the current mode of each app and kind.", labels=[*app_kind, "mode"]
    )
    pulled = CounterMetricFamily(
        "jsms_records_pulled",
        "Records handed out by the upstream, per app and kind.",
        labels=app_kind,
    )
    ages = {
        "newest_record_age_seconds": GaugeMetricFamily(
            "jsms_sync_newest_record_age_seconds",
            "Pull lag: age of the newest record pulled (its carrier time), per app and kind.",
            labels=app_kind,
        ),
        "last_success_age_seconds": GaugeMetricFamily(
            "jsms_sync_last_success_age_seconds",
            "Seconds since the last successful pull, per app and kind.",
            labels=app_kind,
        ),
    }
    for state in states:
        labels = [state.app_key, state.kind]
        mode.add_metric([*labels, state.mode], 1)
        pulled.add_metric(labels, state.records_pulled)
        if state.last_success_at:
            last_success.add_metric(labels, state.last_success_at.timestamp())
        for name, age in state.lag(now).items():
            if age is not None:
                ages[name].add_metric(labels, age)
    yield from (last_success, mode, pulled, *ages.values())


def _alarm_metrics(session: Session) -> Iterator[Metric]:
    """What the "clock silent" and "callbacks refused" alerts watch, read from the store."""
    heartbeat = GaugeMetricFamily(
        "jsms_clock_last_heartbeat_timestamp_seconds",
        "When a clock process last wrote its heartbeat (every 30 s while it runs).",
    )
    refused = CounterMetricFamily(
        "jsms_callbacks_refused",
        "Callbacks refused in a way JSMS retries (bad_signature, database_unavailable, and "
        "every refusal of a correctly signed callback, e.g. signature_reused), per app named "
        "by the URL or signature (empty: the shared URL), kind and reason.",
        labels=["app_key", "kind", "reason"],
    )
    beat_at = last_heartbeat(session)
    if beat_at:
        heartbeat.add_metric([], beat_at.timestamp())
    for app_key, kind, reason, count in refusal_totals(session):
        refused.add_metric([app_key, kind, reason], count)
    yield from (heartbeat, refused)


@bp.get("/metrics")
def metrics() -> Response:
    """The Prometheus text exposition: process metrics aggregated, plus the store's gauges;
    behind METRICS_TOKEN as a bearer token when one is set."""
    settings = get_settings()
    if settings.metrics_token:
        require_bearer(request, (settings.metrics_token,))
    registry = CollectorRegistry()
    if settings.prometheus_multiproc_dir:
        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in PROCESS_METRICS:
            registry.register(collector)
    registry.register(StoreCollector(get_database(), get_settings().jsms_apps))
    # content_type, not mimetype: Flask would add a second `; charset=utf-8` to a mimetype.
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
