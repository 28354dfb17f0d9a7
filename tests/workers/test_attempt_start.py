"""A later attempt's events say where it started: at its checkpoint's epoch, or over from 0."""

import pytest

from models import train
from store.db import transaction
from store.tables import Job
from tests.workers.helpers import FACES_LOGREG, create_job, statuses, with_experiment
from tests.workers.test_checkpoints import SETTINGS, Saver, data, network
from workers.attempt import Attempt, start_or_resume
from workers.checkpoints import store_for

OWNER = "celery@other-host/7"


def attempt(job_id: str, number: int, session_factory) -> Attempt:
    with transaction(session_factory) as session:
        spec = session.get(Job, job_id).spec
    return Attempt(job_id, number, OWNER, spec, None)


@pytest.mark.parametrize("store", ["local", "mlflow"])
@pytest.mark.parametrize("checkpoint", [True, False])
def test_a_later_attempt_records_where_it_started(
    checkpoint, store, settings, session_factory, mlflow_client
):
    settings = settings.model_copy(update={"checkpoint_store": store})
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG))
    if checkpoint:  # one a lost worker wrote where this one reads
        saver = Saver(store_for(settings), job_id)
        X, Y = data()
        train(network(), X, Y, epochs=6, checkpoint_every=3, callbacks=[saver], **SETTINGS)

    _, buffer, resume = start_or_resume(
        mlflow_client, attempt(job_id, 2, session_factory), settings, session_factory
    )
    buffer.close()

    started = [detail for *_, detail in statuses(session_factory, job_id)[1:] if detail]
    if checkpoint:
        assert resume.epoch == 6
        assert started == [f"resumed at epoch 6 (by {OWNER})"]
    else:
        assert resume is None
        assert started == [f"no checkpoint found: started again at epoch 0 (by {OWNER})"]


def test_a_first_attempt_records_nothing_more(settings, session_factory, mlflow_client):
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG))

    _, buffer, _ = start_or_resume(
        mlflow_client, attempt(job_id, 1, session_factory), settings, session_factory
    )
    buffer.close()

    assert [detail for *_, detail in statuses(session_factory, job_id)[1:] if detail] == []


def test_a_first_attempt_does_not_look_for_checkpoints(settings, session_factory, mlflow_client):
    """Only an earlier attempt writes them; one planted here is not read."""
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG))
    saver = Saver(store_for(settings), job_id)
    X, Y = data()
    train(network(), X, Y, epochs=3, checkpoint_every=3, callbacks=[saver], **SETTINGS)

    _, buffer, resume = start_or_resume(
        mlflow_client, attempt(job_id, 1, session_factory), settings, session_factory
    )
    buffer.close()

    assert resume is None and store_for(settings).load_latest(job_id).epoch == 3
