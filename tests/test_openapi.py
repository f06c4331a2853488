"""The OpenAPI document describes exactly the routes the app serves."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient

# Methods every Flask route answers on its own; not part of the described surface.
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}
# Routes deliberately left out of the document: Flask's own static route (the app has no
# static files). A colleague adding `/metrics` or `/` documents them in app/openapi.py instead.
UNDOCUMENTED_RULES: set[str] = {"/static/<path:filename>"}


def _openapi_path(rule: str) -> str:
    """Flask's `/x/<conv:name>` as OpenAPI's `/x/{name}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _served(app: Flask) -> set[tuple[str, str]]:
    return {
        (_openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule not in UNDOCUMENTED_RULES
        for method in (rule.methods or set()) - IMPLICIT_METHODS
    }


def test_openapi_is_served_without_a_token(client: FlaskClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.")


def test_every_route_is_documented_and_every_documented_path_is_served(
    app: Flask, client: FlaskClient
) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    documented = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    served = _served(app)
    assert served - documented == set(), "routes missing from the OpenAPI document"
    assert documented - served == set(), "documented operations the app does not serve"


def test_documented_parameters_are_the_accepted_ones(client: FlaskClient) -> None:
    """Every documented query parameter is accepted (an unknown one would be a 400)."""
    document = client.get("/api/v1/openapi.json").get_json()
    examples = {
        "limit": "1",
        "delivered": "true",
        "source": "pull",
        "bucket": "day",
        "reason": "signature_reused",
        # Recent: a stats range reaches back at most 31 (hour) / 366 (day) days from now.
        "since": (datetime.now(UTC) - timedelta(days=1)).date().isoformat(),
        "until": datetime.now(UTC).date().isoformat(),
        "status": "4001",
        "format": "json",
        "tz": "Asia/Shanghai",
        "kind": "template",
    }
    for path, operations in document["paths"].items():
        if not path.startswith("/api/v1/") or path.endswith("openapi.json"):
            continue
        for parameter in operations["get"].get("parameters", []):
            if parameter["in"] != "query" or parameter["name"] == "cursor":
                continue
            name = parameter["name"]
            response = client.get(
                path,
                query_string={name: examples.get(name, "x")},
                headers={"Authorization": "Bearer test-token"},
            )
            assert response.status_code == 200, (path, name, response.get_json())


def test_every_documented_schema_reference_resolves(client: FlaskClient) -> None:
    text = client.get("/api/v1/openapi.json").get_data(as_text=True)
    document = client.get("/api/v1/openapi.json").get_json()
    for ref in set(re.findall(r'"\$ref":\s*"#/components/schemas/([A-Za-z]+)"', text)):
        assert ref in document["components"]["schemas"]
