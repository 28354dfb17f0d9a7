"""The budgets decided at submission: a job's estimated memory against GRADQ_MAX_JOB_BYTES
(422 naming model.hidden_layers, or training.batch_size when a smaller batch fits), and the
metric values a run may log (training.log_every, filled in from GRADQ_MAX_METRIC_VALUES)."""

import os

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

import settings
from settings import Settings
from store.tables import Job

GIB = 1024**3
# The issue's job: 13.8 M parameters (under the parameter budget) needing ~29 GiB.
HUGE_DIGITS = {
    "dataset": {"name": "digits"},
    "model": {"hidden_layers": [100_000, 1] * 25, "output": "softmax"},
    "training": {"epochs": 10},
}


def count_jobs(rows) -> int:
    with rows() as session:
        return session.scalar(select(func.count()).select_from(Job))


def test_the_issues_network_is_refused_with_the_default_limit_of_a_24_gib_machine(
    make_client, redis_queue, rows
):
    client = make_client(broker_url=redis_queue.url, max_job_bytes=24 * GIB // 2)

    response = client.post("/v1/jobs", json=HUGE_DIGITS)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] in ("training.batch_size", "model.hidden_layers")
    assert "GiB of memory" in error["message"]
    assert "over the limit of 12 GiB (GRADQ_MAX_JOB_BYTES)" in error["message"]
    assert count_jobs(rows) == 0


def test_the_issues_network_is_refused_with_this_machines_default_limit(client, rows):
    assert Settings(_env_file=None).max_job_bytes == settings.half_of_physical_memory()
    if settings.half_of_physical_memory() > 24 * GIB:
        pytest.skip("this machine has more than 48 GiB: the job fits its default limit")

    response = client.post("/v1/jobs", json=HUGE_DIGITS)

    assert response.status_code == 422, response.text
    assert count_jobs(rows) == 0


def test_a_job_that_fits_with_a_smaller_batch_is_told_which_one_fits(make_client, redis_queue):
    client = make_client(broker_url=redis_queue.url, max_job_bytes=2 * GIB)
    spec = {**HUGE_DIGITS, "model": {"hidden_layers": [100_000, 1] * 3, "output": "softmax"}}

    response = client.post("/v1/jobs", json=spec)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "training.batch_size"
    batch = int(error["message"].rsplit("a training.batch_size of at most ", 1)[1].split()[0])
    assert 1 <= batch < 1348  # digits' training split, the full batch asked for
    fitting = {**spec, "training": {**spec["training"], "batch_size": batch}}
    assert client.post("/v1/jobs", json=fitting).status_code == 202
    too_big = {**spec, "training": {**spec["training"], "batch_size": batch + 1}}
    assert client.post("/v1/jobs", json=too_big).json()["error"]["field"] == "training.batch_size"


def test_a_network_too_big_for_any_batch_names_the_hidden_layers(make_client, redis_queue, rows):
    client = make_client(broker_url=redis_queue.url, max_job_bytes=64 * 1024**2)
    spec = {**HUGE_DIGITS, "model": {"hidden_layers": [4000, 4000], "output": "softmax"}}

    response = client.post("/v1/jobs", json=spec)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "model.hidden_layers"
    assert "whatever the batch size" in error["message"]
    assert "over the limit of 64 MiB" in error["message"]
    assert count_jobs(rows) == 0


def test_a_float64_job_on_a_dataset_over_the_dataset_limit_as_float64_names_the_dtype(
    make_client, redis_queue, rows
):
    # digits: 1797 x 64 values, 449 KiB as float32 and 898 KiB as float64.
    client = make_client(broker_url=redis_queue.url, max_dataset_bytes=700 * 1024)
    spec = {"dataset": {"name": "digits"}, "training": {"dtype": "float64", "epochs": 5}}

    response = client.post("/v1/jobs", json=spec)
    accepted = client.post("/v1/jobs", json={**spec, "training": {"epochs": 5}})

    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "training.dtype"
    assert "898 KiB as float64, over the limit of 700 KiB" in response.json()["error"]["message"]
    assert accepted.status_code == 202, accepted.text
    assert count_jobs(rows) == 1


def test_the_memory_limit_is_read_from_the_environment_and_must_be_positive(monkeypatch):
    monkeypatch.setenv("GRADQ_MAX_JOB_BYTES", str(3 * GIB))
    assert Settings(_env_file=None).max_job_bytes == 3 * GIB
    monkeypatch.setenv("GRADQ_MAX_JOB_BYTES", "0")
    with pytest.raises(ValidationError, match="max_job_bytes"):
        Settings(_env_file=None)


def test_the_default_limit_is_half_the_physical_memory():
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert settings.half_of_physical_memory() == physical // 2


def test_a_short_run_logs_every_epoch(client):
    response = client.post("/v1/jobs", json={"dataset": {"name": "faces"}})

    assert response.status_code == 202, response.text
    assert response.json()["spec"]["training"]["log_every"] == 1


def test_a_run_past_the_metric_budget_logs_every_kth_epoch_within_it(make_client, redis_queue):
    client = make_client(broker_url=redis_queue.url, max_metric_values=10_000)
    spec = {
        "dataset": {"name": "digits"},
        "model": {"hidden_layers": [8] * 50, "output": "softmax"},
        "training": {"epochs": 5_000},
    }

    response = client.post("/v1/jobs", json=spec)

    assert response.status_code == 202, response.text
    from contract.metric_budget import logged_values

    log_every = response.json()["spec"]["training"]["log_every"]
    per_epoch = 3 + 1 + 51  # cost, train and val accuracy, learning rate, 51 gradient norms
    assert logged_values(5_000, log_every, per_epoch) <= 10_000
    assert logged_values(5_000, log_every - 1, per_epoch) > 10_000  # the smallest that fits


def test_a_log_every_given_is_kept_unless_it_logs_over_the_budget(make_client, redis_queue):
    client = make_client(broker_url=redis_queue.url, max_metric_values=10_000)
    spec = {"dataset": {"name": "faces"}, "training": {"epochs": 50_000, "log_every": 100}}

    kept = client.post("/v1/jobs", json=spec)
    too_often = client.post(
        "/v1/jobs", json={**spec, "training": {"epochs": 50_000, "log_every": 2}}
    )

    assert kept.status_code == 202 and kept.json()["spec"]["training"]["log_every"] == 100
    assert too_often.status_code == 422
    error = too_often.json()["error"]
    assert error["field"] == "training.log_every"
    assert "over the budget of 10,000" in error["message"]


def test_the_spool_must_hold_a_whole_runs_budget():
    with pytest.raises(ValidationError, match=r"metrics_spool_max .* must be at least"):
        Settings(_env_file=None, metrics_spool_max=5_000, max_metric_values=10_000)
