"""Structured logs: one JSON object per line, phone numbers masked, secrets never formatted."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

import orjson

# A run of 7 to 15 digits (optionally +country) is treated as a phone number in free text,
# unless it is part of a word: digits joined to ASCII letters are an identifier (a holder id's
# hex, a spool file's `20261205T081703…` name), never a phone as people write one.
_PHONE = re.compile(r"(?<![\d.A-Za-z])(\+?\d{3})\d{0,8}(\d{4})(?![\d.A-Za-z])")
# and so are digits grouped 3-4-4 or 3-3-4 by dashes or spaces (`138-1234-5678`).
_GROUPED_PHONE = re.compile(r"(?<![\d.])(\+?\d{1,3}[- ])?(\d{3})[- ]\d{3,4}[- ](\d{4})(?![\d.-])")
# Fields that hold phone numbers outright.
PHONE_FIELDS = frozenset({"phone", "phones"})
# Libraries whose INFO lines are noise for people (a line per scheduler tick, per HTTP call, per
# migration context): WARNING and up only, unless LOG_LEVEL=DEBUG.
CHATTY_LIBRARIES = ("alembic", "apscheduler", "httpx", "httpcore")
_PLAIN = logging.Formatter()
# A record's own attributes; everything else on it came from `extra=` and is written as a field.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


def mask_phone(text: str) -> str:
    """`13812345678` → `138****5678`, for every phone-like run in `text`."""
    text = _GROUPED_PHONE.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}****{m.group(3)}", text)
    return _PHONE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


class MaskPhones(logging.Filter):
    """Mask phone numbers in the formatted message, the exception and stack text, and in
    phone-named extra fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_phone(record.getMessage())
        record.args = None
        if record.exc_info:
            # Formatted once here, so every formatter after us writes the masked text.
            record.exc_text = _PLAIN.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = mask_phone(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_phone(record.stack_info)
        for name in PHONE_FIELDS & record.__dict__.keys():
            record.__dict__[name] = mask_phone(str(record.__dict__[name]))
        return True


class JsonLines(logging.Formatter):
    """One JSON object per record: `time`, `level`, `logger`, `message`, then the `extra=`
    fields, then `exc_info` / `stack_info` when the record has them. orjson writes it; a value
    it cannot (a type it does not know) is written as its `str()`, as datetimes in ISO 8601."""

    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[int, str] = (-1, "")  # one attribute: threads read it whole

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRIBUTES:
                fields[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exc_info"] = record.exc_text
        if record.stack_info:
            fields["stack_info"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(fields, default=_as_text, option=orjson.OPT_NON_STR_KEYS).decode()
        except orjson.JSONEncodeError:  # e.g. an int beyond 64 bits
            return json.dumps(fields, default=_as_text, separators=(",", ":"))

    def _time(self, created: float) -> str:
        """`2026-11-28 05:11:09,097` (logging's default, local time); the part up to the
        second is formatted once per second."""
        second, text = self._second
        if int(created) != second:
            second = int(created)
            text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(created))
            self._second = (second, text)
        return f"{text},{int((created - second) * 1000):03d}"


def _as_text(value: object) -> str:
    """What a log field that JSON has no type for is written as."""
    isoformat = getattr(value, "isoformat", None)
    return str(isoformat() if callable(isoformat) else value)


class JsonLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The service's own handler: one JSON object per record, phones masked."""


def json_handler() -> logging.Handler:
    """A stderr handler writing one JSON object per record, phones masked (stdout is for what
    commands print for people)."""
    handler = JsonLineHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    handler.addFilter(MaskPhones())
    return handler


def configure_logging(level: str) -> None:
    """Send the service's logs (and gunicorn's, when under it) to stderr as JSON lines; quiet
    the chatty libraries unless the level is DEBUG."""
    # The JSON lines write neither where a call was made from nor which thread or process made
    # it: the logging HOWTO's "Optimization" switches save each line (one a callback) ~5 us.
    logging._srcfile = None  # type: ignore[assignment]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    if not any(isinstance(h, JsonLineHandler) for h in root.handlers):
        root.addHandler(json_handler())
    root.setLevel(level.upper())
    library_level = logging.NOTSET if level.upper() == "DEBUG" else logging.WARNING
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(library_level)


def gunicorn_logconfig(level: str = "INFO") -> dict[str, Any]:
    """A `logconfig_dict` for gunicorn: its error and access logs as masked JSON lines too."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"mask": {"()": MaskPhones}},
        "formatters": {"json": {"()": JsonLines}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["mask"],
            }
        },
        # The app adds its own root handler (configure_logging) in each worker.
        "root": {"level": level, "handlers": []},
        "loggers": {
            "gunicorn.error": {"handlers": ["stderr"], "level": level, "propagate": False},
            "gunicorn.access": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }
