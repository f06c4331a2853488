"""The business time zone as the database's BI views see it (table `business_timezone`)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, delete, insert, select

from app.store.models import BusinessTimezone
from app.timezones import offset_periods, zone_named

# The offsets are written for this span: every plausible stored time lies inside it.
SPAN = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def record_business_timezone(connection: Connection, name: str) -> None:
    """Make the views count days in the zone `name`: replace the table's rows with its UTC
    offsets over SPAN. Writes in the caller's transaction."""
    periods = offset_periods(zone_named(name), *SPAN)
    connection.execute(delete(BusinessTimezone))
    connection.execute(
        insert(BusinessTimezone),
        [{"starts_at": s, "timezone": name, "utc_offset_seconds": o} for s, o in periods],
    )


def recorded_business_timezone(connection: Connection) -> str | None:
    """The zone the views count days in now (None before migration 0006)."""
    return connection.scalar(select(BusinessTimezone.timezone).limit(1))
