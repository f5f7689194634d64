"""accent-insensitive full-text search on PostgreSQL

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

SQLite's FTS5 tables fold accents already (``remove_diacritics 2``); PostgreSQL's ``simple``
configuration does not, so "jose" did not find "José" there. This adds the ``unaccent``
extension (trusted since PostgreSQL 13: a database owner may create it), an IMMUTABLE wrapper
an index expression may use, and rebuilds the two search indexes over unaccented text.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_CONTACT = (
    "to_tsvector('simple', coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' "
    "|| coalesce(email, ''))"
)
_OLD_MESSAGE = "to_tsvector('simple', body)"
_NEW_CONTACT = (
    "to_tsvector('simple', textdesk_unaccent(coalesce(first_name, '') || ' ' || "
    "coalesce(last_name, '') || ' ' || coalesce(email, '')))"
)
_NEW_MESSAGE = "to_tsvector('simple', textdesk_unaccent(body))"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    # unaccent() is only STABLE (its dictionary could change); pinning the dictionary makes the
    # result a function of the text alone, which is what an index expression needs.
    op.execute(
        "CREATE OR REPLACE FUNCTION textdesk_unaccent(text) RETURNS text "
        "LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT "
        "AS $$ SELECT unaccent('unaccent'::regdictionary, $1) $$"
    )
    op.execute("DROP INDEX IF EXISTS ix_pg_contacts_search")
    op.execute("DROP INDEX IF EXISTS ix_pg_messages_search")
    op.execute(f"CREATE INDEX ix_pg_contacts_search ON contacts USING gin ({_NEW_CONTACT})")
    op.execute(f"CREATE INDEX ix_pg_messages_search ON messages USING gin ({_NEW_MESSAGE})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_pg_contacts_search")
    op.execute("DROP INDEX IF EXISTS ix_pg_messages_search")
    op.execute(f"CREATE INDEX ix_pg_contacts_search ON contacts USING gin ({_OLD_CONTACT})")
    op.execute(f"CREATE INDEX ix_pg_messages_search ON messages USING gin ({_OLD_MESSAGE})")
    op.execute("DROP FUNCTION IF EXISTS textdesk_unaccent(text)")
