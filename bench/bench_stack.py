"""The stack the service benchmarks run against, started with the commands of service/stack.py:
``mlflow server --workers 1`` on a PostgreSQL store, the API as one uvicorn process, the
baseline of bench/minimal_app.py, and Celery workers, on the local PostgreSQL (databases of
their own, dropped at the end) and a Redis db of the caller's (flushed at the start and the
end). Every process started is stopped when the ExitStack closes, even on failure."""

import os
import platform
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import httpx
import redis
from sections import cpu  # bench/ is on sys.path: scripts run from it
from sqlalchemy import create_engine, text

from service.stack import MLFLOW_ENV, api_command, mlflow_command, worker_command
from settings import Settings
from store.migrate import upgrade
from tests.processes import Process, start, wait_until
from tests.servers import REDIS_URL, empty_postgres_database, free_port

BENCH = Path(__file__).resolve().parent
PACKAGES = ("fastapi", "uvicorn", "celery", "sqlalchemy", "mlflow")


@dataclass
class Bench:
    """The servers of one run: URLs, the databases, and the processes to stop."""

    home: Path
    broker: str
    jobs_db: str
    minimal_db: str
    env: dict[str, str]
    url: dict[str, str]
    processes: dict[str, Process] = field(default_factory=dict)

    def start(self, name: str, command: list[str], ready: Callable[[Process], bool], **env):
        process = start(command, self.home / f"{name}.log", {**self.env, **env})
        self.processes[name] = process
        wait_until(lambda: ready(process), process, name, 120)


def flush_redis(url: str) -> None:
    redis.Redis.from_url(url).flushdb()  # the URL's db only


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def stop_all(processes: list[Process]) -> None:
    """SIGTERM all at once, then wait for each (SIGKILL to what is left after 5 s)."""
    for process in processes:
        if process.popen.poll() is None:
            process.popen.terminate()
    for process in processes:
        process.stop(timeout=5)


def start_servers(
    stack: ExitStack, home: Path, redis_db: int, api_env: dict[str, str] | None = None
) -> Bench:
    """Databases, Redis db, MLflow, the API (``api_env`` added to its environment) and the
    minimal app: all up when this returns."""
    jobs_db, mlflow_db, minimal_db = (
        stack.enter_context(empty_postgres_database(f"gradq_bench_{n}"))
        for n in ("jobs", "mlflow", "minimal")
    )
    upgrade(jobs_db)
    broker = f"{REDIS_URL}/{redis_db}"
    flush_redis(broker)
    stack.callback(flush_redis, broker)
    port = {name: free_port() for name in ("api", "minimal", "mlflow")}
    url = {name: f"http://127.0.0.1:{p}" for name, p in port.items()}
    env = {**MLFLOW_ENV, "GRADQ_HOME": str(home), "GRADQ_DATABASE_URL": jobs_db,
           "GRADQ_BROKER_URL": broker, "GRADQ_MLFLOW_TRACKING_URI": url["mlflow"],
           "BENCH_SQL_URL": minimal_db, "BENCH_BROKER_URL": broker}  # fmt: skip
    bench = Bench(home, broker, jobs_db, minimal_db, env, url)
    stack.callback(lambda: stop_all(list(bench.processes.values())))
    mlflow = mlflow_command(Settings(home=home), "127.0.0.1", port["mlflow"])
    mlflow[mlflow.index("--backend-store-uri") + 1] = mlflow_db  # PostgreSQL, as compose's
    bench.start("mlflow", mlflow, lambda _: answers(f"{url['mlflow']}/health"))
    bench.start("api", api_command("127.0.0.1", port["api"]),
                lambda _: answers(f"{url['api']}/healthz"), **(api_env or {}))  # fmt: skip
    minimal = api_command("127.0.0.1", port["minimal"])
    minimal[minimal.index("service.app:create_app")] = "minimal_app:create_app"
    bench.start("minimal", [*minimal, "--app-dir", str(BENCH)],
                lambda _: answers(f"{url['minimal']}/docs"))  # fmt: skip
    return bench


def start_workers(bench: Bench, concurrency: int = 1, baseline: bool = True, nice: int = 0) -> None:
    """gradq's worker (the command of make up, under ``nice -n nice``) and, if ``baseline``,
    the minimal app's, alike but for the app."""
    ready = lambda process: " ready." in process.log_text()  # noqa: E731
    niced = ["nice", "-n", str(nice)] if nice else []
    bench.start("worker", [*niced, *worker_command(concurrency)], ready)
    if baseline:
        command = worker_command()
        command[command.index("workers.celery_app")] = "minimal_app:celery_app"
        bench.start("baseline-worker", command, ready, PYTHONPATH=str(BENCH))


def cpu_seconds_by(wanted: Callable[[int, str], bool]) -> float:
    """CPU seconds used so far by the live processes for which wanted(session, name) holds."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except OSError:  # it exited meanwhile
            continue
        fields = tail.split()  # from field 3 on: 6 is the session, 14 and 15 utime and stime
        if wanted(int(fields[3]), head.split("(", 1)[1]):
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine(bench: Bench) -> list[str]:
    """The markdown lines that say where a run ran: CPU, versions, servers."""
    engine = create_engine(bench.jobs_db)
    with engine.connect() as connection:
        postgres = connection.execute(text("show server_version")).scalar()
    engine.dispose()
    redis_version = redis.Redis.from_url(bench.broker).info("server")["redis_version"]
    return [
        f"- Machine: nproc {len(os.sched_getaffinity(0))}, {cpu()}",
        f"- Python {platform.python_version()}, "
        + ", ".join(f"{name} {version(name)}" for name in PACKAGES)
        + f"; PostgreSQL {postgres}, Redis {redis_version}, both local",
    ]
