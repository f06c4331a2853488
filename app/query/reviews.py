"""Template and signature reviews (`SMS_TEMPLATE`, `SMS_SIGN`) as `/api/v1/reviews` lists them:
the filters, the keyset walk (app/query/lists.py) and the items, with a text for each status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam

from app.query import lists, params
from app.query.lists import Walk
from app.store.models import ReviewResult

KINDS = ("template", "sign")
# JSMS: 1 approved, 2 rejected; clients in the wild also meet 0 (pending) and, for signatures
# only, 3 (deleted). Anything else is "unknown", stored as it came.
STATUS_TEXT: dict[str, dict[int, str]] = {
    "template": {0: "pending", 1: "approved", 2: "rejected"},
    "sign": {0: "pending", 1: "approved", 2: "rejected", 3: "deleted"},
}
REJECTED = 2
FIELDS = (
    "id",
    "app_key",
    "kind",
    "template_id",
    "sign_id",
    "status",
    "status_text",
    "refuse_reason",
    "received_at",
)
COLUMNS = (
    ReviewResult.id,
    ReviewResult.app_key,
    ReviewResult.review_type,
    ReviewResult.subject_id,
    ReviewResult.status,
    ReviewResult.refuse_reason,
    ReviewResult.ingested_at,
)
# Each filter's condition, on a parameter of its name (lists.py builds each statement once).
lists.register(ReviewResult, COLUMNS, {
    "app_key": lambda: ReviewResult.app_key == bindparam("app_key"),
    "kind": lambda: ReviewResult.review_type == bindparam("kind"),
    "statuses": lambda: ReviewResult.status.in_(bindparam("statuses", expanding=True)),
    "since": lambda: ReviewResult.ingested_at >= bindparam("since"),
    "until": lambda: ReviewResult.ingested_at < bindparam("until"),
})  # fmt: skip
_PARAMS = frozenset({"app_key", "kind", "status", "since", "until"})


@dataclass(frozen=True, slots=True)
class ReviewFilter:
    """What `/reviews` narrows to; None means "any"."""

    app_key: str | None = None
    kind: str | None = None
    statuses: tuple[int, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def fingerprint(self) -> str:
        """A short digest binding a cursor to these filters."""
        values = (self.app_key, self.kind, self.statuses, self.since, self.until)
        return params._fingerprint("reviews", values)


def status_text(kind: str, status: int) -> str:
    """What a review status means for this kind (`unknown` for a code JSMS never documented)."""
    return STATUS_TEXT.get(kind, {}).get(status, "unknown")


def parse_review_query(
    args: params.Args, cursor_key: str, wants_csv: bool = False
) -> tuple[ReviewFilter, params.PageRequest]:
    """The filters and page of a `/reviews` request (`since`/`until` on `received_at`)."""
    params._reject_unknown(args, _PARAMS | params._PAGE_PARAMS)
    since, until = params._time_range(args)
    review_filter = ReviewFilter(
        app_key=params._text(args, "app_key", 64),
        kind=params._choice(args, "kind", KINDS),
        statuses=params._statuses(args),
        since=since,
        until=until,
    )
    page = params._page(args, review_filter.fingerprint(), cursor_key, wants_csv)
    return review_filter, page


def review_walk(review_filter: ReviewFilter) -> Walk:
    """The walk over review results matching the filter."""
    f = review_filter
    values = {"app_key": f.app_key, "kind": f.kind, "statuses": f.statuses, "since": f.since,
              "until": f.until}  # fmt: skip
    return lists.walk_of(ReviewResult, values)


def review_item(row: Any) -> dict[str, Any]:
    """A review row (columns in COLUMNS order) as the API's item: `template_id` for a template,
    `sign_id` for a signature (the other is null)."""
    id_, app_key, kind, subject_id, status, refuse_reason, ingested_at = row
    return {
        "id": id_,
        "app_key": app_key,
        "kind": kind,
        "template_id": subject_id if kind == "template" else None,
        "sign_id": subject_id if kind == "sign" else None,
        "status": status,
        "status_text": status_text(kind, status),
        "refuse_reason": refuse_reason,
        "received_at": ingested_at,
    }
