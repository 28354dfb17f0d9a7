"""sweep_rungs: waiting, a trial paused at a rung of its sweep's halving until later arrivals
promote it or the rung is complete; indexed by job, which the claim asks about"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("sweep_rungs") as batch:
        batch.add_column(
            sa.Column("waiting", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.create_index("ix_sweep_rungs_job_id", ["job_id"])


def downgrade() -> None:
    with op.batch_alter_table("sweep_rungs") as batch:
        batch.drop_index("ix_sweep_rungs_job_id")
        batch.drop_column("waiting")
