"""A read-only PostgreSQL role for BI tools: the record tables and views, nothing else."""

from __future__ import annotations

from sqlalchemy import Connection, text

# What BI reads: the records, the raw events they came in (quarantine included), the views.
# Not the sync machinery (sync_state, pull_leases, pull_call_counts, refused_callbacks,
# clock_heartbeats, alembic_version): the API's /api/v1/sync and /metrics serve that.
# `business_timezone` says which zone the views' days are in; the opt-out list is a record.
READABLE_TABLES = (
    "delivery_reports",
    "replies",
    "review_results",
    "app_balances",
    "raw_events",
    "business_timezone",
    "opt_outs",
    "opt_out_changes",
)
READABLE_VIEWS = (
    "daily_delivery_rate",
    "failures_by_status",
    "daily_replies",
    "daily_delivery_rate_utc",
    "failures_by_status_utc",
    "daily_replies_utc",
    "current_opt_outs",
)


class GrantRefused(Exception):
    """The role cannot be made read-only here; the message says why and what to do."""


def grant_readonly(connection: Connection, role: str) -> str:
    """Give `role` USAGE on the schema and SELECT on READABLE_TABLES and READABLE_VIEWS, and
    take back any other privilege it holds on this schema's tables, so repeating it converges
    on the same grants. Runs in the caller's transaction; returns the schema's name."""
    found = connection.execute(
        text("SELECT rolsuper, rolname = current_user FROM pg_roles WHERE rolname = :role"),
        {"role": role},
    ).first()
    if found is None:
        raise GrantRefused(
            f"there is no role {role!r}: create it first, e.g. "
            f"CREATE ROLE {role} LOGIN PASSWORD '…' (on Heroku: heroku pg:credentials:create "
            f"--name {role})"
        )
    superuser, is_me = found
    if superuser or is_me:
        raise GrantRefused(
            f"{role!r} is {'a superuser' if superuser else 'the role this service connects as'}"
            ": it can write whatever it is granted; name a separate role for the BI tool"
        )
    quote = connection.dialect.identifier_preparer.quote
    schema = str(connection.scalar(text("SELECT current_schema()")))
    grantee, where = quote(role), quote(schema)
    readable = ", ".join(quote(name) for name in READABLE_TABLES + READABLE_VIEWS)
    for statement in (
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {where} FROM {grantee}",
        f"GRANT USAGE ON SCHEMA {where} TO {grantee}",
        f"GRANT SELECT ON {readable} TO {grantee}",
    ):
        connection.exec_driver_sql(statement)
    return schema
