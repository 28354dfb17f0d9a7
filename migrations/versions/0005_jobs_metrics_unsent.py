"""jobs: metrics_unsent, the metric values a running job's worker holds for MLflow (its
spool), written by the heartbeat for /metrics"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.add_column("jobs", sa.Column("metrics_unsent", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "metrics_unsent")
