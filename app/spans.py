"""Spans of time as people read them: `2 d 23 h`, `5 h 12 min`, `40 min`, `45 s`."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

# Units, largest first, in seconds.
UNITS = {"d": 86400, "h": 3600, "min": 60, "s": 1}


def span_text(span: timedelta, *, parts: int = 2, smallest: str = "min") -> str:
    """The span in its largest unit reached and the `parts - 1` next ones, down to `smallest`,
    in whole units: `2 d 23 h`, `5 h 12 min`, `40 min`, `0 min` (or `3 h`, `45 s` with
    `parts=1, smallest="s"`). Pass `abs(span)` when a negative span should read as its length.
    """
    seconds = int(span.total_seconds())
    sizes = list(UNITS.items())[: list(UNITS).index(smallest) + 1]
    # The largest unit the span reaches, or the smallest one for a shorter (or negative) span.
    first = next((i for i, (_, size) in enumerate(sizes) if seconds >= size), len(sizes) - 1)
    shown = sizes[first : first + parts]
    values = [seconds // shown[0][1]]
    values += [seconds % larger // size for (_, larger), (_, size) in pairwise(shown)]
    return " ".join(f"{value} {unit}" for value, (unit, _) in zip(values, shown, strict=True))
