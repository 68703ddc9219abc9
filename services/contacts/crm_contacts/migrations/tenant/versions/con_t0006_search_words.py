"""Contacts: the per-tenant search dictionary (distinct words of search texts).

Revision ID: con_t0006
Revises: con_t0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql  # noqa: F401

revision = "con_t0006"
down_revision = "con_t0005"
branch_labels = None
depends_on = None

# The same words ``RecordRepository`` / ``SearchWordRepository.add`` keep: runs of
# letters and digits, 3 to 60 long, without digits (phone numbers, numbered email local
# parts and external ids stay out; search matches those by trigram over search_text).
_BACKFILL = """
INSERT INTO search_words (word)
SELECT DISTINCT w FROM (
    SELECT regexp_split_to_table(search_text, '[^[:alnum:]]+') AS w FROM {table}
    WHERE deleted_at IS NULL AND search_text <> ''
) AS words
WHERE length(w) BETWEEN 3 AND 60 AND w !~ '[0-9]'
ORDER BY 1
ON CONFLICT DO NOTHING
"""


def upgrade() -> None:
    op.create_table(
        "search_words",
        sa.Column("word", sa.String(length=60, collation="C"), nullable=False),
        sa.PrimaryKeyConstraint("word", name=op.f("pk_search_words")),
    )
    op.create_index(
        "ix_search_words_trgm",
        "search_words",
        ["word"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"word": "extensions.gin_trgm_ops"},
    )
    for table in ("contacts", "companies"):
        op.execute(_BACKFILL.format(table=table))


def downgrade() -> None:
    op.drop_index("ix_search_words_trgm", table_name="search_words")
    op.drop_table("search_words")
