"""sweep_rungs: each trial's arrival at a rung of its sweep's successive halving, and the
verdict then; sweeps: mlflow_run_id (the trials' parent run), parent_synced_at, mlflow_closed_at"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"

# The parent run's columns of sweeps, all nullable: (name, type).
PARENT_RUN_COLUMNS = (
    ("mlflow_run_id", sa.String(64)),
    ("parent_synced_at", sa.DateTime(timezone=True)),
    ("mlflow_closed_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    op.create_table(
        "sweep_rungs",
        sa.Column("sweep_id", sa.String(32), nullable=False),
        sa.Column("rung", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("promoted", sa.Boolean(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("reached", sa.Integer(), nullable=False),
        sa.Column("cutoff", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["sweep_id"], ["sweeps.id"], name="fk_sweep_rungs_sweep_id_sweeps", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_sweep_rungs_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("sweep_id", "rung", "job_id", name="pk_sweep_rungs"),
    )
    with op.batch_alter_table("sweeps") as batch:
        for name, type_ in PARENT_RUN_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        for name, _ in reversed(PARENT_RUN_COLUMNS):
            batch.drop_column(name)
    op.drop_table("sweep_rungs")
