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


def plant_checkpoint(settings, job_id: str, epochs: int) -> None:
    """A checkpoint after ``epochs`` epochs, as a lost worker leaves it in the store."""
    saver = Saver(store_for(settings), job_id)
    X, Y = data()
    train(network(), X, Y, epochs=epochs, checkpoint_every=3, callbacks=[saver], **SETTINGS)


def start(number: int, job_id: str, settings, session_factory, mlflow_client):
    """Attempt ``number``'s start; the checkpoint it resumes from."""
    _, buffer, resume = start_or_resume(
        mlflow_client, attempt(job_id, number, session_factory), settings, session_factory
    )
    buffer.close()
    return resume


@pytest.mark.parametrize("store", ["local", "mlflow"])
@pytest.mark.parametrize("checkpoint", [True, False])
def test_a_later_attempt_records_where_it_started(
    checkpoint, store, settings, session_factory, mlflow_client
):
    settings = settings.model_copy(update={"checkpoint_store": store})
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG))
    if checkpoint:  # one a lost worker wrote where this one reads
        plant_checkpoint(settings, job_id, 6)

    resume = start(2, job_id, settings, session_factory, mlflow_client)

    started = [detail for *_, detail in statuses(session_factory, job_id)[1:] if detail]
    if checkpoint:
        assert resume.epoch == 6
        assert started == [f"resumed at epoch 6 (by {OWNER})"]
    else:
        assert resume is None
        assert started == [f"no checkpoint found: started again at epoch 0 (by {OWNER})"]


def test_a_first_attempt_records_nothing_more(settings, session_factory, mlflow_client):
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG))

    start(1, job_id, settings, session_factory, mlflow_client)

    assert [detail for *_, detail in statuses(session_factory, job_id)[1:] if detail] == []


def test_a_first_attempt_does_not_look_for_checkpoints(settings, session_factory, mlflow_client):
    """Only an earlier attempt writes them; one planted here is not read."""
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG))
    plant_checkpoint(settings, job_id, 3)

    resume = start(1, job_id, settings, session_factory, mlflow_client)

    assert resume is None and store_for(settings).load_latest(job_id).epoch == 3
