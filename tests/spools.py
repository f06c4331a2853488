"""Every Puller needs a spool (the last copy of a batch the store refused); tests that do not
look at it give it a throwaway directory."""

from __future__ import annotations

import tempfile
from pathlib import Path


def throwaway_spool() -> Path:
    """An empty directory for a puller's spool."""
    return Path(tempfile.mkdtemp(prefix="jsms-spool-"))
