"""Datasets: the built-ins and the uploads (a zip of class folders, an .npz, a course .h5).

An upload is checked as every worker will read it (models.datasets, with the settings' limits),
from its headers first and then one block of examples at a time, so that the API's memory per
upload stays small whatever the file declares. With GRADQ_DATASET_STORE=mlflow a checked upload
is also copied to MLflow's artifact store before its row is written (store/dataset_artifacts.py):
a row exists only for a dataset that workers on any host can fetch.
"""

import logging
import re
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import BUILTIN_DATASETS, DatasetError
from models.datasets import inspect_dataset
from models.datasets.stored import StoredDataset
from service import uploads
from service.catalog import all_datasets, describe_row, find_dataset
from service.deps import SessionDep, SettingsDep
from service.errors import APIError, ErrorOut, not_found
from service.redaction import redact
from service.schemas import DatasetList, DatasetOut, dataset_out
from settings import Settings
from store import dataset_artifacts
from store import datasets as dataset_rows
from store.tables import Dataset as DatasetRow

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
KINDS = {".zip": "images", ".npz": "npz", ".h5": "h5", ".hdf5": "h5"}
STAGING = ".staging"
# A path the client did not send has no place in an answer (/srv/gradq/datasets/...).
SERVER_PATH = re.compile(r"(?<![\w.-])(?:/[^\s'\"/:,()]+){2,}/?")


@router.get("", response_model=DatasetList)
def list_datasets(session: SessionDep) -> DatasetList:
    return DatasetList(datasets=[dataset_out(info) for info in all_datasets(session)])


@router.get("/{name}", response_model=DatasetOut)
def get_dataset(name: str, session: SessionDep) -> DatasetOut:
    # A name no upload can have is not looked up (PostgreSQL refuses NUL characters).
    info = find_dataset(session, name) if re.fullmatch(NAME_PATTERN, name) else None
    if info is None:
        raise not_found("dataset", name)
    return dataset_out(info)


MLFLOW_RETRY_AFTER_SECONDS = 5
MLFLOW_ERRORS = {
    502: {"model": ErrorOut, "description": "MLflow's artifact store refused the dataset."},
    503: {"model": ErrorOut, "description": "MLflow (or the database) is unavailable."},
}


@router.post("", status_code=201, response_model=DatasetOut, responses=MLFLOW_ERRORS)
def upload_dataset(
    name: Annotated[str, Form(pattern=NAME_PATTERN, description="The dataset's name.")],
    file: Annotated[UploadFile, File(description="A .zip of class folders, .npz or .h5.")],
    session: SessionDep,
    settings: SettingsDep,
    test_file: Annotated[UploadFile | None, File(description="The test_*.h5 partner.")] = None,
) -> DatasetOut:
    _check_name_free(session, name)
    session.commit()  # hold no connection while the upload is checked, which can take a while
    kind = _kind_of(file, test_file)
    staging = settings.datasets_folder / STAGING / uuid.uuid4().hex
    staging.mkdir(parents=True)
    try:
        source = _stage(kind, file, test_file, staging, settings)
        stored, sha256 = _check(source, staging, name, settings)
        if settings.dataset_store == "mlflow":
            _copy_to_mlflow(staging, name, sha256, settings)
        row = DatasetRow(
            name=name,
            path=f"{name}/{source.relative_to(staging).as_posix()}",
            kind=kind,
            sha256=sha256,
            n_x=stored.n_x,
            m=stored.m,
            m_test=stored.m_test,
            classes=list(stored.classes),
            image_shape=list(stored.image_shape),
            size_bytes=uploads.folder_size(staging),
        )
        _register(session, row, staging, settings.datasets_folder / name)
    finally:
        uploads.remove(staging)
    return dataset_out(describe_row(row))


def _check_name_free(session: Session, name: str) -> None:
    if name in BUILTIN_DATASETS or dataset_rows.get_dataset(session, name) is not None:
        raise _name_taken(name)


def _name_taken(name: str) -> APIError:
    return APIError(409, "dataset_exists", f"a dataset named {name!r} already exists", "name")


def _kind_of(file: UploadFile, test_file: UploadFile | None) -> str:
    suffix = Path(file.filename or "").suffix.lower()
    if suffix not in KINDS:
        raise APIError(
            422,
            "invalid_dataset",
            f"file {file.filename!r}: expected a .zip of class folders, an .npz or an .h5",
            "file",
        )
    if test_file is not None and KINDS[suffix] != "h5":
        raise APIError(422, "invalid_dataset", "test_file goes with an .h5 file only", "test_file")
    return KINDS[suffix]


def _stage(
    kind: str, file: UploadFile, test_file: UploadFile | None, staging: Path, settings: Settings
) -> Path:
    """The uploaded files under ``staging``; returns what load_dataset reads."""
    limit = settings.max_upload_bytes
    if kind == "npz":
        uploads.save_capped(file.file, staging / "data.npz", limit, "file")
        return staging / "data.npz"
    if kind == "h5":
        # load_h5 finds the test split by replacing "train" with "test" in the file name.
        uploads.save_capped(file.file, staging / "train.h5", limit, "file")
        if test_file is not None:
            uploads.save_capped(test_file.file, staging / "test.h5", limit, "test_file")
        return staging / "train.h5"
    archive = staging / "upload.zip"
    uploads.save_capped(file.file, archive, limit, "file")
    extracted = staging / "images"
    extracted.mkdir()
    expanded = uploads.ZIP_EXPANSION_FACTOR * limit
    uploads.extract_zip(archive, extracted, expanded, settings.max_dataset_files, "file")
    archive.unlink()
    return uploads.dataset_root(extracted)


def _check(source: Path, staging: Path, name: str, settings: Settings) -> tuple[StoredDataset, str]:
    """The dataset as its headers describe it, and the sha256 of its examples, each read and
    checked once; 422 naming the upload, never a server path, when it is refused."""
    limits = settings.dataset_limits()
    try:
        stored = inspect_dataset(source, limits=limits)
        return stored, stored.digest(limits)
    except DatasetError as error:
        message = _public(str(error), staging, name)
        raise APIError(422, "invalid_dataset", message, "file") from error


def _public(message: str, staging: Path, name: str) -> str:
    """The message with the upload's own name where it named the staging folder, and any
    other server path left out."""
    message = message.replace(str(staging) + "/", f"{name}/").replace(str(staging), name)
    return SERVER_PATH.sub("<path>", message)


def _copy_to_mlflow(staging: Path, name: str, sha256: str, settings: Settings) -> None:
    """The checked files into MLflow's artifact store; 503 (unreachable) or 502 (it refused
    them) naming MLflow otherwise, and then no row is written."""
    try:
        dataset_artifacts.upload(staging, name, sha256, settings)
    except dataset_artifacts.DatasetStoreError as error:
        cause = redact(str(error.__cause__), settings)  # MLflow's own text names its URL
        log.warning("dataset %r not stored: %s (%s)", name, error, cause)
        message = f"{error}; the dataset was not stored, upload it again"
        if error.status is None:
            headers = {"Retry-After": str(MLFLOW_RETRY_AFTER_SECONDS)}
            raise APIError(503, "mlflow_unavailable", message, headers=headers) from error
        raise APIError(502, "mlflow_error", message) from error


def _register(session: Session, row: DatasetRow, staging: Path, final: Path) -> None:
    """Insert the row and move the files in place, committed together or not at all."""
    try:
        dataset_rows.add_dataset(session, row)
    except IntegrityError as error:  # another upload of the same name won the race
        raise _name_taken(row.name) from error
    # No row holds this name (the insert succeeded), so a folder here is a leftover.
    uploads.remove(final)
    staging.rename(final)
    try:
        session.commit()
    except BaseException:
        uploads.remove(final)
        raise
