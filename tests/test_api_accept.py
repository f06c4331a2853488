"""Content negotiation on the list endpoints: the Accept header's preference decides between
JSON and CSV, q-values included; JSON when the client does not say."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from app.store.db import Database
from tests.api_data import get, report, store


@pytest.mark.parametrize(
    ("accept", "mimetype"),
    [
        ("application/json, text/csv;q=0.5", "application/json"),
        ("text/csv, application/json;q=0.5", "text/csv"),
        ("Application/JSON, text/csv;q=0.5", "application/json"),
        ("*/*", "application/json"),
        ("text/csv", "text/csv"),
    ],
)
def test_the_preferred_type_is_answered(
    client: FlaskClient, database: Database, accept: str, mimetype: str
) -> None:
    store(database, "app-one", [report("m1")])
    response = get(client, "/reports", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.mimetype == mimetype
