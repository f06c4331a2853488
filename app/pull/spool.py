"""Pulled batches the store could not take, kept on local disk until `jsms reprocess` stores
them. The upstream hands each record out once: this is the last copy."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from app.store.models import utcnow


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    """One batch waiting on disk."""

    path: Path
    app_key: str
    kind: str
    body: str


def save(directory: Path, app_key: str, kind: str, body: str) -> Path:
    """Write the batch durably (fsync before rename) and return where it is."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{utcnow():%Y%m%dT%H%M%S%f}-{os.getpid()}.json"
    partial = path.with_suffix(".partial")
    with partial.open("w", encoding="utf-8") as file:
        json.dump({"app_key": app_key, "kind": kind, "body": body}, file)
        file.flush()
        os.fsync(file.fileno())
    partial.rename(path)
    return path


def waiting(directory: Path) -> list[SpooledBatch]:
    """The batches on disk, oldest first."""
    batches = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        saved = json.loads(path.read_text(encoding="utf-8"))
        batches.append(SpooledBatch(path, saved["app_key"], saved["kind"], saved["body"]))
    return batches
