"""The worker's initial gradient check: bounded in entries and work on a big network, and
stopped by a cancel within about a heartbeat (it once ran 103 s that no cancel could end)."""

import threading
import time

import numpy as np

import store.jobs
from models import Dataset, Network
from store.db import transaction
from tests.workers.helpers import create_job, get_job, statuses, with_experiment
from workers import initial_check, run
from workers.data import TrainingData

OWNER = "test-worker/1"


def digits_like(m: int = 50) -> TrainingData:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((m, 64)).astype(np.float32).T
    Y = rng.integers(0, 10, (1, m))
    dataset = Dataset("digits-like", X, Y, tuple("0123456789"), (64,))
    return TrainingData(dataset, "sha", None, X, Y, None, None)


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return False


def test_the_check_of_a_deep_wide_network_perturbs_few_entries_in_all():
    # The issue's [100000, 1] x 25, scaled down: 40 parameters, ~0.8 M weights.
    net = Network([64, *[20_000, 1] * 10, 10], output="softmax", seed=1)
    examples = initial_check.GRADIENT_CHECK_EXAMPLES
    counted = Counter()

    difference = initial_check.initial_gradient_check(net, digits_like(), 0.0, should_stop=counted)

    assert difference >= 0.0  # through width-1 ReLU layers: not a meaningful value here
    allowed = initial_check.gradient_check_entries(net.num_parameters, examples)
    assert counted.calls == allowed <= initial_check.GRADIENT_CHECK_MAX_ENTRIES
    work = 2 * examples * net.num_parameters * counted.calls  # multiply-adds of its costs
    assert work <= max(initial_check.GRADIENT_CHECK_WORK, 2 * examples * net.num_parameters * 4)


def test_a_small_network_is_still_checked_on_every_parameter():
    net = Network([64, 16, 10], output="softmax", seed=1)
    counted = Counter()

    initial_check.initial_gradient_check(net, digits_like(), 0.0, should_stop=counted)

    assert counted.calls == 20 + 16 + 20 + 10  # 20 of each W, all of b1 and b2


def test_a_cancel_during_the_gradient_check_ends_the_job_within_about_a_heartbeat(
    settings, session_factory, mlflow_client, monkeypatch
):
    # A check that would run for minutes: every entry of a [64, 256, 256, 10] network.
    for limit in ("GRADIENT_CHECK_PER_PARAMETER", "GRADIENT_CHECK_MAX_ENTRIES"):
        monkeypatch.setattr(initial_check, limit, 10**9)
    monkeypatch.setattr(initial_check, "GRADIENT_CHECK_MIN_ENTRIES", 10**9)
    spec = with_experiment(
        {
            "dataset": {"name": "digits"},
            "model": {"hidden_layers": [256, 256], "output": "softmax"},
            "training": {"epochs": 100_000},
        }
    )
    job_id = create_job(session_factory, spec)
    cancelled_at = []

    def cancel_once_running():
        deadline = time.monotonic() + 30
        while get_job(session_factory, job_id).status != "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.5)  # into the check
        with transaction(session_factory) as session:
            store.jobs.request_cancel(session, job_id)
        cancelled_at.append(time.monotonic())

    canceller = threading.Thread(target=cancel_once_running)
    canceller.start()
    outcome = run.run_job(job_id, settings, session_factory, OWNER)
    ended = time.monotonic()
    canceller.join()

    assert outcome == "cancelled"
    assert ended - cancelled_at[0] < 3  # heartbeats every 0.05 s here
    job = get_job(session_factory, job_id)
    assert job.status == "cancelled" and job.progress_epoch is None  # it never trained
    assert [to for _, to, _ in statuses(session_factory, job_id)][-1] == "cancelled"
    assert mlflow_client.get_run(job.mlflow_run_id).info.status == "KILLED"
