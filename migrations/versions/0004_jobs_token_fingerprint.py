"""jobs: token_fingerprint, which API token submitted the job (a digest, never the token),
for the per-token cap on queued and running jobs"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

# Plain ALTER TABLE, not a batch: SQLite (>= 3.35) adds and drops this column in place, where a
# batch would copy the table, and dropping the old jobs table with foreign keys on deletes
# every job_events row through ON DELETE CASCADE.


def upgrade() -> None:
    op.add_column("jobs", sa.Column("token_fingerprint", sa.String(16), nullable=True))
    op.create_index("ix_jobs_token_fingerprint_status", "jobs", ["token_fingerprint", "status"])


def downgrade() -> None:
    op.drop_index("ix_jobs_token_fingerprint_status", table_name="jobs")
    op.drop_column("jobs", "token_fingerprint")
