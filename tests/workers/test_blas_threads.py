"""How many BLAS threads a worker gives its children and its jobs (workers/blas_threads.py)."""

import os

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from workers.blas_threads import for_training, one_thread_suffices, threads_per_child


def test_each_child_gets_its_share_of_the_cores():
    assert [threads_per_child(2, c) for c in (1, 2, 4)] == [2, 1, 1]
    assert threads_per_child(8, 3) == 2


def test_one_thread_for_jobs_whose_products_openblas_runs_on_one_thread_anyway():
    assert one_thread_suffices([64, 64, 32, 10], 16)  # 64·64·16 = 65,536 < 262,144
    assert not one_thread_suffices([64, 64, 32, 10], 1347)  # full batch on digits
    assert not one_thread_suffices([784, 256, 128, 10], 128)
    assert one_thread_suffices([625, 1], 100)  # 62,500: logistic regression on faces
    # OpenBLAS's own boundary (interface/gemm.c): one thread up to 262,144 multiply-adds
    assert one_thread_suffices([64, 64], 64)  # 64·64·64 = 262,144
    assert not one_thread_suffices([64, 64], 65)


def blas_threads() -> int:
    return next(pool for pool in threadpool_info() if pool["user_api"] == "blas")["num_threads"]


@pytest.mark.skipif(os.cpu_count() == 1, reason="one core: one BLAS thread whatever the job")
def test_a_job_trains_with_one_thread_only_when_one_suffices():
    with threadpool_limits(limits=2, user_api="blas"):  # the process's limit, as on 2 cores
        with for_training([64, 32, 10], 16):
            assert blas_threads() == 1
        assert blas_threads() == 2  # restored after training
        with for_training([784, 256, 128, 10], 128):
            assert blas_threads() == 2
