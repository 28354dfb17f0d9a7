"""What the API knows about a dataset without loading it on every request: features, examples,
class names. Built-ins are loaded once per process; uploads carry theirs in their row."""

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from sqlalchemy.orm import Session

from models import BUILTIN_DATASETS, load_dataset
from store import datasets as dataset_rows
from store.tables import Dataset as DatasetRow


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str
    n_x: int
    m: int
    classes: tuple[str, ...]
    image_shape: tuple[int, ...]
    sha256: str
    size_bytes: int | None = None
    created_at: datetime | None = None
    m_test: int = 0  # examples of the test split the source ships, loaded beside the m

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@lru_cache(maxsize=len(BUILTIN_DATASETS))
def describe_builtin(name: str) -> DatasetInfo:
    dataset = load_dataset(name)
    return DatasetInfo(
        name,
        "builtin",
        dataset.n_x,
        dataset.m,
        dataset.classes,
        dataset.image_shape,
        dataset.sha256(),
        m_test=0 if dataset.X_test is None else dataset.X_test.shape[1],
    )


def describe_row(row: DatasetRow) -> DatasetInfo:
    return DatasetInfo(
        row.name,
        row.kind,
        row.n_x,
        row.m,
        tuple(row.classes),
        tuple(row.image_shape),
        row.sha256,
        row.size_bytes,
        row.created_at,
        row.m_test,
    )


def find_dataset(session: Session, name: str) -> DatasetInfo | None:
    if name in BUILTIN_DATASETS:
        return describe_builtin(name)
    row = dataset_rows.get_dataset(session, name)
    return describe_row(row) if row is not None else None


def all_datasets(session: Session) -> list[DatasetInfo]:
    builtins = [describe_builtin(name) for name in BUILTIN_DATASETS]
    return builtins + [describe_row(row) for row in dataset_rows.list_datasets(session)]
