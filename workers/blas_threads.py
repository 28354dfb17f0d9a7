"""One worker's cores shared among its pool processes: each child's BLAS gets
cores ÷ concurrency threads. Left alone, OpenBLAS gives every child a thread per core, and two
children training at once run many times slower than one alone, their threads spinning
against each other (docs/benchmarks.md, the pool-threads section)."""

import functools
import itertools
import os

from threadpoolctl import ThreadpoolController, threadpool_limits

from models.fast.blas import ONE_THREAD_GEMM_WORK

_concurrency = 1


def remember_concurrency(options: dict) -> None:
    """The pool's size, from the worker's options (its main process, at start)."""
    global _concurrency
    _concurrency = max(1, int(options.get("concurrency") or os.cpu_count() or 1))


def limit_for_pool_child() -> None:
    """This pool child's share of the cores as its BLAS threads."""
    threadpool_limits(limits=threads_per_child(os.cpu_count() or 1, _concurrency), user_api="blas")


def threads_per_child(cores: int, concurrency: int) -> int:
    return max(1, cores // concurrency)


def one_thread_suffices(layer_dims: list[int], batch_size: int) -> bool:
    """Whether every product of a training step, (n[l], n[l-1]) by (n[l-1], batch_size), is
    one that OpenBLAS runs on a single thread anyway.

    Such a job gains nothing from a second BLAS thread but loses with it: the once-per-epoch
    products on the whole validation set are threaded, and each waits for the core that the
    MLflow server, PostgreSQL or the metrics thread hold meanwhile. Measured on 2 cores with
    MLflow ingesting metrics alongside: digits [64, 32], Adam, batch 16, 100 epochs took
    1.25-1.45 s with 2 threads and 1.07-1.22 s with 1 (alone, both ~1.0 s). A one-unit layer
    is a matrix-vector product, which OpenBLAS threads from 9,216 multiply-adds on; at these
    sizes the second thread has as little to do: faces logistic regression, batch 100, 2000
    epochs alone took 0.20-0.28 s with 2 threads and 0.19-0.26 s with 1.
    """
    largest = max(n * n_prev for n_prev, n in itertools.pairwise(layer_dims))
    return largest * batch_size <= ONE_THREAD_GEMM_WORK


def for_training(layer_dims: list[int], batch_size: int):
    """The BLAS threads a job trains with, as a context manager: one when one suffices
    (``one_thread_suffices``), else the process's own limit."""
    threads = 1 if one_thread_suffices(layer_dims, batch_size) else None
    return _controller().limit(limits=threads, user_api="blas")


@functools.cache
def _controller() -> ThreadpoolController:
    """The thread pools loaded in this process, found once: ``threadpool_limits`` looks for them at
    every call, slow in a worker with MLflow, SQLAlchemy and Celery loaded (docs/benchmarks.md,
    'Measured by hand'). NumPy's BLAS, the one training uses, is loaded before the first job."""
    return ThreadpoolController()
