"""instances created through the API carry their restart policy and memory limit

Revision ID: ops1
Revises: ctr1
Create Date: 2026-12-07 17:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ops1"
down_revision = "ctr1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("restart", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("memory_limit_bytes", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("memory_limit_bytes")
        batch_op.drop_column("restart")
