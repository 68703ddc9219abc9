"""Bench track r3: a second column + index of the same shape as r2.

Revision ID: bench_m3
Revises: bench_m2

Lets the benchmark time the same kind of change twice on the same schemas (once
with concurrency 1, once with concurrency 2) without re-provisioning them.
"""

import sqlalchemy as sa
from alembic import op

revision = "bench_m3"
down_revision = "bench_m2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("contacts", sa.Column("bench_tier", sa.String(40), nullable=True))
    op.create_index("ix_contacts_bench_tier", "contacts", ["bench_tier"])


def downgrade() -> None:
    op.drop_index("ix_contacts_bench_tier", table_name="contacts")
    op.drop_column("contacts", "bench_tier")
