"""One worker's cores shared among its pool processes: each child's BLAS gets
cores ÷ concurrency threads. Left alone, OpenBLAS gives every child a thread per core, and two
children training at once on two cores ran a [64, 32] network on digits ~8× slower than one
alone (1,500 epochs: 16-20 s against ~2 s), their threads spinning against each other."""

import os

from celery.signals import celeryd_init, worker_process_init
from threadpoolctl import threadpool_limits

_concurrency = 1


@celeryd_init.connect
def _remember_concurrency(options: dict, **_) -> None:
    global _concurrency
    _concurrency = max(1, int(options.get("concurrency") or os.cpu_count() or 1))


@worker_process_init.connect
def _limit_blas_threads(**_) -> None:
    threadpool_limits(limits=threads_per_child(os.cpu_count() or 1, _concurrency), user_api="blas")


def threads_per_child(cores: int, concurrency: int) -> int:
    return max(1, cores // concurrency)
