"""Queries on the datasets uploaded through the API."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.tables import Dataset


def get_dataset(session: Session, name: str) -> Dataset | None:
    return session.get(Dataset, name)


def list_datasets(session: Session) -> list[Dataset]:
    return list(session.scalars(select(Dataset).order_by(Dataset.name)))


def add_dataset(session: Session, dataset: Dataset) -> None:
    """Register an uploaded dataset (IntegrityError if the name is taken)."""
    session.add(dataset)
    session.flush()
