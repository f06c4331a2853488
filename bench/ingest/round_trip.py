"""The service with one more round trip to PostgreSQL in each group: what a round trip costs.

Served beside `wsgi:app` (`--round-trip`), each group sends a `SELECT 1` before its first
statement, inside its transaction. The difference in gunicorn's CPU per callback between the
two is what one round trip of the writer costs in the company of the request threads (its
wait gives up the GIL, and taking it back is a switch between threads): the price of each of
a group's round trips, and so what removing one could save.
"""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.orm import Session

import app.store.group as group
from app import create_app
from app.jsms.callback import SignedUse
from app.store.ingest import transaction_connection
from app.store.replay import Verdict, first_uses


def _one_more_round_trip(
    session: Session | Connection, uses: Sequence[SignedUse], now: datetime
) -> list[Verdict]:
    transaction_connection(session).exec_driver_sql("SELECT 1").all()
    return first_uses(session, uses, now)


group.replay.first_uses = _one_more_round_trip  # type: ignore[assignment]
app = create_app()
