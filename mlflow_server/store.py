"""MLflow's SQL tracking store, but a batch of metric values is one INSERT, not an ORM object
a value.

MLflow's ``SqlAlchemyStore`` makes a ``SqlMetric`` per value and reconciles ``latest_metrics``
in Python; on PostgreSQL that is about 85 µs a value, most of the MLflow server's work for a
training job (docs/benchmarks.md, "MLflow's tracking store"). Here the same rows go in as one
multi-row INSERT, and the latest value of each name as one upsert that only moves forward. A
batch of which some values are stored already (sent again after a lost answer) takes MLflow's
own path, which keeps only the new ones; so do MySQL and SQL Server.
"""

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


class BatchMetricsStore(SqlAlchemyStore):
    def _log_metrics_once(self, run_id: str, metrics: list[Metric]) -> None:
        upsert = UPSERT.get(self.db_type)
        if upsert is None:
            return super()._log_metrics_once(run_id, metrics)
        rows = self.metric_rows(run_id, metrics)
        with self.ManagedSessionMaker(read_only=False) as session:
            self._check_run_is_active(self._get_run(run_uuid=run_id, session=session))
            if not rows:
                return None
            # A plain INSERT: SQLAlchemy sends it as multi-row VALUES (insertmanyvalues), which
            # it does not for INSERT ... ON CONFLICT DO NOTHING (one statement a row, 5x slower).
            try:
                session.execute(insert(SqlMetric.__table__), rows)
            except IntegrityError:
                session.rollback()
            else:
                session.execute(latest_upsert(upsert, latest_rows(rows)))
                return None
        return super()._log_metrics_once(run_id, metrics)

    def metric_rows(self, run_id: str, metrics: list[Metric]) -> list[dict]:
        """The ``metrics`` table's rows of ``metrics``, validated and sanitized as MLflow does
        (NaN stored as 0 with is_nan, ±inf as the largest float), each row once."""
        rows = {}
        single = len(metrics) == 1
        for index, metric in enumerate(metrics):
            path = "" if single else f"metrics[{index}]"
            _validate_metric(metric.key, metric.value, metric.timestamp, metric.step, path=path)
            is_nan, value = self.sanitize_metric_value(metric.value)
            row = dict(run_uuid=run_id, key=metric.key, value=value,
                       timestamp=metric.timestamp, step=metric.step, is_nan=is_nan)  # fmt: skip
            rows.setdefault(tuple(row.values()), row)  # the primary key: all of the row
        return list(rows.values())


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
