"""POST /v1/sweeps and the sweep resource: a space expanded into trials stored and sent as
jobs in one go, reproducible random search, idempotency, the trials table and best job,
cancellation, and every bad request a 422 naming its field with nothing stored or sent."""

import pytest
from sqlalchemy import func, select

from service.sweep_cli import rung_marks
from store import jobs as job_rows
from store import rungs
from store.db import transaction
from store.tables import Job, Sweep

GRID = {
    "base": {"experiment": "faces-lr", "dataset": {"name": "faces"}, "training": {"epochs": 20}},
    "space": {"training.learning_rate": [0.001, 0.01, 0.1]},
}
RANDOM = {
    "base": {"dataset": {"name": "digits"}, "model": {"hidden_layers": [8]}},
    "space": {
        "training.learning_rate": {"log_uniform": [0.001, 0.5]},
        "model.hidden_activation": {"choice": ["relu", "tanh"]},
    },
    "trials": 6,
    "seed": 11,
}


def count(rows, table) -> int:
    with rows() as session:
        return session.scalar(select(func.count()).select_from(table))


def finish(rows, job_id: str, status: str, **metrics) -> None:
    """A trial ended as a worker ends it: claimed, then finished with its final metrics."""
    with transaction(rows) as session:
        job_rows.claim(session, job_id, "test-worker", 60)
    with transaction(rows) as session:
        job_rows.finish(session, job_id, "test-worker", status, metrics=metrics or None)


def test_a_grid_sweep_stores_and_sends_one_job_per_point(client, rows, redis_queue):
    response = client.post("/v1/sweeps", json=GRID)

    assert response.status_code == 202, response.text
    sweep = response.json()
    assert response.headers["location"] == f"/v1/sweeps/{sweep['id']}"
    assert sweep["status"] == "queued" and sweep["trial_count"] == 3
    assert sweep["counts"]["queued"] == 3
    assert sweep["objective"] == {"metric": "val_accuracy", "goal": "max"}
    rates = [trial["params"] for trial in sweep["trials"]]
    assert rates == [{"training.learning_rate": r} for r in (0.001, 0.01, 0.1)]
    ids = [trial["job_id"] for trial in sweep["trials"]]
    assert sorted(redis_queue.messages()) == sorted(("gradq.train", [i]) for i in ids)
    with rows() as session:
        stored = session.scalars(select(Job).where(Job.sweep_id == sweep["id"])).all()
        assert sorted(job.id for job in stored) == sorted(ids)
        assert {job.spec["training"]["epochs"] for job in stored} == {20}  # the base's
        assert {job.spec["model"]["init"] for job in stored} == {"zeros"}  # completed
        assert {job.experiment for job in stored} == {"faces-lr"}
    listed = client.get("/v1/jobs", params={"sweep_id": sweep["id"]}).json()["jobs"]
    assert sorted(job["id"] for job in listed) == sorted(ids)


def test_a_random_sweep_is_the_same_trials_from_the_same_seed_and_repeats_none(client):
    first = client.post("/v1/sweeps", json=RANDOM).json()
    again = client.post("/v1/sweeps", json=RANDOM).json()
    other = client.post("/v1/sweeps", json=RANDOM | {"seed": 12}).json()

    params = [trial["params"] for trial in first["trials"]]
    assert len(params) == 6 and first["id"] != again["id"]
    assert params == [trial["params"] for trial in again["trials"]]
    assert params != [trial["params"] for trial in other["trials"]]
    assert len({tuple(sorted(p.items())) for p in params}) == 6


def test_the_same_idempotency_key_gives_the_same_sweep_and_another_body_a_409(client, rows):
    headers = {"Idempotency-Key": "sweep-1"}
    first = client.post("/v1/sweeps", json=GRID, headers=headers)
    again = client.post("/v1/sweeps", json=GRID, headers=headers)
    other = client.post("/v1/sweeps", json=RANDOM, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["trials"] == first.json()["trials"]
    assert other.status_code == 409 and other.json()["error"]["field"] == "Idempotency-Key"
    assert count(rows, Sweep) == 1 and count(rows, Job) == 3


def test_the_sweep_ranks_its_succeeded_trials_and_names_the_best(client, rows):
    sweep = client.post("/v1/sweeps", json=GRID).json()
    low, mid, high = (trial["job_id"] for trial in sweep["trials"])
    finish(rows, low, "succeeded", cost=0.6, val_accuracy=0.70)
    finish(rows, mid, "succeeded", cost=0.3, val_accuracy=0.85, best_val_accuracy=0.9,
           best_val_accuracy_epoch=14)  # fmt: skip

    running = client.get(f"/v1/sweeps/{sweep['id']}").json()
    finish(rows, high, "failed")
    done = client.get(f"/v1/sweeps/{sweep['id']}").json()

    assert running["status"] == "running" and running["best_job"] == mid
    assert running["best_value"] == 0.85
    assert [t["objective"] for t in running["trials"]] == [0.70, 0.85, None]
    assert [(t["best_value"], t["best_epoch"]) for t in running["trials"]][1:] == [
        (0.9, 14),
        (None, None),
    ]
    assert done["status"] == "succeeded"
    assert done["counts"] | {} == {"queued": 0, "running": 0, "succeeded": 2, "failed": 1,
                                   "cancelled": 0}  # fmt: skip
    by_cost = client.post("/v1/sweeps", json=GRID | {"objective": {"metric": "cost"}}).json()
    assert by_cost["objective"] == {"metric": "cost", "goal": "min"}


def one_promoted_one_waiting(client, rows) -> tuple[dict, str]:
    """A grid sweep with halving (eta 2, a rung at epoch 10) whose first two trials reached the
    rung: the first promoted by the second, which waits. (The sweep as posted, the second's id.)"""
    sweep = client.post("/v1/sweeps", json=GRID | {"halving": {"eta": 2, "rungs": [10]}}).json()
    stored = sweep_row(rows, sweep["id"])
    low, mid, _ = (trial["job_id"] for trial in sweep["trials"])
    with transaction(rows) as session:
        rungs.reach_rung(session, stored, low, 1, 10, 0.6)
        rungs.reach_rung(session, stored, mid, 1, 10, 0.5)
    return sweep, mid


def test_a_sweep_with_halving_shows_each_trials_verdicts_at_the_rungs(client, rows):
    sweep, mid = one_promoted_one_waiting(client, rows)

    trials = client.get(f"/v1/sweeps/{sweep['id']}").json()["trials"]

    assert sweep["request"]["halving"] == {"eta": 2, "rungs": [10]}
    # The second arrival promoted the first; it waits (the third trial has not arrived).
    assert [t["rungs"] for t in trials] == [
        [{"rung": 1, "epoch": 10, "value": 0.6, "state": "promoted", "promoted": True,
          "rank": 1, "reached": 2, "cutoff": 0.6}],
        [{"rung": 1, "epoch": 10, "value": 0.5, "state": "waiting", "promoted": False,
          "rank": 2, "reached": 2, "cutoff": 0.6}],
        [],
    ]  # fmt: skip
    assert rung_marks(trials[0]["rungs"]) == "1↑ 1/2"
    assert rung_marks(trials[1]["rungs"]) == "1… 2/2"

    # Cancelled by hand while it waited: its wait ended with no verdict.
    assert client.post(f"/v1/jobs/{mid}/cancel").status_code == 202
    cancelled = client.get(f"/v1/sweeps/{sweep['id']}").json()["trials"][1]
    assert cancelled["status"] == "cancelled"
    assert cancelled["rungs"][0]["state"] == "cancelled"
    assert rung_marks(cancelled["rungs"]) == "1⊘ 2/2"


def test_a_trial_that_failed_while_waiting_at_a_rung_shows_it_there(client, rows):
    sweep, mid = one_promoted_one_waiting(client, rows)
    with transaction(rows) as session:
        session.get(Job, mid).status = "failed"  # as when its attempts ran out

    failed = client.get(f"/v1/sweeps/{sweep['id']}").json()["trials"][1]

    assert failed["rungs"][0]["state"] == "failed"
    assert rung_marks(failed["rungs"]) == "1! 2/2"


def sweep_row(rows, sweep_id: str) -> Sweep:
    with rows() as session:
        found = session.get(Sweep, sweep_id)
        session.expunge(found)
        return found


def test_sweeps_are_listed_newest_first_a_page_at_a_time(client):
    made = [client.post("/v1/sweeps", json=GRID).json()["id"] for _ in range(3)]

    first = client.get("/v1/sweeps", params={"limit": 2}).json()
    second = client.get("/v1/sweeps", params={"limit": 2, "cursor": first["next_cursor"]}).json()

    listed = [s["id"] for s in first["sweeps"]] + [s["id"] for s in second["sweeps"]]
    assert listed == made[::-1] and second["next_cursor"] is None
    bad = client.get("/v1/sweeps", params={"cursor": "not-one"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "cursor"


def test_cancelling_a_sweep_cancels_its_queued_trials(client):
    sweep = client.post("/v1/sweeps", json=GRID).json()

    cancelled = client.post(f"/v1/sweeps/{sweep['id']}/cancel")

    assert cancelled.status_code == 202
    body = cancelled.json()
    assert body["status"] == "cancelled" and body["counts"]["cancelled"] == 3
    listed = client.get("/v1/sweeps").json()["sweeps"]
    assert [(s["id"], s["status"]) for s in listed] == [(sweep["id"], "cancelled")]
    assert client.get("/v1/sweeps/" + "0" * 32).status_code == 404


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"space": {}}, "space", "at least one field"),
        ({"space": {"training.lr": [0.1]}}, "space.training.lr", "not a field"),
        ({"space": {"training.learning_rate": [0.1, -1]}}, "space.training.learning_rate",
         "greater than 0"),
        ({"space": {"training.epochs": [10, 10**9]}}, "space.training.epochs", "maximum"),
        ({"space": {"training.seed": {"int": [0, 10**6]}}, "trials": 9}, "trials", "more than 8"),
        ({"space": {"training.seed": {"int": [0, 10]}}}, "trials", "give trials"),
        ({"base": {"dataset": {"name": "no-such"}}}, "base.dataset.name", "unknown dataset"),
        ({"base": {"dataset": {"name": "faces"}, "training": {"l3": 1}}}, "base.training.l3",
         "Extra inputs"),
        ({"halving": {"eta": 3, "rungs": [5, 20]}}, "halving.rungs",
         "rung 20 is not before training.epochs 20, the last rung"),
        ({"halving": {"eta": 3, "rungs": [5, 5]}}, "halving.rungs", "each above the one before"),
        ({"halving": {"eta": 3}}, "halving.rungs", "Field required"),
        ({"halving": {"eta": 1, "rungs": [5]}}, "halving.eta", "greater than or equal to 2"),
        ({"halving": {"rungs": [5], "min_epochs": 1}}, "halving.min_epochs", "Extra inputs"),
        ({"base": GRID["base"] | {"training": {"epochs": 20, "validation_split": 0}}},
         "objective.metric", "val_accuracy needs training.validation_split above 0"),
        ({"objective": {"metric": "loss"}}, "objective.metric", "val_accuracy"),
        ({"base": GRID["base"] | {"register_as": "best"}}, "base.register_as", "beside base"),
        ({"register_as": "a name"}, "register_as", "should match pattern"),
    ],
)  # fmt: skip
def test_a_bad_sweep_is_422_naming_the_field_and_stores_and_sends_nothing(
    make_client, redis_queue, rows, change, field, reason
):
    client = make_client(broker_url=redis_queue.url, max_sweep_trials=8)

    response = client.post("/v1/sweeps", json=GRID | change)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and reason in error["message"]
    assert count(rows, Sweep) == 0 and count(rows, Job) == 0
    assert redis_queue.messages() == []


def test_a_sweep_whose_trials_would_put_its_token_over_its_cap_is_429_and_stores_nothing(
    make_client, rows
):
    client = make_client(broker_url="", api_tokens=["tok1"], max_queued_jobs_per_token=4)
    headers = {"Authorization": "Bearer tok1"}

    first = client.post("/v1/sweeps", json=GRID, headers=headers)  # 3 trials of 4
    second = client.post("/v1/sweeps", json=GRID, headers=headers)  # 6 of 4

    assert first.status_code == 202
    assert second.status_code == 429 and second.headers["retry-after"]
    assert count(rows, Sweep) == 1 and count(rows, Job) == 3
