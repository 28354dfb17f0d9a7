"""Epoch by epoch: the long job's training alone, and inside ``run_job`` (no Celery).

``.venv/bin/python bench/worker_epochs.py [--epochs 300] [--repeats 4]`` starts the servers of
bench/service.py (PostgreSQL databases, Redis, an MLflow server), then alternates the digits
job of its tracking part trained alone in this process and run by ``workers.run.run_job`` in
this process, with a callback that stamps the end of every epoch. It prints the epochs'
durations: median, p90, p99, max, and the time spent above the median.
"""

import argparse
import importlib.util
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
# bench/service.py by path: "service" is the project's package.
_spec = importlib.util.spec_from_file_location("bench_service", BENCH / "service.py")
bench_service = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_service)

import store.jobs  # noqa: E402  (bench_service put the repository root on sys.path)
import workers.run  # noqa: E402
from contract.spec import JobSpec  # noqa: E402
from settings import Settings  # noqa: E402
from store.db import make_engine, make_session_factory, transaction  # noqa: E402


class EpochStamps:
    """The callback: perf_counter at the end of every epoch."""

    def __init__(self):
        self.stamps: list[float] = []

    def on_epoch_end(self, epoch: int, metrics) -> None:
        self.stamps.append(time.perf_counter())

    def durations_ms(self) -> np.ndarray:
        durations = np.diff(np.array(self.stamps)) * 1000
        self.stamps.clear()
        return durations


def stamped_train(stamps: EpochStamps):
    """workers.run.train with ``stamps`` added to its callbacks."""
    train = workers.run.train

    def train_with_stamps(*args, callbacks=(), **kwargs):
        return train(*args, callbacks=[*callbacks, stamps], **kwargs)

    return train_with_stamps


def line(name: str, ms: np.ndarray) -> str:
    median = np.median(ms)
    above = np.clip(ms - median, 0, None).sum()
    return (
        f"{name:8s} {len(ms)} epochs: median {median:.2f} ms, p90 {np.percentile(ms, 90):.2f}, "
        f"p99 {np.percentile(ms, 99):.2f}, max {ms.max():.1f}; in all {ms.sum() / 1000:.2f} s, "
        f"of which {above:.0f} ms above the median"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    stamps = EpochStamps()
    workers.run.train = stamped_train(stamps)
    with ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gradq-epochs-")))
        bench = bench_service.start_servers(stack, home, bench_service.REDIS_DB)
        sessions = make_session_factory(make_engine(bench.jobs_db))
        settings = Settings(home=home, database_url=bench.jobs_db, broker_url=bench.broker,
                            mlflow_tracking_uri=bench.url["mlflow"])  # fmt: skip
        spec = JobSpec.model_validate(
            bench_service.with_epochs(bench_service.LONG_SPEC, args.epochs)
        )
        bench_service.train_alone(spec, sessions)  # warm-up: data loaded, code paths hot
        for _ in range(args.repeats):
            bench_service.train_alone(spec, sessions, [stamps])
            print(line("alone", stamps.durations_ms()))
            with transaction(sessions) as session:
                job, _ = store.jobs.create_job(
                    session, spec=spec.model_dump(mode="json"), experiment="bench-epochs",
                    name=None, dataset=spec.dataset.name, epochs=args.epochs,
                )  # fmt: skip
            status = workers.run.run_job(job.id, settings, sessions, "bench-epochs/1")
            print(line("run_job", stamps.durations_ms()), f"({status})")


if __name__ == "__main__":
    main()
