"""The service with its group writer answered at once (nothing stored): the request side alone.

Served by the same gunicorn command line as `wsgi:app` and hello-world, it separates what a
callback costs before and after the hand-off to the writer: `--request-side` rounds.
"""

from app import create_app
from app.store.group import GroupWriter
from app.store.ingest import IngestResult
from bench.ingest.stubs import STORED


def _answer_at_once(self: GroupWriter, *args: object, **kwargs: object) -> IngestResult:
    return STORED


GroupWriter.store = _answer_at_once  # type: ignore[method-assign]
app = create_app()
