"""A job's data: the dataset it names (built-in or uploaded), split as its spec says."""

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

import store.datasets
from contract.spec import JobSpec
from models import BUILTIN_DATASETS, Dataset, DatasetError, load_dataset, train_val_split
from models.datasets import DatasetLimits
from models.datasets.dataset import check_two_classes_present
from settings import Settings
from store.db import transaction
from workers.dataset_cache import fetch_dataset


@dataclass(frozen=True)
class TrainingData:
    """X_train: (n_x, m_train), Y_train: (1, m_train); X_val, Y_val likewise, or None when the
    spec holds out nothing. The test split, when the source ships one, is the dataset's."""

    dataset: Dataset
    sha256: str
    path: str | None  # the uploaded dataset's file or folder; None for a built-in one
    X_train: np.ndarray
    Y_train: np.ndarray
    X_val: np.ndarray | None
    Y_val: np.ndarray | None

    @property
    def m_train(self) -> int:
        return self.X_train.shape[1]


def load_training_data(
    spec: JobSpec, settings: Settings, session_factory: sessionmaker[Session]
) -> TrainingData:
    name, dtype = spec.dataset.name, spec.training.dtype
    if name in BUILTIN_DATASETS:
        dataset, sha256 = _builtin(name, dtype)
        path = None
    else:
        found = uploaded_dataset_path(name, settings, session_factory)
        limits = settings.dataset_limits()
        try:
            dataset, sha256 = _from_path(str(found), found.stat().st_mtime_ns, dtype, limits)
        except DatasetError as error:  # named as the client knows it: below the data root
            root = f"{settings.datasets_folder}/"
            raise DatasetError(str(error).replace(root, "")) from error
        path = str(found)
    fraction = spec.training.validation_split
    X, Y, X_val, Y_val = train_val_split(dataset.X, dataset.Y, fraction, seed=spec.training.seed)
    # A whole dataset of two classes can still split into a training set of one.
    split = f"dataset {name!r}, its training split (validation_split {fraction})"
    check_two_classes_present(Y, dataset.classes, split)
    if X_val.shape[1] == 0:
        X_val = Y_val = None
    return TrainingData(dataset, sha256, path, X, Y, X_val, Y_val)


def uploaded_dataset_path(
    name: str, settings: Settings, session_factory: sessionmaker[Session]
) -> Path:
    with transaction(session_factory) as session:
        row = store.datasets.get_dataset(session, name)
        if row is None:
            known = ", ".join(BUILTIN_DATASETS)
            raise DatasetError(f"unknown dataset {name!r}: not built in ({known}) nor uploaded")
        root = settings.datasets_folder
        found = (root / row.path).resolve()
        sha256 = row.sha256
    if not found.is_relative_to(root / name):  # a row is data too: never a path outside
        raise DatasetError(f"dataset {name!r}: its stored path is outside its folder")
    if settings.dataset_store == "mlflow" and not found.exists():  # on another host than the API
        fetch_dataset(name, sha256, found, settings)
    return found


# A worker runs job after job on the same few datasets: loading and hashing them once per
# process, not once per job, keeps the fixed cost of a small job small. Arrays are read only.
@lru_cache(maxsize=4)
def _builtin(name: str, dtype: str) -> tuple[Dataset, str]:
    dataset = load_dataset(name, dtype=dtype)
    return dataset, dataset.sha256()


@lru_cache(maxsize=2)
def _from_path(path: str, mtime_ns: int, dtype: str, limits: DatasetLimits) -> tuple[Dataset, str]:
    dataset = load_dataset(Path(path), dtype=dtype, limits=limits)
    return dataset, dataset.sha256()
