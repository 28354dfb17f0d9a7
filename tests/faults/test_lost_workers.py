"""Workers that die or stop mid-job lose nothing: SIGKILL of a pool child or of a whole worker,
a job that crashes every worker it lands on, a duplicate delivery, and SIGTERM."""

import os
import random
import signal
import time

import numpy as np
import pytest
from celery import Celery

from contract.spec import JobSpec
from models import load_dataset, load_weights, train, train_val_split
from store.tables import utcnow
from tests.faults.harness import FAST_SETTINGS, kill_job_process, mlp_spec
from workers.run import build_network

pytestmark = pytest.mark.slow


def test_sigkill_of_the_pool_child_at_a_random_epoch_of_10_jobs_loses_none(make_stack):
    stack = make_stack(workers=1, concurrency=2)
    epochs = 1500
    ids = [stack.submit(mlp_spec(stack.experiment, epochs, seed=n)) for n in range(10)]
    rng = random.Random(0)
    for job_id in ids:  # each job is killed once, on its first attempt, at a random epoch
        job = stack.wait_until_running(job_id, min_epoch=rng.randrange(1, epochs - 300))
        kill_job_process(job)

    counts, jobs = stack.report(ids, timeout=240)

    assert (counts.succeeded, counts.lost, counts.duplicate_runs, counts.bad_curves) == (
        10,
        0,
        0,
        0,
    )
    assert all(job.attempts >= 2 for job in jobs.values())
    for job in jobs.values():
        assert stack.mlflow.get_run(job.mlflow_run_id).info.status == "FINISHED"


def test_sigkill_of_a_whole_worker_is_reclaimed_within_lease_and_two_reconciler_periods(
    make_stack,
):
    stack = make_stack(workers=1, concurrency=2)
    ids = [stack.submit(mlp_spec(stack.experiment, 1500, seed=n)) for n in range(5)]
    running = [stack.wait_until_running(ids[0], 100).id, stack.wait_until_running(ids[1], 100).id]
    killed_at = utcnow()
    os.killpg(stack.workers["w0"].popen.pid, signal.SIGKILL)  # main process and pool alike
    stack.start_worker("w1", concurrency=2)  # the queued jobs wait for it in Redis

    counts, jobs = stack.report(ids, timeout=240)

    # Taken back from the dead worker by the lease and the reconciler, not by the broker's
    # visibility timeout (24 h): each job's running -> queued event, and its next claim.
    budget = FAST_SETTINGS["lease_seconds"] + 2 * FAST_SETTINGS["reconcile_seconds"]
    for job_id in running:
        requeued = [e for e in stack.events(job_id) if e.to_status == "queued" and e.from_status]
        assert len(requeued) == 1 and "lease expired" in requeued[0].detail
        seconds = (requeued[0].at - killed_at).total_seconds()
        print(f"job {job_id} queued again {seconds:.2f} s after the kill (budget {budget} s)")
        assert seconds <= budget + 1.0  # a second for a busy machine
        assert jobs[job_id].attempts == 2
    assert (counts.succeeded, counts.lost, counts.duplicate_runs, counts.bad_curves) == (5, 0, 0, 0)


def test_a_job_that_crashes_every_worker_fails_after_max_attempts_and_others_finish(make_stack):
    stack = make_stack(workers=1, concurrency=2)
    poison = stack.submit(mlp_spec(stack.experiment, 100_000, seed=99))
    others = [stack.submit(mlp_spec(stack.experiment, 300, seed=n)) for n in range(4)]
    killed = 0
    deadline = time.monotonic() + 120
    while stack.job(poison).status != "failed" and time.monotonic() < deadline:
        job = stack.job(poison)
        if job.status == "running" and job.mlflow_run_id and job.attempts > killed:
            kill_job_process(job)  # the crash this job causes, on every attempt
            killed += 1
        time.sleep(0.05)

    counts, jobs = stack.report([poison, *others], timeout=120)

    assert jobs[poison].status == "failed"
    assert jobs[poison].error == "max attempts (3) exhausted: worker lost"
    assert jobs[poison].attempts == 3 and killed == 3
    assert (counts.succeeded, counts.failed, counts.lost) == (4, 1, 0)
    assert stack.mlflow.get_run(jobs[poison].mlflow_run_id).info.status == "FAILED"


def test_the_same_task_delivered_twice_trains_once_in_one_run(make_stack, redis_server):
    stack = make_stack(workers=2, concurrency=1)
    job_id = stack.submit(mlp_spec(stack.experiment, 1000))
    producer = Celery("duplicate-sender", broker=redis_server.url, set_as_current=False)
    producer.send_task("gradq.train", args=[job_id])  # the API sent it once already
    stack.wait_until_running(job_id)
    producer.send_task("gradq.train", args=[job_id])  # and again while it runs

    counts, _ = stack.report([job_id], timeout=120)
    producer.send_task("gradq.train", args=[job_id])  # and once it is over
    time.sleep(1.0)

    assert (counts.succeeded, counts.duplicate_runs, counts.bad_curves) == (1, 0, 0)
    events = stack.events(job_id)
    assert [e.to_status for e in events if e.from_status != e.to_status] == [
        "queued", "running", "succeeded",
    ]  # fmt: skip
    ignored = [e for e in events if "duplicate delivery ignored" in (e.detail or "")]
    assert len(ignored) >= 2
    assert stack.job(job_id).attempts == 1


@pytest.mark.parametrize(
    ("signalled", "store"),
    [("main_process", "local"), ("process_group", "local"), ("main_process", "mlflow")],
)
def test_sigterm_mid_training_hands_the_job_back_and_it_resumes_bit_for_bit(
    make_stack, signalled, store, tmp_path
):
    # mlflow: the workers share no checkpoint folder (one they cannot write is set): the
    # checkpoint goes through MLflow's served artifacts.
    unwritable = {"checkpoint_root": "/proc/no-checkpoints-here"} if store == "mlflow" else {}
    stack = make_stack(workers=2, concurrency=1, checkpoint_store=store, **unwritable)
    spec = mlp_spec(stack.experiment, 1500, dtype="float64", checkpoint_every=50)
    job_id = stack.submit(spec)
    job = stack.wait_until_running(job_id, min_epoch=300)
    first = next(name for name in stack.workers if job.lease_owner.startswith(f"{name}-"))
    worker = stack.workers[first].popen
    if signalled == "main_process":  # a deploy's `kill`, docker stop of a non-init PID 1
        worker.send_signal(signal.SIGTERM)
    else:  # make up's Ctrl-C, a terminal's: the pool child receives it too
        os.killpg(worker.pid, signal.SIGTERM)

    counts, jobs = stack.report([job_id], timeout=120)

    job = jobs[job_id]
    assert (counts.succeeded, counts.duplicate_runs, counts.bad_curves) == (1, 0, 0)
    assert not job.lease_owner and job.attempts == 2
    handed_back = [e for e in stack.events(job_id) if (e.from_status, e.to_status) == (
        "running", "queued")]  # fmt: skip
    assert len(handed_back) == 1 and "handed back at epoch" in handed_back[0].detail
    epoch = handed_back[0].detail.split("handed back at epoch ")[1].split(":")[0]
    resumed = [e.detail for e in stack.events(job_id) if "resumed at epoch" in (e.detail or "")]
    assert len(resumed) == 1 and resumed[0].startswith(f"resumed at epoch {epoch} (by ")
    second_owner = [e.detail for e in stack.events(job_id) if e.from_status == "queued"][-1]
    assert f"{first}-" not in second_owner
    if store == "mlflow":
        assert stack.job(job_id).checkpoint_uri.startswith("mlflow-artifacts:/gradq/checkpoints/")
    weights = load_weights(stack.mlflow.download_artifacts(job.mlflow_run_id, "weights.npz"))
    reference = uninterrupted_weights(spec)
    assert weights.keys() == reference.keys()
    assert all(np.array_equal(weights[k], reference[k]) for k in reference)


def uninterrupted_weights(spec: dict) -> dict[str, np.ndarray]:
    """The weights the same spec reaches in one uninterrupted run, here in the test."""
    full = JobSpec.model_validate(spec)
    training = full.training
    ds = load_dataset(full.dataset.name, dtype=training.dtype)
    X, Y, X_val, Y_val = train_val_split(ds.X, ds.Y, training.validation_split, seed=training.seed)

    class Data:  # what build_network reads of the worker's TrainingData
        dataset = ds

    net = build_network(full, Data)
    train(net, X, Y, X_val=X_val, Y_val=Y_val, **training.train_options())
    return net.params
