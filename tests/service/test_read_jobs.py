"""GET /v1/jobs (filters, cursor pages), GET /v1/jobs/{id}, cancel, metrics from MLflow."""

import httpx
import pytest

from store import jobs as job_rows
from tests.servers import free_port

FACES = {"dataset": {"name": "faces"}, "training": {"epochs": 10}}


def submit(client, **fields) -> dict:
    response = client.post("/v1/jobs", json=FACES | fields)
    assert response.status_code == 202, response.text
    return response.json()


def finish(rows, job_id: str, status: str = "succeeded", **outcome) -> None:
    with rows() as session, session.begin():
        job_rows.claim(session, job_id, "worker-1", lease_seconds=60)
        job_rows.finish(session, job_id, "worker-1", status, **outcome)


def test_pages_of_two_list_five_jobs_newest_first_without_duplicates(client):
    submitted = [submit(client, name=f"job-{i}")["id"] for i in range(5)]

    pages, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = client.get("/v1/jobs", params=params).json()
        pages.append([job["id"] for job in body["jobs"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [job_id for page in pages for job_id in page] == submitted[::-1]


def test_jobs_are_filtered_by_status_experiment_and_sweep(client, rows):
    a = submit(client, experiment="a")["id"]
    b = submit(client, experiment="b")["id"]
    client.post(f"/v1/jobs/{b}/cancel")
    with rows() as session, session.begin():
        in_sweep, _ = job_rows.create_job(
            session, spec=FACES, experiment="a", name=None, dataset="faces", epochs=10,
            sweep_id="sweep1",
        )  # fmt: skip
        in_sweep = in_sweep.id

    def ids(**params) -> set[str]:
        return {job["id"] for job in client.get("/v1/jobs", params=params).json()["jobs"]}

    assert ids(experiment="a") == {a, in_sweep}
    assert ids(status="cancelled") == {b}
    assert ids(status="queued", experiment="a") == {a, in_sweep}
    assert ids(sweep_id="sweep1") == {in_sweep}


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 0}, "limit"), ({"limit": 201}, "limit"), ({"status": "paused"}, "status"),
     ({"cursor": "not-a-cursor"}, "cursor")],
)  # fmt: skip
def test_bad_list_parameters_are_422_naming_them(client, params, field):
    response = client.get("/v1/jobs", params=params)

    assert response.status_code == 422
    assert response.json()["error"]["field"] == field


def test_a_job_shows_its_progress_final_metrics_events_and_mlflow_link(client, rows):
    job_id = submit(client, name="shown")["id"]
    with rows() as session, session.begin():
        job_rows.set_mlflow_run(session, job_id, "7", "run123")
    finish(rows, job_id, metrics={"cost": 0.25, "train_accuracy": 0.9, "val_accuracy": 0.8})

    job = client.get(f"/v1/jobs/{job_id}").json()

    assert job["status"] == "succeeded"
    assert job["attempts"] == 1
    assert job["metrics"] == {"cost": 0.25, "train_accuracy": 0.9, "val_accuracy": 0.8}
    assert job["mlflow_run_id"] == "run123"
    # In the MLflow UI's machine-learning mode: by default MLflow 3 opens its GenAI mode.
    ml_mode = "?workflowType=machine_learning"
    assert job["mlflow_url"] == f"http://mlflow.example/#/experiments/7/runs/run123{ml_mode}"
    assert job["mlflow_experiment_url"] == f"http://mlflow.example/#/experiments/7/runs{ml_mode}"
    assert job["started_at"] and job["finished_at"]
    assert [(e["from_status"], e["to_status"]) for e in job["events"]] == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]


def test_a_job_not_yet_tracked_links_to_nothing_in_mlflow(client):
    job = client.get(f"/v1/jobs/{submit(client)['id']}").json()

    assert (job["mlflow_url"], job["mlflow_experiment_url"]) == (None, None)


def test_a_failed_job_carries_its_error(client, rows):
    job_id = submit(client)["id"]
    finish(rows, job_id, "failed", error="diverged at epoch 3: cost is nan")

    job = client.get(f"/v1/jobs/{job_id}").json()

    assert (job["status"], job["error"]) == ("failed", "diverged at epoch 3: cost is nan")


def test_a_nan_cost_is_reported_as_null_not_a_broken_document(client, rows):
    job_id = submit(client)["id"]
    with rows() as session, session.begin():
        job_rows.claim(session, job_id, "worker-1", lease_seconds=60)
        job_rows.heartbeat(session, job_id, "worker-1", 60, epoch=3, cost=float("nan"))

    response = client.get(f"/v1/jobs/{job_id}")

    assert response.status_code == 200
    assert response.json()["progress"] == {"epoch": 3, "epochs": 10, "cost": None}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/jobs/{}"), ("GET", "/v1/jobs/{}/metrics"), ("POST", "/v1/jobs/{}/cancel")],
)
def test_a_missing_job_is_a_json_404(client, method, path):
    response = client.request(method, path.format("0" * 32))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_cancelling_a_queued_job_cancels_it_at_once_and_records_it(client):
    job_id = submit(client)["id"]

    response = client.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    events = client.get(f"/v1/jobs/{job_id}").json()["events"]
    assert (events[-1]["from_status"], events[-1]["to_status"]) == ("queued", "cancelled")


def test_cancelling_a_running_job_asks_it_to_stop(client, rows):
    job_id = submit(client)["id"]
    with rows() as session, session.begin():
        job_rows.claim(session, job_id, "worker-1", lease_seconds=60)

    response = client.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 202
    assert (response.json()["status"], response.json()["cancel_requested"]) == ("running", True)


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_cancelling_a_finished_job_is_409(client, rows, status):
    job_id = submit(client)["id"]
    if status == "cancelled":
        client.post(f"/v1/jobs/{job_id}/cancel")
    else:
        finish(rows, job_id, status, error="boom" if status == "failed" else None)

    response = client.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_finished"


def test_metrics_are_empty_lists_before_a_run_exists(client):
    job_id = submit(client)["id"]

    body = client.get(f"/v1/jobs/{job_id}/metrics").json()

    empty = {"cost": [], "train_accuracy": [], "val_accuracy": []}
    assert body == {"job_id": job_id, "metrics": empty}


def test_metrics_are_503_when_mlflow_is_unreachable(make_client, rows, redis_queue):
    client = make_client(broker_url=redis_queue.url)  # its tracking URI is a closed port
    job_id = submit(client)["id"]
    with rows() as session, session.begin():
        job_rows.set_mlflow_run(session, job_id, "1", "run-somewhere")

    response = client.get(f"/v1/jobs/{job_id}/metrics")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "mlflow_unavailable"


def log_run(tracking_uri: str, metrics: list[tuple[str, float, int]]) -> tuple[str, str]:
    """Create an experiment and a run through MLflow's REST API, log metrics; the ids."""
    api = f"{tracking_uri}/api/2.0/mlflow"
    name = f"service-test-{free_port()}"
    experiment_id = httpx.post(f"{api}/experiments/create", json={"name": name}).json()[
        "experiment_id"
    ]
    run_id = httpx.post(f"{api}/runs/create", json={"experiment_id": experiment_id}).json()["run"][
        "info"
    ]["run_id"]
    batch = [
        # protobuf's JSON spells NaN as a string, as MLflow's own client sends it
        {"key": key, "value": value if value == value else "NaN", "step": step, "timestamp": 0}
        for key, value, step in metrics
    ]
    logged = httpx.post(f"{api}/runs/log-batch", json={"run_id": run_id, "metrics": batch})
    logged.raise_for_status()
    return experiment_id, run_id


def test_metrics_come_from_the_mlflow_run_per_epoch(make_client, rows, redis_queue, mlflow_server):
    client = make_client(broker_url=redis_queue.url, mlflow_tracking_uri=mlflow_server)
    job_id = submit(client)["id"]
    experiment_id, run_id = log_run(
        mlflow_server,
        [("cost", 0.69, 1), ("cost", 0.7, 0), ("cost", 0.5, 2), ("cost", float("nan"), 3),
         ("train_accuracy", 0.6, 0)],
    )  # fmt: skip
    with rows() as session, session.begin():
        job_rows.set_mlflow_run(session, job_id, experiment_id, run_id)

    body = client.get(f"/v1/jobs/{job_id}/metrics").json()

    assert body["metrics"] == {
        "cost": [{"step": 0, "value": 0.7}, {"step": 1, "value": 0.69}, {"step": 2, "value": 0.5},
                 {"step": 3, "value": None}],
        "train_accuracy": [{"step": 0, "value": 0.6}],
        "val_accuracy": [],
    }  # fmt: skip


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_metrics_are_read_from_a_local_tracking_store_too(make_client, rows, tmp_path):
    from mlflow import MlflowClient

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow = MlflowClient(tracking_uri)
    experiment_id = mlflow.create_experiment("local")
    run_id = mlflow.create_run(experiment_id).info.run_id
    for step, cost in enumerate([0.7, 0.6]):
        mlflow.log_metric(run_id, "cost", cost, step=step)
    client = make_client(broker_url="", mlflow_tracking_uri=tracking_uri)
    job_id = submit(client)["id"]
    with rows() as session, session.begin():
        job_rows.set_mlflow_run(session, job_id, experiment_id, run_id)

    metrics = client.get(f"/v1/jobs/{job_id}/metrics").json()["metrics"]

    assert [point["value"] for point in metrics["cost"]] == pytest.approx([0.7, 0.6])
    assert metrics["val_accuracy"] == []
