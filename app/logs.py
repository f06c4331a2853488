"""Structured logs: one JSON object per line, phone numbers masked, secrets never formatted."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

# A run of 7 to 15 digits (optionally +country) is treated as a phone number in free text,
_PHONE = re.compile(r"(?<![\d.])(\+?\d{3})\d{0,8}(\d{4})(?![\d.])")
# and so are digits grouped 3-4-4 or 3-3-4 by dashes or spaces (`138-1234-5678`).
_GROUPED_PHONE = re.compile(r"(?<![\d.])(\+?\d{1,3}[- ])?(\d{3})[- ]\d{3,4}[- ](\d{4})(?![\d.-])")
# Fields that hold phone numbers outright.
PHONE_FIELDS = frozenset({"phone", "phones"})
# Libraries whose INFO lines are noise for people (a line per scheduler tick, per HTTP call, per
# migration context): WARNING and up only, unless LOG_LEVEL=DEBUG.
CHATTY_LIBRARIES = ("alembic", "apscheduler", "httpx", "httpcore")
_PLAIN = logging.Formatter()


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


class JsonLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The service's own handler: one JSON object per record, phones masked."""


def json_handler() -> logging.Handler:
    """A stderr handler writing one JSON object per record, phones masked (stdout is for what
    commands print for people)."""
    handler = JsonLineHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        )
    )
    handler.addFilter(MaskPhones())
    return handler


def configure_logging(level: str) -> None:
    """Send the service's logs (and gunicorn's, when under it) to stderr as JSON lines; quiet
    the chatty libraries unless the level is DEBUG."""
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
        "formatters": {
            "json": {
                "()": JsonFormatter,
                "fmt": "{asctime}{levelname}{name}{message}",
                "style": "{",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            }
        },
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
