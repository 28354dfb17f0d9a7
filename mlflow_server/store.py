"""MLflow's SQL tracking store, but a batch of metric values is one statement, not an ORM object
a value.

MLflow's ``SqlAlchemyStore`` makes a ``SqlMetric`` per value and reconciles ``latest_metrics``
in Python: most of the MLflow server's work for a training job, and several times what the rows
cost (docs/benchmarks.md, "MLflow's tracking store"). Here the same rows go in as one
COPY (PostgreSQL through psycopg2) or one multi-row INSERT, and the latest value of each name as
one upsert that only moves forward. A batch of which some values are stored already (sent again
after a lost answer) takes MLflow's own path, which keeps only the new ones; so do MySQL and SQL
Server.
"""

import io
from contextlib import closing

from mlflow.entities import Metric
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils.validation import _validate_metric
from sqlalchemy import insert, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

# The dialects with an upsert (INSERT ... ON CONFLICT DO UPDATE), for latest_metrics.
UPSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
LATEST_COLUMNS = ("value", "timestamp", "step", "is_nan")
COPY_COLUMNS = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")
COPY_METRICS = f"COPY metrics ({', '.join(COPY_COLUMNS)}) FROM STDIN"
# COPY's text format: these characters in a value would end a field, a row or an escape.
COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class BatchMetricsStore(SqlAlchemyStore):
    def log_metric(self, run_id: str, metric: Metric) -> None:
        # MLflow validates a metric in _log_metrics_once, a batch's again in log_batch: here
        # each once, where it comes in (log_metric and log_batch are _log_metrics' callers).
        _validate_metric(metric.key, metric.value, metric.timestamp, metric.step)
        super().log_metric(run_id, metric)

    def _log_metrics_once(self, run_id: str, metrics: list[Metric]) -> None:
        upsert = UPSERT.get(self.db_type)
        if upsert is None:
            return super()._log_metrics_once(run_id, metrics)
        rows = self.metric_rows(run_id, metrics)
        with self.ManagedSessionMaker(read_only=False) as session:
            self._check_run_is_active(self._get_run(run_uuid=run_id, session=session))
            if not rows:
                return None
            # Rows stored already make it fail (the primary key is the whole row), not skip them:
            # SQLAlchemy would send INSERT ... ON CONFLICT DO NOTHING a row at a time.
            try:
                self.insert_metrics(session, rows)
            except (IntegrityError, self.engine.dialect.loaded_dbapi.IntegrityError):
                session.rollback()
            else:
                session.execute(latest_upsert(upsert, latest_rows(rows)))
                return None
        return super()._log_metrics_once(run_id, metrics)

    def insert_metrics(self, session, rows: list[dict]) -> None:
        """COPY on PostgreSQL through psycopg2 (the cheapest way in), else a multi-row INSERT
        (SQLAlchemy's insertmanyvalues)."""
        if self.db_type == "postgresql":
            with closing(session.connection().connection.cursor()) as cursor:
                if hasattr(cursor, "copy_expert"):  # psycopg2's (psycopg 3 has another COPY)
                    cursor.copy_expert(COPY_METRICS, io.StringIO(copy_text(rows)))
                    return
        session.execute(insert(SqlMetric.__table__), rows)

    def metric_rows(self, run_id: str, metrics: list[Metric]) -> list[dict]:
        """The ``metrics`` table's rows of validated ``metrics``, sanitized as MLflow does (NaN
        stored as 0 with is_nan, ±inf as the largest float), each row once."""
        rows = {}
        for metric in metrics:
            is_nan, value = self.sanitize_metric_value(metric.value)
            row = dict(run_uuid=run_id, key=metric.key, value=value,
                       timestamp=metric.timestamp, step=metric.step, is_nan=is_nan)  # fmt: skip
            rows.setdefault(tuple(row.values()), row)  # the primary key: all of the row
        return list(rows.values())


def copy_text(rows: list[dict]) -> str:
    """``rows`` in COPY's text format, COPY_COLUMNS in order."""
    return "".join(
        f"{row['key'].translate(COPY_ESCAPES)}\t{float(row['value'])!r}\t{int(row['timestamp'])}\t"
        f"{int(row['step'])}\t{'t' if row['is_nan'] else 'f'}\t{row['run_uuid']}\n"
        for row in rows
    )


def latest_rows(rows: list[dict]) -> list[dict]:
    """Each name's most recent row of ``rows``: the largest (step, timestamp, value), MLflow's
    order for ``latest_metrics``."""
    latest: dict[str, dict] = {}
    for row in rows:
        held = latest.get(row["key"])
        if held is None or recency(row) > recency(held):
            latest[row["key"]] = row
    return list(latest.values())


def recency(row: dict) -> tuple:
    return row["step"], row["timestamp"], row["value"]


def latest_upsert(insert, rows: list[dict]):
    """Insert each name's latest value, or replace the stored one if this one is more recent."""
    table = SqlLatestMetric.__table__
    statement = insert(table).values(rows)
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["key", "run_uuid"],
        set_={column: new[column] for column in LATEST_COLUMNS},
        where=tuple_(table.c.step, table.c.timestamp, table.c.value)
        < tuple_(new.step, new.timestamp, new.value),
    )
