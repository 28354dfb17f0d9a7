"""POST /v1/jobs: validate, store, commit, send gradq.train by name; 422 naming the field."""

import json
import os

import pytest
from sqlalchemy import func, select

from store.tables import Job, JobEvent
from tests.servers import free_port

VALID = {
    "experiment": "faces-logreg",
    "name": "lr-0.005",
    "dataset": {"name": "faces"},
    "training": {"epochs": 100},
}


def count_jobs(rows) -> int:
    with rows() as session:
        return session.scalar(select(func.count()).select_from(Job))


def test_a_valid_job_is_stored_queued_with_defaults_filled_and_sent_once(client, rows, redis_queue):
    response = client.post("/v1/jobs", json=VALID)

    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued"
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["spec"]["model"] == {
        "hidden_layers": [],
        "hidden_activation": "relu",
        "output": "sigmoid",
        "init": "zeros",
    }
    assert job["spec"]["training"]["learning_rate"] == 0.005
    assert job["progress"] == {"epoch": None, "epochs": 100, "cost": None}
    with rows() as session:
        row = session.get(Job, job["id"])
        events = session.scalars(select(JobEvent).where(JobEvent.job_id == row.id)).all()
        assert row.status == "queued"
        assert row.spec == job["spec"]
        assert row.dispatched_at is not None
        assert [(e.from_status, e.to_status) for e in events] == [(None, "queued")]
    assert redis_queue.messages() == [("gradq.train", [job["id"]])]


def test_hidden_layers_get_softmax_for_ten_classes_and_he_init_for_relu(client):
    spec = {"dataset": {"name": "digits"}, "model": {"hidden_layers": [16]}}

    response = client.post("/v1/jobs", json=spec)

    assert response.status_code == 202, response.text
    model = response.json()["spec"]["model"]
    assert (model["output"], model["init"]) == ("softmax", "he")


def test_tanh_hidden_layers_default_to_xavier_init(client):
    model = {"hidden_layers": [4], "hidden_activation": "tanh"}
    spec = {"dataset": {"name": "faces"}, "model": model}

    response = client.post("/v1/jobs", json=spec)

    assert response.json()["spec"]["model"]["init"] == "xavier"


def test_the_filesystem_broker_gets_a_message_file_naming_the_task_and_job(make_client, rows):
    client = make_client(broker_url="")
    queue = client.app.state.settings.broker_folder / "queue"

    job = client.post("/v1/jobs", json=VALID).json()

    files = sorted(queue.iterdir())
    assert len(files) == 1
    message = json.loads(files[0].read_bytes())
    assert message["headers"]["task"] == "gradq.train"
    assert message["headers"]["argsrepr"] == repr([job["id"]])
    with rows() as session:
        assert session.get(Job, job["id"]).dispatched_at is not None


def test_a_down_broker_still_accepts_the_job_but_leaves_it_undispatched(make_client, rows):
    client = make_client(broker_url=f"redis://127.0.0.1:{free_port()}/0")

    response = client.post("/v1/jobs", json=VALID)

    assert response.status_code == 202
    with rows() as session:
        row = session.get(Job, response.json()["id"])
        assert (row.status, row.dispatched_at) == ("queued", None)


def with_(path: str, value) -> dict:
    """VALID with the dotted ``path`` set to ``value``."""
    spec = json.loads(json.dumps(VALID))
    *parents, leaf = path.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return spec


INVALID_SPECS = {
    "learning rate 0": (with_("training.learning_rate", 0), "training.learning_rate"),
    "negative learning rate": (with_("training.learning_rate", -1), "training.learning_rate"),
    "hidden layer of width 0": (with_("model.hidden_layers", [0]), "model.hidden_layers.0"),
    "second layer of width 0": (with_("model.hidden_layers", [3, 0]), "model.hidden_layers.1"),
    "epochs over the maximum": (with_("training.epochs", 501), "training.epochs"),
    "over the parameter budget": (with_("model.hidden_layers", [2000]), "model.hidden_layers"),
    "unknown field": (with_("bogus", 1), "bogus"),
    "register_as with a quote": (with_("register_as", "x' or 1"), "register_as"),
    "unknown nested field": (with_("training.momentum", 0.9), "training.momentum"),
    "unknown dataset": (with_("dataset.name", "no-such-data"), "dataset.name"),
    "missing dataset": ({"experiment": "x"}, "dataset"),
    "sgd without batch size": (with_("training.optimizer", "sgd"), "training"),
    "unknown optimizer": (with_("training.optimizer", "lbfgs"), "training.optimizer"),
    "zeros init with hidden layers": (
        with_("model", {"hidden_layers": [4], "init": "zeros"}),
        "model.init",
    ),
    "sigmoid on ten digits": (
        with_("dataset.name", "digits") | {"model": {"output": "sigmoid"}},
        "model.output",
    ),
}


@pytest.mark.parametrize(("spec", "field"), list(INVALID_SPECS.values()), ids=list(INVALID_SPECS))
def test_an_invalid_spec_is_422_naming_the_field_and_leaves_nothing_behind(
    make_client, redis_queue, rows, spec, field
):
    client = make_client(broker_url=redis_queue.url, max_epochs=500, max_parameters=1_000_000)

    response = client.post("/v1/jobs", json=spec)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert field in error["message"]
    assert count_jobs(rows) == 0
    assert redis_queue.messages() == []


def test_every_pydantic_error_is_listed_in_details(client):
    spec = with_("training.learning_rate", 0) | {"bogus": True}

    error = client.post("/v1/jobs", json=spec).json()["error"]

    assert {d["field"] for d in error["details"]} == {"training.learning_rate", "bogus"}


def test_malformed_json_is_422_invalid_json(client, rows, redis_queue):
    response = client.post(
        "/v1/jobs", content=b'{"dataset": {"name": ', headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_json"
    assert count_jobs(rows) == 0
    assert redis_queue.messages() == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_declared_json_is_415(client, rows, redis_queue, content_type):
    headers = {"Content-Type": content_type} if content_type else {}

    response = client.post("/v1/jobs", content=json.dumps(VALID).encode(), headers=headers)

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert count_jobs(rows) == 0
    assert redis_queue.messages() == []


def test_a_json_body_over_the_limit_is_413_and_stores_nothing(client, rows, redis_queue):
    padding = "x" * (16 * 1024 * 1024)

    response = client.post("/v1/jobs", json=VALID | {"name": padding})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert count_jobs(rows) == 0
    assert redis_queue.messages() == []


def test_the_same_idempotency_key_and_body_give_the_same_job_once(client, rows, redis_queue):
    headers = {"Idempotency-Key": "retry-me"}

    first = client.post("/v1/jobs", json=VALID, headers=headers)
    second = client.post("/v1/jobs", json=VALID, headers=headers)

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] == second.json()["id"]
    assert count_jobs(rows) == 1
    assert redis_queue.messages() == [("gradq.train", [first.json()["id"]])]


def test_an_idempotency_key_matches_the_spec_with_its_defaults_filled(client, rows):
    headers = {"Idempotency-Key": "same-meaning"}
    spelled_out = with_("training.learning_rate", 0.005)

    first = client.post("/v1/jobs", json=VALID, headers=headers)
    second = client.post("/v1/jobs", json=spelled_out, headers=headers)

    assert first.json()["id"] == second.json()["id"]


def test_the_same_idempotency_key_with_another_body_is_409(client, rows, redis_queue):
    headers = {"Idempotency-Key": "used-once"}
    client.post("/v1/jobs", json=VALID, headers=headers)

    response = client.post("/v1/jobs", json=with_("name", "other"), headers=headers)

    assert response.status_code == 409
    assert response.json()["error"]["field"] == "Idempotency-Key"
    assert count_jobs(rows) == 1
    assert len(redis_queue.messages()) == 1


def test_a_job_on_a_builtin_is_checked_without_loading_it_again(client, monkeypatch):
    import service.catalog

    client.post("/v1/jobs", json=VALID)
    monkeypatch.setattr(service.catalog, "load_dataset", _must_not_be_called)

    assert client.post("/v1/jobs", json=VALID).status_code == 202


def _must_not_be_called(*args, **kwargs):
    raise AssertionError("the dataset was loaded again")


def test_submitting_does_not_write_into_the_working_directory(make_client, tmp_path):
    client = make_client(broker_url="")
    before = set(os.listdir())

    client.post("/v1/jobs", json=VALID)

    assert set(os.listdir()) == before
