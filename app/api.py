"""The query API (JSON, bearer tokens). Filled in by the query-side work (issue 4)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")
