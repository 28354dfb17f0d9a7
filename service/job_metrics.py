"""The queue's metrics, computed from SQL (and the broker) when Prometheus scrapes, and kept for
``settings.metrics_cache_seconds`` so that scrapes in between do not query the database again."""

import logging
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.broker_depth import broker_depth
from settings import Settings
from store.job_stats import Durations, JobStats, job_stats

log = logging.getLogger("gradq.service")

# Seconds: from jobs that wait or last a moment to those of hours.
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600)


class JobMetrics(Collector):
    """gradq_jobs{state}, queue depths (SQL and broker), gradq_broker_up, queue-wait and
    job-duration histograms, retries, requeues and the workers' unsent MLflow metric values."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        depth: Callable[[Settings], int | None] = broker_depth,
    ):
        self.session_factory = session_factory
        self.settings = settings
        self.depth = depth
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._until = 0.0

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # concurrent scrapes wait for one computation
            if time.monotonic() >= self._until:
                self._cached = self._compute()
                self._until = time.monotonic() + self.settings.metrics_cache_seconds
            return iter(list(self._cached))

    def _compute(self) -> list[Metric]:
        depth = self.depth(self.settings)
        metrics = [
            _gauge("gradq_broker_up", "1 if the broker answered the last scrape, else 0.",
                   depth is not None),
        ]  # fmt: skip
        if depth is not None:
            metrics.append(
                _gauge(
                    "gradq_broker_queue_depth", "Training messages waiting in the broker.", depth
                )
            )
        try:
            with self.session_factory() as session:
                stats = job_stats(session, DURATION_BUCKETS)
        except SQLAlchemyError as error:  # the database's own gauge says so; never a 500
            log.warning("job metrics not computed: %s", type(error).__name__)
            return [*metrics, _gauge("gradq_database_up", "1 if SQL answered, else 0.", 0)]
        return [*metrics, _gauge("gradq_database_up", "1 if SQL answered, else 0.", 1),
                *_job_metrics(stats)]  # fmt: skip


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


def _histogram(name: str, documentation: str, durations: Durations) -> HistogramMetricFamily:
    buckets = [(str(float(bound)), count) for bound, count in durations.buckets]
    buckets.append(("+Inf", durations.count))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=durations.total)


def _job_metrics(stats: JobStats) -> list[Metric]:
    jobs = GaugeMetricFamily("gradq_jobs", "Jobs in each state.", labels=["state"])
    for state, count in stats.by_status.items():
        jobs.add_metric([state], count)
    return [
        jobs,
        _gauge("gradq_queue_depth", "Jobs queued in SQL for a worker to claim.",
               stats.by_status["queued"] - stats.waiting_at_rung),
        _gauge("gradq_jobs_waiting_at_rung", "Sweep trials queued but paused at a rung until "
               "promoted or stopped.", stats.waiting_at_rung),
        _histogram("gradq_job_queue_wait_seconds", "From submission to first start, per job.",
                   stats.queue_wait),
        _histogram("gradq_job_duration_seconds", "From first start to end, per finished job.",
                   stats.duration),
        _gauge("gradq_jobs_retried", "Jobs claimed more than once.", stats.retried),
        CounterMetricFamily("gradq_job_attempts", "Claims of jobs by workers, in all.",
                            value=stats.attempts),
        CounterMetricFamily("gradq_job_requeues", "Running jobs sent back to the queue (a "
                            "worker's hand-back or an expired lease).", value=stats.requeues),
        CounterMetricFamily("gradq_job_handoffs", "Running jobs handed back by a worker "
                            "shutting down or paused at a sweep's rung.", value=stats.handoffs),
        _gauge("gradq_mlflow_spool_values", "Metric values the running jobs' workers hold "
               "for MLflow, not sent yet.", stats.metrics_unsent),
    ]  # fmt: skip
