"""Contacts: the teams read model (a visibility rule must name a team of the tenant).

Revision ID: con_t0008
Revises: con_t0007
"""

import sqlalchemy as sa
from alembic import op

revision = "con_t0008"
down_revision = "con_t0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("team_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_teams")),
    )
    # Teams known so far only through their members (identity's team events); a team
    # without members is learnt when it gets one (``identity.team.member_added``).
    op.execute(
        "INSERT INTO teams (team_id) SELECT DISTINCT team_id FROM team_memberships"
        " ON CONFLICT DO NOTHING"
    )


def downgrade() -> None:
    op.drop_table("teams")
