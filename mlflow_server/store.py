"""MLflow's SQL tracking store, but a batch of metric values is one statement, not an ORM object
a value, and ending a run does not load the whole run to answer with its info.

MLflow's ``SqlAlchemyStore`` makes a ``SqlMetric`` per value and reconciles ``latest_metrics``
in Python: most of the MLflow server's work for a training job, and several times what the rows
cost (docs/benchmarks.md, "MLflow's tracking store"). Here the same rows go in as one
COPY (PostgreSQL through psycopg2; an INSERT of many rows elsewhere), and the latest value of
each name as one upsert that only moves forward. A batch of which some values are stored already
(sent again after a lost answer) takes MLflow's own path, which keeps only the new ones; so do
MySQL and SQL Server, and steps or times that are not integers (the Python API allows floats,
which each database rounds its own way; the REST API sends integers).

``update_run_info`` (the REST API's runs/update, a run's end) is MLflow's but for its answer:
MLflow builds the whole run (every param, tag and latest metric, three more queries) and
returns only its info; here the info is built from the run's row (docs/benchmarks.md, "Where a
trial's time goes").
"""

import io
from contextlib import closing

from mlflow.entities import Metric, RunInfo, RunStatus
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun, SqlTag
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
from mlflow.utils.validation import _validate_metric
from sqlalchemy import insert, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

# The dialects with an upsert (INSERT ... ON CONFLICT DO UPDATE), for latest_metrics.
UPSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
LATEST_COLUMNS = ("value", "timestamp", "step", "is_nan")
COPY_COLUMNS = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")
COPY_METRICS = f"COPY metrics ({', '.join(COPY_COLUMNS)}) FROM STDIN"
# Each upsert statement binds 6 values a row: SQLite before 3.32 takes 999 at the most.
UPSERT_ROWS = 150
# COPY's text format: these characters in a value would end a field, a row or an escape.
COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class BatchMetricsStore(SqlAlchemyStore):
    def log_metric(self, run_id: str, metric: Metric) -> None:
        # MLflow validates a metric in _log_metrics_once, a batch's again in log_batch: here
        # each once, where it comes in (log_metric and log_batch are _log_metrics' callers).
        _validate_metric(metric.key, metric.value, metric.timestamp, metric.step)
        super().log_metric(run_id, metric)

    def update_run_info(self, run_id, run_status, end_time, run_name) -> RunInfo:
        with self.ManagedSessionMaker(read_only=False) as session:
            run = self._get_run(run_uuid=run_id, session=session)
            self._check_run_is_active(run)
            if run_status is not None:
                run.status = RunStatus.to_string(run_status)
            if end_time is not None:
                run.end_time = end_time
            if run_name:
                run.name = run_name
                run_name_tag = self._try_get_run_tag(session, run_id, MLFLOW_RUN_NAME)
                if run_name_tag is None:
                    run.tags.append(SqlTag(key=MLFLOW_RUN_NAME, value=run_name))
                else:
                    run_name_tag.value = run_name
            session.add(run)
            return self.run_info(session, run)

    def run_info(self, session, run: SqlRun) -> RunInfo:
        """``SqlRun.to_mlflow_entity().info``, without loading the run's params, tags and
        metrics: a run without a name takes it from its mlflow.runName tag, as there."""
        info = RunInfo(
            run_id=run.run_uuid, run_name=run.name, experiment_id=str(run.experiment_id),
            user_id=run.user_id, status=run.status, start_time=run.start_time,
            end_time=run.end_time, lifecycle_stage=run.lifecycle_stage,
            artifact_uri=run.artifact_uri,
        )  # fmt: skip
        if not info.run_name:
            tag = self._try_get_run_tag(session, run.run_uuid, MLFLOW_RUN_NAME)
            if tag is not None and tag.value:
                info._set_run_name(tag.value)
        return info

    def _log_metrics_once(self, run_id: str, metrics: list[Metric]) -> None:
        upsert = UPSERT.get(self.db_type)
        integers = all(type(m.step) is int and type(m.timestamp) is int for m in metrics)
        if upsert is None or not integers:
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
            except IntegrityError:
                session.rollback()
            else:
                latest = latest_rows(rows)
                for start in range(0, len(latest), UPSERT_ROWS):
                    session.execute(latest_upsert(upsert, latest[start : start + UPSERT_ROWS]))
                return None
        return super()._log_metrics_once(run_id, metrics)

    def insert_metrics(self, session, rows: list[dict]) -> None:
        """COPY on PostgreSQL through psycopg2 (the cheapest way in), else an INSERT of all
        the rows (SQLAlchemy's executemany)."""
        connection = session.connection()
        if connection.dialect.driver == "psycopg2":  # its COPY (psycopg 3 has another)
            copy_metrics(connection, rows)
        else:
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


def copy_metrics(connection, rows: list[dict]) -> None:
    """``rows`` into ``metrics`` by COPY. Its errors are raised as SQLAlchemy raises a
    statement's, so MLflow's session handles them alike: a duplicate row is an IntegrityError,
    a deadlock is retried, a lost connection is dropped from the pool."""
    dialect, raw = connection.dialect, connection.connection
    with closing(raw.cursor()) as cursor:
        try:
            cursor.copy_expert(COPY_METRICS, io.StringIO(copy_text(rows)))
        except dialect.loaded_dbapi.Error as error:
            lost = dialect.is_disconnect(error, raw.dbapi_connection, cursor)
            if lost:
                connection.invalidate(error)
            raise DBAPIError.instance(
                COPY_METRICS, None, error, dialect.loaded_dbapi.Error, connection_invalidated=lost
            ) from error


def copy_text(rows: list[dict]) -> str:
    """``rows`` in COPY's text format, COPY_COLUMNS in order."""
    return "".join(
        f"{row['key'].translate(COPY_ESCAPES)}\t{float(row['value'])!r}\t{int(row['timestamp'])}\t"
        f"{int(row['step'])}\t{'t' if row['is_nan'] else 'f'}\t"
        f"{row['run_uuid'].translate(COPY_ESCAPES)}\n"
        for row in rows
    )


def latest_rows(rows: list[dict]) -> list[dict]:
    """Each name's most recent row of ``rows``: the largest (step, timestamp, value), MLflow's
    order for ``latest_metrics``; sorted by name, as MLflow does, so that two batches upserting
    the same names lock their rows in one order (no deadlock)."""
    latest: dict[str, dict] = {}
    for row in rows:
        held = latest.get(row["key"])
        if held is None or recency(row) > recency(held):
            latest[row["key"]] = row
    return [latest[key] for key in sorted(latest)]


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
