"""Search extensions (pg_trgm) in their own ``extensions`` schema.

Tenant transactions pin ``search_path`` to the tenant schema alone, so the
trigram operator class and functions are always named with this schema.
pg_trgm is a trusted extension: the database owner may install it.

Revision ID: lib0002
Revises: lib0001
"""

from alembic import op

revision = "lib0002"
down_revision = "lib0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS extensions")
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA extensions")
