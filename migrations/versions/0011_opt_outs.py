"""Opt-outs from replies: the history of changes, the state per app and phone, the BI view;
and `delivery_reports.extra`

`opt_out_changes` keeps every opt-out and opt-in (by a keyword reply, or by hand), `opt_outs`
the state the newest change decided per app and phone (its primary key is the lookup before a
send), `current_opt_outs` the phones opted out now, for BI. Replies stored before this
migration are read once here, with the default keyword lists (frozen below): `jsms reprocess`
reads them again with OPT_OUT_KEYWORDS / OPT_IN_KEYWORDS when those are set otherwise.

`delivery_reports.extra` keeps a report's unknown fields as JSON, as `replies.extra` does; reports
stored before keep NULL (their raw events still hold the fields).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Frozen copy of app/jsms/keywords.py's defaults at the time of writing.
OPT_OUT = ("TD", "T", "N", "R", "退订", "退", "取消", "STOP", "UNSUBSCRIBE")
OPT_IN = ("START", "订阅")
CHUNK = 5000
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
CURRENT_OPT_OUTS = """
    SELECT o.app_key, o.phone, o.since, o.keyword, o.source, c.changed_by, c.reason,
           c.reply_id, o.change_id
    FROM opt_outs AS o
    JOIN opt_out_changes AS c ON c.id = o.change_id
    WHERE o.opted_out
"""


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().casefold()


KEYWORDS = {**{_fold(k): (False, k) for k in OPT_IN}, **{_fold(k): (True, k) for k in OPT_OUT}}


def upgrade() -> None:
    op.add_column("delivery_reports", sa.Column("extra", sa.Text(), nullable=True))
    op.create_table(
        "opt_out_changes",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("app_key", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("keyword", sa.String(length=32), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reply_id", sa.BigInteger(), nullable=True),
        sa.Column("changed_by", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_opt_out_changes")),
        sa.UniqueConstraint("reply_id", name=op.f("uq_opt_out_changes_reply_id")),
    )
    op.create_index(
        "ix_opt_out_changes_app_key_phone_id", "opt_out_changes", ["app_key", "phone", "id"]
    )
    op.create_table(
        "opt_outs",
        sa.Column("app_key", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("keyword", sa.String(length=32), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("change_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("app_key", "phone", name=op.f("pk_opt_outs")),
    )
    _read_existing_replies()
    op.execute(f"CREATE VIEW current_opt_outs AS {CURRENT_OPT_OUTS.strip()}")


def _read_existing_replies() -> None:
    """One change per keyword reply already stored, then each phone's state from its newest."""
    connection = op.get_bind()
    recorded_at = datetime.now(UTC).replace(tzinfo=None)  # naive UTC, as 0006 writes times
    copy = sa.text(
        "INSERT INTO opt_out_changes (app_key, phone, opted_out, changed_at, keyword, source,"
        " reply_id, recorded_at)"
        " SELECT app_key, phone, :opted_out, replied_at, :keyword, source, id, :recorded_at"
        " FROM replies WHERE id = :reply_id"
    ).bindparams(
        sa.bindparam("opted_out", type_=sa.Boolean()),
        sa.bindparam("recorded_at", type_=sa.DateTime()),
    )
    after = 0
    while True:
        rows = connection.execute(
            sa.text("SELECT id, content FROM replies WHERE id > :after ORDER BY id LIMIT :n"),
            {"after": after, "n": CHUNK},
        ).all()
        found = [
            {"reply_id": id_, "opted_out": out, "keyword": keyword, "recorded_at": recorded_at}
            for id_, content in rows
            for out, keyword in [KEYWORDS.get(_fold(content), (None, None))]
            if keyword is not None
        ]
        if found:
            connection.execute(copy, found)
        if len(rows) < CHUNK:
            break
        after = rows[-1][0]
    op.execute(
        "INSERT INTO opt_outs (app_key, phone, opted_out, since, keyword, source, change_id)"
        " SELECT app_key, phone, opted_out, changed_at, keyword, source, id FROM ("
        "  SELECT c.*, row_number() OVER (PARTITION BY app_key, phone"
        "   ORDER BY changed_at DESC, opted_out DESC, id DESC) AS n"
        "  FROM opt_out_changes AS c) AS ranked"
        " WHERE n = 1"
    )


def downgrade() -> None:
    op.execute("DROP VIEW current_opt_outs")
    op.drop_table("opt_outs")
    op.drop_index("ix_opt_out_changes_app_key_phone_id", table_name="opt_out_changes")
    op.drop_table("opt_out_changes")
    op.drop_column("delivery_reports", "extra")
