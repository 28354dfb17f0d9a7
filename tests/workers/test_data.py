"""A worker reads an uploaded dataset through the same checks as the API: a file placed in the
data root by hand, or a row that points outside the dataset's folder, fails the job with the
reason, and nothing outside is read."""

import os
from pathlib import Path

import pytest

from store.db import transaction
from store.tables import Dataset
from tests.hostile_files import course_h5, external
from tests.workers.helpers import FACES_LOGREG, create_job, get_job, with_experiment
from workers.run import run_job

OWNER = "test-worker/1"


def register(settings, session_factory, name: str, path: str) -> None:
    with transaction(session_factory) as session:
        session.add(
            Dataset(
                name=name, path=path, kind="h5", sha256="0" * 64, n_x=12, m=4,
                classes=["no", "yes"], image_shape=[2, 2, 3], size_bytes=1,
            )
        )  # fmt: skip


def test_a_hand_placed_h5_reading_an_outside_file_fails_the_job_unread(
    settings, session_factory, mlflow_client
):
    folder = settings.datasets_folder / "placed"
    folder.mkdir(parents=True)
    environ = Path(f"/proc/{os.getpid()}/environ")
    course_h5(folder / "train.h5", train_set_y=external(environ, "u1", (4,)))
    register(settings, session_factory, "placed", "placed/train.h5")
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG, dataset={"name": "placed"}))

    assert run_job(job_id, settings, session_factory, OWNER) == "failed"

    error = get_job(session_factory, job_id).error
    assert error.startswith("DatasetError: placed/train.h5: 'train_set_y' keeps its data in an")
    assert str(settings.datasets_folder) not in error


@pytest.mark.parametrize("path", ["../other/train.h5", "placed/../../outside.h5", "/etc/hosts"])
def test_a_row_whose_path_leaves_the_datasets_folder_fails_the_job(
    settings, session_factory, mlflow_client, path
):
    outside = settings.datasets_folder.parent / "outside.h5"
    outside.parent.mkdir(parents=True, exist_ok=True)
    course_h5(outside)
    register(settings, session_factory, "placed", path)
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG, dataset={"name": "placed"}))

    assert run_job(job_id, settings, session_factory, OWNER) == "failed"

    assert "its stored path is outside its folder" in get_job(session_factory, job_id).error
