"""The worker's processes freeze the objects made at start-up: the collector skips them, and
still collects what comes later."""

import inspect
import subprocess
import sys

from celery.signals import worker_init, worker_process_init

FREEZE_THEN_MAKE_A_CYCLE = """
import gc
import mlflow, sqlalchemy  # a worker's imports: many objects to freeze
from workers.heap import freeze_startup_objects

freeze_startup_objects()
frozen = gc.get_freeze_count()
cycle = []
cycle.append(cycle)
del cycle
print(frozen, gc.collect())
"""


def test_start_up_objects_are_frozen_and_later_cycles_still_collected():
    done = subprocess.run(
        [sys.executable, "-c", FREEZE_THEN_MAKE_A_CYCLE], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    frozen, collected = map(int, done.stdout.split())
    assert frozen > 50_000  # MLflow and SQLAlchemy alone: hundreds of thousands
    assert collected >= 1  # the list that holds itself


def test_the_worker_s_main_process_and_pool_children_freeze_at_start():
    from workers import celery_app  # what a worker loads: it must connect the handlers

    start = celery_app.process_start
    receivers = lambda signal: [ref() for _, ref in signal.receivers]  # noqa: E731
    assert start.main_process_started in receivers(worker_init)
    assert start.pool_child_started in receivers(worker_process_init)
    steps = inspect.getsource(start.pool_child_started).splitlines()
    assert "heap.freeze_startup_objects()" in steps[-1]  # last: after what the steps made
