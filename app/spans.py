"""Spans of time as people read them: `2 d 23 h`, `5 h 12 min`, `40 min`."""

from __future__ import annotations

from datetime import timedelta


def span_text(span: timedelta) -> str:
    """`2 d 23 h`, `5 h 12 min`, `40 min`; a negative span is how long ago."""
    seconds = abs(int(span.total_seconds()))
    days, hours, minutes = seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"
