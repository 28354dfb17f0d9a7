"""An uploaded dataset fetched from MLflow's artifact store into this host's data root, which is
then a cache: the worker reads the dataset there as if the API had written it
(GRADQ_DATASET_STORE=mlflow, store/dataset_artifacts.py).

A copy is fetched into a folder of its own below <data root>/.fetching, checked (its headers
against the limits before its data, then the sha256 of its examples against the dataset's row),
and renamed into place in one step: no worker reads half a copy, and the workers of one host
fetching the same dataset at once never write into each other's files; what a killed fetch
left there is removed by a later fetch once it is an hour old. An MLflow that cannot be
reached is waited for, as at a run's start, for GRADQ_MLFLOW_WAIT_SECONDS.
"""

import shutil
import uuid
from pathlib import Path

from models import DatasetError
from models.datasets import inspect_dataset
from settings import Settings
from store import dataset_artifacts
from store.stale_files import remove_stale
from workers import mlflow_retry

FETCHING = ".fetching"


def fetch_dataset(name: str, sha256: str, found: Path, settings: Settings) -> None:
    """Put the store's copy of dataset ``name`` at ``<data root>/<name>``, so that ``found``
    (the file or folder its row names, below that folder) exists; DatasetError when the copy
    is missing or is not the dataset that was uploaded (then nothing is kept)."""
    root = settings.datasets_folder
    final = root / name
    remove_stale(root / FETCHING)  # what killed fetches left
    fetching = root / FETCHING / uuid.uuid4().hex
    fetching.mkdir(parents=True)
    try:
        fetched = mlflow_retry.wait_for(
            lambda: dataset_artifacts.download(name, sha256, fetching, settings),
            settings.mlflow_wait_seconds,
            f"fetch dataset {name!r}",
        )
        if fetched == 0:
            raise DatasetError(
                f"dataset {name!r}: MLflow's artifact store holds no copy of it "
                f"({dataset_artifacts.artifact_uri(name, sha256)}); was it uploaded with "
                "GRADQ_DATASET_STORE=mlflow?"
            )
        _check_copy(fetching / found.relative_to(final), name, sha256, fetching, settings)
        try:
            fetching.rename(final)
        except OSError:
            if not final.is_dir():
                raise
            # Another worker of this host put its copy, checked the same way, there first.
    finally:
        shutil.rmtree(fetching, ignore_errors=True)


def _check_copy(source: Path, name: str, sha256: str, fetching: Path, settings: Settings) -> None:
    limits = settings.dataset_limits()
    try:
        stored = inspect_dataset(source, limits=limits)  # the headers, before any data
        digest = stored.digest(limits)
    except DatasetError as error:  # named as the client knows it
        raise DatasetError(str(error).replace(str(fetching), name)) from error
    if digest != sha256:
        raise DatasetError(
            f"dataset {name!r}: the copy fetched from MLflow's artifact store has sha256 "
            f"{digest}, not the {sha256} it was uploaded with; the copy was deleted"
        )
