"""Clock skew between JSMS and this server, read from the callbacks themselves.

Each signed callback carries JSMS's clock (its `timestamp`, epoch ms) and its raw event the
server's (`received_at`). Their difference is the network's delay plus any retry delay minus the
skew; delays are never negative, so over recent callbacks the largest `timestamp - received_at`
is the best estimate of how far JSMS's clock runs ahead of this server's (negative: behind, or
every callback came late). A server clock an hour behind JSMS makes every callback a
`signature_time` suspect; the status page and `jsms doctor` say so once the skew passes
SKEW_SHOWN, with the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.jsms.callback import MAX_AHEAD
from app.spans import span_text
from app.store.models import RawEvent, Source

SKEW_SHOWN = timedelta(minutes=5)
# How many of the newest callbacks (of the last day) the estimate reads.
SAMPLE = 50
SAMPLE_SPAN = timedelta(days=1)
FIX_BEHIND = (
    "this server's clock is behind JSMS's: sync it (NTP: timedatectl set-ntp true, or "
    "chronyd); callbacks signed more than {ahead} ahead are kept quarantined as "
    "signature_time: check them (GET /api/v1/quarantine?reason=signature_time), then jsms trust"
)
FIX_AHEAD = (
    "this server's clock is ahead of JSMS's, or every callback came late: check the clock "
    "(NTP: timedatectl set-ntp true, or chronyd)"
)


@dataclass(frozen=True, slots=True)
class Skew:
    """How far JSMS's clock runs ahead of the server's (negative: behind), from `callbacks`."""

    ahead: timedelta
    callbacks: int

    @property
    def shown(self) -> bool:
        """Whether it is large enough to tell an operator."""
        return abs(self.ahead) > SKEW_SHOWN

    @property
    def detail(self) -> str:
        """The skew in words, and what it was read from."""
        way = "ahead of" if self.ahead > timedelta(0) else "behind"
        span = span_text(abs(self.ahead), parts=2, smallest="s")
        return f"JSMS's clock runs {span} {way} this server's ({self.callbacks} recent callback(s))"

    @property
    def fix(self) -> str:
        """What to do about it."""
        return FIX_BEHIND.format(ahead=MAX_AHEAD) if self.ahead > timedelta(0) else FIX_AHEAD


def clock_skew(session: Session, now: datetime) -> Skew | None:
    """The skew over the newest SAMPLE callbacks of the last SAMPLE_SPAN; None without any."""
    rows = session.execute(
        select(RawEvent.callback_timestamp, RawEvent.received_at)
        .where(
            RawEvent.source == Source.CALLBACK,
            RawEvent.callback_timestamp.is_not(None),
            RawEvent.received_at >= now - SAMPLE_SPAN,
        )
        .order_by(RawEvent.id.desc())
        .limit(SAMPLE)
    ).all()
    if not rows:
        return None
    ahead_ms = max(signed - int(received.timestamp() * 1000) for signed, received in rows)
    # Clamped to what a timedelta holds: a signed timestamp may lie millennia off.
    bounded = max(min(ahead_ms, _LIMIT_MS), -_LIMIT_MS)
    return Skew(timedelta(milliseconds=bounded), len(rows))


_LIMIT_MS = 999_999_999 * 86_400_000
