"""The service with its group writer kept but writing nothing: each group answered at once.

Served beside `request_side.py` and `wsgi:app` (`--request-side`), it shows what the hand-off to
the writer's thread and back costs by itself, apart from the writer's database work.
"""

from collections.abc import Sequence

import app.store.group as group
from app import create_app
from app.store.ingest import IngestResult


def _write_nothing(database: object, pending: Sequence[object]) -> list[IngestResult]:
    return [IngestResult(raw_event_id=0, stored=1, duplicates=0, quarantined=0) for _ in pending]


group.write_group = _write_nothing  # type: ignore[assignment]
app = create_app()
