"""history samples: fine for the last hour, 5-minute averages for a week

Revision ID: ops2
Revises: ops1
Create Date: 2026-12-07 18:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ops2"
down_revision = "ops1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "samples",
        sa.Column("series", sa.String(length=200), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("ts", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("series", "resolution", "ts"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("samples")
