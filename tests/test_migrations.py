"""Migrations: models and schema agree, and 0002 downgrades and upgrades cleanly."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.store.db import make_engine
from app.store.models import Base
from app.store.schema import alembic_config, upgrade_to_head


def test_models_match_the_migrated_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_0002_downgrades_and_upgrades(database_url: str) -> None:
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    try:
        command.downgrade(config, "0001")
        inspector = inspect(engine)
        assert "daily_delivery_rate" not in inspector.get_view_names()
        names = {i["name"] for i in inspector.get_indexes("delivery_reports")}
        assert "ix_delivery_reports_app_key_received_at" in names
        assert "ix_delivery_reports_msg_id" not in names
    finally:
        upgrade_to_head(database_url)
    inspector = inspect(engine)
    assert {"daily_delivery_rate", "failures_by_status", "daily_replies"} <= set(
        inspector.get_view_names()
    )
    engine.dispose()


def test_0012_downgrades_and_upgrades(database_url: str) -> None:
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    try:
        command.downgrade(config, "0010")
        inspector = inspect(engine)
        assert "app_balances" not in inspector.get_table_names()
        names = {i["name"] for i in inspector.get_indexes("review_results")}
        assert "ix_review_results_app_key_id" not in names
    finally:
        upgrade_to_head(database_url)
    inspector = inspect(engine)
    assert "app_balances" in inspector.get_table_names()
    names = {i["name"] for i in inspector.get_indexes("review_results")}
    assert {"ix_review_results_app_key_id", "ix_review_results_ingested_at"} <= names
    engine.dispose()
