"""Pulled batches the store could not take, kept on local disk until the clock (or `jsms
reprocess`) stores them. The upstream hands each record out once: this is the last copy."""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from app.jsms.pulled import Kind, parse_pulled
from app.store.db import Database
from app.store.ingest import IngestResult, RawPayload, ingest_or_quarantine
from app.store.models import Source, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    """One batch waiting on disk."""

    path: Path
    app_key: str
    kind: str
    body: str


def save(directory: Path, app_key: str, kind: str, body: str) -> Path:
    """Write the batch durably and return where it is: the file is fsynced before its rename,
    the directory after it, so the name survives a power cut too. Names sort by time and are
    unique (a uuid), whichever thread or process writes."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{utcnow():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex}.json"
    partial = path.with_suffix(".partial")
    with partial.open("x", encoding="utf-8") as file:
        json.dump({"app_key": app_key, "kind": kind, "body": body}, file)
        file.flush()
        os.fsync(file.fileno())
    partial.rename(path)
    _fsync_directory(directory)
    return path


def leftovers(directory: Path) -> list[Path]:
    """`.partial` files: a save that never finished (the process died mid-write). Each may hold
    the only copy of a batch; a person should look at it."""
    return sorted(directory.glob("*.partial")) if directory.is_dir() else []


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def waiting(directory: Path) -> list[SpooledBatch]:
    """The batches on disk, oldest first."""
    batches = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        saved = json.loads(path.read_text(encoding="utf-8"))
        batches.append(SpooledBatch(path, saved["app_key"], saved["kind"], saved["body"]))
    return batches


def store_spooled(database: Database, directory: Path) -> list[tuple[Path, IngestResult]]:
    """Store every waiting batch, oldest first, each in its own transaction; a batch's file goes
    only after its commit (a crash in between stores it again: duplicates, a no-op). Raises the
    database's error while it is still down; what is left waits for the next run."""
    stored = []
    for batch in waiting(directory):
        kind = Kind(batch.kind)
        raw = RawPayload(batch.app_key, Source.PULL, kind.record_type, batch.body)
        with database.session() as session, session.begin():
            result = ingest_or_quarantine(session, raw, parse_pulled(kind, batch.body))
        batch.path.unlink(missing_ok=True)
        stored.append((batch.path, result))
        log.info("stored spooled batch %s: %s", batch.path.name, result.as_json())
    return stored
