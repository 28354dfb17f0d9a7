"""A worker shutting down hands its running jobs back instead of losing them (SIGTERM: a
deploy, `docker stop`, Ctrl-C of `make up`).

Two paths lead to the same place, the training loop stopping after its current epoch with a
checkpoint and the job going back to ``queued``:

- a pool child that receives SIGTERM itself (its whole process group was signalled) sets
  ``requested``; Celery's default for a pool child is to die at once.
- the main process that receives it (only the main process was signalled) marks the running
  jobs of this worker ``handoff_requested`` in SQL, which their next heartbeat reads. It also
  covers the solo pool, where the job runs in the main process.
"""

import logging
import signal
import threading

from billiard.process import current_process

from settings import get_settings
from store.db import make_engine, make_session_factory, transaction
from store.jobs import request_handoff

log = logging.getLogger(__name__)

requested = threading.Event()


def _on_sigterm(_signum, _frame) -> None:
    requested.set()


def forget_requests() -> None:
    requested.clear()


def catch_sigterm_in_pool_child() -> None:
    """Make SIGTERM a hand-back request in this pool child. Called as a job starts: billiard
    installs its own handler (exit at once) after worker_process_init, so earlier would be
    overwritten. The main process (solo pool) keeps Celery's handler: it calls the SQL path."""
    if current_process().name == "MainProcess":
        return
    if signal.getsignal(signal.SIGTERM) is not _on_sigterm:
        signal.signal(signal.SIGTERM, _on_sigterm)


def hand_back_running_jobs(hostname: str) -> None:
    """Ask the running jobs of worker ``hostname`` to hand back. Called inside the main
    process's signal handler: the database work goes to a thread."""
    threading.Thread(target=_request_handoff, args=(hostname,), name="handoff").start()


def _request_handoff(hostname: str) -> None:
    engine = make_engine(get_settings().sql_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            asked = request_handoff(session, hostname)
        log.info("shutting down: %d running job(s) asked to checkpoint and hand back", asked)
    except Exception:
        log.exception("could not ask the running jobs to hand back; their leases will expire")
    finally:
        engine.dispose()
