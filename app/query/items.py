"""How rows leave the API: JSON items and CSV lines with the contract's field names."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from app.jsms.codes import DELIVERY_STATUS_TEXT, status_text
from app.store.opt_outs import OptOutState

REPORT_FIELDS = (
    "id",
    "app_key",
    "msg_id",
    "phone",
    "status",
    "status_text",
    "delivered",
    "received_at",
    "source",
    "ingested_at",
    "extra",
)
REPLY_FIELDS = (
    "id", "app_key", "phone", "content", "replied_at", "source", "ingested_at", "extra"
)  # fmt: skip
OPT_OUT_FIELDS = (
    "app_key", "phone", "opted_out", "since", "keyword", "source", "changed_by", "reason"
)  # fmt: skip
QUARANTINE_FIELDS = (
    "id",
    "app_key",
    "source",
    "type",
    "received_at",
    "reason",
    "suspect",
    "records",
    "quarantined",
    "payload_excerpt",
    "payload_length",
)
# A known status's text in one dict lookup (a page of 1,000 reports makes 1,000 of them).
_STATUS_TEXT = DELIVERY_STATUS_TEXT.get
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`, or None; a naive datetime is UTC, as in the store."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.tzinfo is not UTC:  # the store's datetimes already are: skip the conversion
        value = value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def report_item(row: Any) -> dict[str, Any]:
    """A delivery-report row (columns in `lists.REPORT_COLUMNS` order) as the API's item;
    times stay aware UTC datetimes until the writer formats them (`_json`, `csv_lines`)."""
    # Positional unpacking: this runs once per record of every page and export.
    id_, app_key, msg_id, phone, status, delivered, received_at, source, ingested_at, extra = row
    return {
        "id": id_,
        "app_key": app_key,
        "msg_id": msg_id,
        "phone": phone,
        "status": status,
        "status_text": _STATUS_TEXT(status) or status_text(status),
        "delivered": bool(delivered),
        "received_at": received_at,  # datetimes: JSON and CSV writers format them (iso_utc)
        "source": source,
        "ingested_at": ingested_at,
        "extra": _extra(extra),
    }


def reply_item(row: Any) -> dict[str, Any]:
    """A reply row (columns in `lists.REPLY_COLUMNS` order) as the API's item."""
    id_, app_key, phone, content, replied_at, source, ingested_at, extra = row
    return {
        "id": id_,
        "app_key": app_key,
        "phone": phone,
        "content": content,
        "replied_at": replied_at,
        "source": source,
        "ingested_at": ingested_at,
        "extra": _extra(extra),
    }


def _extra(text: str | None) -> Any:
    """A record's unknown upstream fields: the JSON object the store keeps, or None."""
    return None if text is None else orjson.loads(text)


def opt_out_item(row: Any) -> dict[str, Any]:
    """A phone opted out now (a row of `opt_outs.opt_out_walk`, columns in its
    `OPT_OUT_COLUMNS` order) as the list's item."""
    _id, app_key, phone, changed_at, keyword, source, changed_by, reason = row
    return {
        "app_key": app_key,
        "phone": phone,
        "opted_out": True,
        "since": changed_at,
        "keyword": keyword,
        "source": source,
        "changed_by": changed_by,
        "reason": reason,
    }


def opt_out_lookup_item(app_key: str, phone: str, state: OptOutState | None) -> dict[str, Any]:
    """Whether the phone may be texted for the app: its state, or never opted out (nulls)."""
    return {
        "app_key": app_key,
        "phone": phone,
        "opted_out": state is not None and state.opted_out,
        "since": None if state is None else state.since,
        "keyword": None if state is None else state.keyword,
        "source": None if state is None else state.source,
    }


def quarantine_item(row: Any) -> dict[str, Any]:
    """A quarantined raw event (columns in `lists.QUARANTINE_COLUMNS` order) as the API's item:
    why (`reason`, its start; `suspect` names a signature the operator must check before `jsms
    trust`), and the start of its payload."""
    (
        id_,
        app_key,
        source,
        type_,
        received_at,
        suspect,
        reason,
        records,
        quarantined,
        excerpt,
        length,
    ) = row
    return {
        "id": id_,
        "app_key": app_key,
        "source": source,
        "type": type_,
        "received_at": received_at,
        "reason": reason,
        "suspect": suspect,
        "records": records,
        "quarantined": quarantined,
        "payload_excerpt": excerpt,
        "payload_length": length,
    }


def csv_lines(fields: tuple[str, ...], items: Iterable[dict[str, Any]]) -> Iterator[str]:
    """A header line, then one line per item; booleans as true/false, free text defused."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(fields)
    yield flush()
    for item in items:
        writer.writerow([_csv_cell(item[name]) for name in fields])
        yield flush()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, dict | list):  # `extra`: its JSON text
        return orjson.dumps(value).decode("utf-8")
    # Every text column can come from the wire (content, msg_id, phone, app_key): keep a
    # spreadsheet from running any of them as a formula.
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value
