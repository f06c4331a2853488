"""The operator's status page at `/`: server-rendered, behind the API tokens (login + cookie)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth import digest_is_known, token_digest, token_is_valid
from app.config import Settings, get_settings
from app.errors import Unauthenticated
from app.ops.risk import receipts_at_risk
from app.ops.skew import clock_skew
from app.ops.watch import watch_context
from app.query import stats, sync_items
from app.query.params import StatsQuery
from app.spans import span_text
from app.store.models import RawEvent, utcnow
from app.web_db import get_session

bp = Blueprint("status", __name__, template_folder="templates")
CHART_DAYS = 14


@bp.app_template_filter("short_time")
def short_time(value: str | datetime | None) -> str:
    """An API time (`2026-11-25T07:03:14.909242Z`) or an aware datetime, in the business time
    zone: `2026-11-25 15:03`."""
    if not value:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(get_settings().business_zone()).strftime("%Y-%m-%d %H:%M")


def _signed_in(settings: Settings) -> bool:
    """The cookie names a token that is still configured (revoking a token signs it out)."""
    return digest_is_known(str(session.get("token_digest", "")), settings.api_tokens)


@bp.get("/")
def status_page() -> Response:
    """The status page, or the way to the login form."""
    settings = get_settings()
    if not _signed_in(settings):
        return redirect(url_for("status.login_form"))  # type: ignore[return-value]
    now = utcnow()
    db = get_session()
    zone = settings.business_zone()
    with db.begin():  # one read transaction for every panel, ended before the page renders
        window = settings.jsms_rate_limit_seconds
        apps = settings.jsms_apps
        sync = [_with_age(item, now) for item in sync_items.sync_items(db, apps, now, window)]
        callbacks = _callbacks_last_day(db, now)
        daily_rates = _daily_rates(db, now, zone)
        quarantined = _quarantined(db)
        at_risk = receipts_at_risk(db, settings.jsms_apps, now)
        watch = watch_context(db, settings.jsms_apps, now)
        skew = clock_skew(db, now)
    page = render_template(
        "status.html",
        now=now.astimezone(zone),
        timezone=zone.key,
        sync=sync,
        callbacks=callbacks,
        chart=delivery_chart(daily_rates, now, zone),
        quarantined=quarantined,
        at_risk=at_risk,
        **watch,
        skew=skew,
    )
    response = make_response(page)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/login")
def login_form() -> str:
    """A token form."""
    return render_template("login.html", error=None)


@bp.post("/login")
def login() -> Response:
    """Sign in with an API token; the cookie keeps its digest, signed."""
    settings = get_settings()
    token = request.form.get("token", "").strip()
    if not token_is_valid(token, settings.api_tokens):
        if not request.accept_mimetypes.accept_html:
            raise Unauthenticated("that token is not accepted")
        page = render_template("login.html", error="That token is not accepted.")
        return make_response(page, 401)
    session.clear()
    session["token_digest"] = token_digest(token)
    session.permanent = True
    return redirect(url_for("status.status_page"))  # type: ignore[return-value]


@bp.post("/logout")
def logout() -> Response:
    """Forget the cookie."""
    session.clear()
    return redirect(url_for("status.login_form"))  # type: ignore[return-value]


def _with_age(item: dict[str, Any], now: datetime) -> dict[str, Any]:
    newest = item.get("newest_record_age_seconds")
    newest_age = None if newest is None else timedelta(seconds=newest)
    return {
        **item,
        "since_success": _human(_age(item.get("last_success_at"), now)),
        "since_callback": _human(_age(item.get("last_callback_at"), now)),
        "newest_record_age": _human(newest_age),
    }


def _age(iso: str | None, now: datetime) -> timedelta | None:
    return now - datetime.fromisoformat(iso.replace("Z", "+00:00")) if iso else None


def _human(delta: timedelta | None) -> str:
    """`3 h ago`, `45 s ago`: an age in its largest unit; `never` without one."""
    if delta is None:
        return "never"
    return f"{span_text(delta, parts=1, smallest='s')} ago"


def _callbacks_last_day(db: Session, now: datetime) -> list[dict[str, Any]]:
    rows = db.execute(
        select(
            RawEvent.type,
            func.count(),
            func.sum(RawEvent.stored),
            func.sum(RawEvent.duplicates),
            func.sum(RawEvent.quarantined),
        )
        .where(RawEvent.source == "callback", RawEvent.received_at >= now - timedelta(days=1))
        .group_by(RawEvent.type)
        .order_by(func.count().desc())
    ).all()
    keys = ("type", "callbacks", "stored", "duplicates", "quarantined")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def _daily_rates(db: Session, now: datetime, zone: ZoneInfo) -> list[dict[str, Any]]:
    """The chart's days: local days of the business time zone, from midnight CHART_DAYS ago."""
    first_day = now.astimezone(zone).date() - timedelta(days=CHART_DAYS - 1)
    start = datetime.combine(first_day, time(0), tzinfo=zone).astimezone(UTC)
    return stats.delivery_stats(db, StatsQuery(None, start, None, "day", zone))


def _quarantined(db: Session, limit: int = 20, excerpt: int = 4000) -> list[Any]:
    """The latest quarantined raw events, with the start of their reasons only (rows written
    before reasons were bounded can hold megabytes)."""
    reason = func.substr(RawEvent.quarantine_reason, 1, excerpt).label("quarantine_reason")
    return list(
        db.execute(
            select(
                RawEvent.id,
                RawEvent.app_key,
                RawEvent.type,
                RawEvent.received_at,
                RawEvent.quarantined,
                reason,
            )
            .where(RawEvent.quarantined > 0)
            .order_by(RawEvent.id.desc())
            .limit(limit)
        )
    )


def delivery_chart(buckets: list[dict[str, Any]], now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    """Bars for the last CHART_DAYS local days (a day without reports has no bar), in SVG
    units; `buckets` are the stats' day buckets in `zone` (their `start` begins with the day)."""
    width, height, top, bottom = 700, 220, 20, 30
    slot = width / CHART_DAYS
    by_day = {b["start"][:10]: b for b in buckets}
    today = now.astimezone(zone).date()
    bars = []
    for index in range(CHART_DAYS):
        day = (today - timedelta(days=CHART_DAYS - 1 - index)).isoformat()
        bucket = by_day.get(day)
        bar: dict[str, Any] = {
            "x": round(index * slot + 4, 1),
            "width": round(slot - 8, 1),
            "label": day[5:],
            "day": day,
        }
        if bucket:
            rate = float(bucket["delivery_rate"])
            bar_height = round(rate * (height - top - bottom), 1)
            bar.update(
                rate=rate,
                total=bucket["total"],
                height=bar_height,
                y=round(height - bottom - bar_height, 1),
            )
        bars.append(bar)
    return {"width": width, "height": height, "baseline": height - bottom, "top": top, "bars": bars}
