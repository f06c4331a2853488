"""Structured logs: one JSON object per line, phone numbers masked, secrets never formatted."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

# A run of 7 to 15 digits (optionally +country) is treated as a phone number in free text.
_PHONE = re.compile(r"(?<![\d.])(\+?\d{3})\d{0,8}(\d{4})(?![\d.])")
# Fields that hold phone numbers outright.
PHONE_FIELDS = frozenset({"phone", "phones"})


def mask_phone(text: str) -> str:
    """`13812345678` → `138****5678`, for every phone-like run in `text`."""
    return _PHONE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


class MaskPhones(logging.Filter):
    """Mask phone numbers in the formatted message and in phone-named extra fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_phone(record.getMessage())
        record.args = None
        for name in PHONE_FIELDS & record.__dict__.keys():
            record.__dict__[name] = mask_phone(str(record.__dict__[name]))
        return True


class JsonLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The service's own handler: one JSON object per record, phones masked."""


def json_handler() -> logging.Handler:
    """A stdout handler writing one JSON object per record, phones masked."""
    handler = JsonLineHandler(sys.stdout)
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
    """Send the service's logs (and gunicorn's, when under it) to stdout as JSON lines."""
    root = logging.getLogger()
    if not any(isinstance(h, JsonLineHandler) for h in root.handlers):
        root.addHandler(json_handler())
    root.setLevel(level.upper())


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
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "json",
                "filters": ["mask"],
            }
        },
        # The app adds its own root handler (configure_logging) in each worker.
        "root": {"level": level, "handlers": []},
        "loggers": {
            "gunicorn.error": {"handlers": ["stdout"], "level": level, "propagate": False},
            "gunicorn.access": {"handlers": ["stdout"], "level": level, "propagate": False},
        },
    }
