"""The service with its group writer kept but writing nothing: each group answered at once.

Served beside `request_side.py` and `wsgi:app` (`--request-side`), it shows what the hand-off to
the writer's thread and back costs by itself, apart from the writer's database work.
"""

import app.store.group as group
from app import create_app
from bench.ingest.stubs import write_nothing

group.write_group = write_nothing
app = create_app()
