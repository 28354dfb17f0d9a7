"""jobs: handoff_requested and handoffs (a worker shutting down hands its jobs back, which
uses up no attempt), mlflow_closed_at"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("handoff_requested", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("handoffs", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("mlflow_closed_at", sa.DateTime(timezone=True)))
        batch.create_index("ix_jobs_status_lease_expires_at", ["status", "lease_expires_at"])
    # Jobs that ended before this revision had their runs closed by their workers: the
    # reconciler must not end them again (that would move every old run's end_time to now).
    op.execute(
        "UPDATE jobs SET mlflow_closed_at = finished_at "
        "WHERE status IN ('succeeded', 'failed', 'cancelled') AND mlflow_run_id IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_status_lease_expires_at")
        batch.drop_column("mlflow_closed_at")
        batch.drop_column("handoffs")
        batch.drop_column("handoff_requested")
