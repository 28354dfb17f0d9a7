"""POST /v1/jobs/{id}/predict: classify with a succeeded job's trained weights, either images
(multipart, any size: converted, resized and scaled as its dataset's images were) or rows of
features as JSON, ``{"inputs": [[x1, ..., x_n], ...]}`` (preprocessed like the training data)."""

import json
import math

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from models.datasets import DatasetError, DatasetLimits, image_example
from service.catalog import DatasetInfo, find_dataset
from service.deps import SettingsDep
from service.errors import APIError, ErrorOut, error_responses, invalid, not_found
from service.limits import is_json
from service.mlflow_metrics import MlflowUnavailableError
from service.predictor import Predictor, Predictors, WeightsError
from service.redaction import redact
from settings import Settings
from store.tables import Job
from store.text import is_storable

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class PredictionOut(BaseModel):
    job_id: str
    labels: list[int]  # each example's class index
    predicted: list[str]  # its class name
    probabilities: list[list[float]]  # each example's, one per class in the order of classes
    classes: list[str]


@router.post(
    "/{job_id}/predict",
    response_model=PredictionOut,
    responses=error_responses(404, 409, 413, 415, 422)
    | {503: {"model": ErrorOut, "description": "The database or MLflow is unavailable."}},
)
async def predict(job_id: str, request: Request, settings: SettingsDep) -> PredictionOut:
    job, dataset = await run_in_threadpool(_succeeded_job, request, job_id)
    content_type = request.headers.get("content-type", "")
    if is_json(content_type):
        rows = _json_rows(await request.body(), dataset.n_x, settings.max_predict_rows)
    elif content_type.startswith("multipart/form-data"):
        rows = await _image_rows(request, dataset, settings)
    else:
        raise APIError(
            415, "unsupported_media_type", 'send JSON {"inputs": [...]} or multipart images'
        )
    predictor = await run_in_threadpool(_predictor, request, job, dataset, settings)
    answer = await run_in_threadpool(predictor.predict, rows)
    return PredictionOut(job_id=job.id, **answer)


def _succeeded_job(request: Request, job_id: str) -> tuple[Job, DatasetInfo]:
    with request.app.state.session_factory() as session:
        job = session.get(Job, job_id) if is_storable(job_id) else None  # no NUL to PostgreSQL
        if job is None:
            raise not_found("job", job_id)
        if job.status != "succeeded" or job.mlflow_run_id is None:
            raise APIError(
                409, "conflict", f"job {job_id} is {job.status}: only a succeeded job predicts"
            )
        dataset = find_dataset(session, job.dataset)
        session.expunge(job)
    if dataset is None:
        raise APIError(409, "conflict", f"job {job_id}'s dataset {job.dataset!r} is gone")
    return job, dataset


def _predictor(request: Request, job: Job, dataset: DatasetInfo, settings: Settings) -> Predictor:
    predictors: Predictors = request.app.state.predictors
    try:
        return predictors.get(job, dataset)
    except MlflowUnavailableError as error:
        message = f"MLflow did not answer: {redact(str(error), settings)}"
        raise APIError(503, "mlflow_unavailable", message) from error
    except WeightsError as error:
        raise APIError(409, "conflict", f"job {job.id}: {error}") from error


def _json_rows(body: bytes, n_x: int, max_rows: int) -> np.ndarray:
    """{"inputs": [[...], ...]}: at most max_rows rows of n_x finite numbers, as (m, n_x)."""
    try:
        document = json.loads(body)
    except ValueError as error:
        raise invalid("body", f"not JSON: {error}") from None
    if not isinstance(document, dict) or set(document) != {"inputs"}:
        raise invalid("inputs", 'send {"inputs": [[x1, ..., x_n], ...]}, one row an example')
    inputs = document["inputs"]
    if not isinstance(inputs, list) or not 1 <= len(inputs) <= max_rows:
        raise invalid("inputs", f"give from 1 to {max_rows} rows")
    expected = f"rows of {n_x} numbers (the dataset's features)"
    for i, row in enumerate(inputs):
        if not isinstance(row, list) or len(row) != n_x:
            got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
            raise invalid(f"inputs.{i}", f"expected {expected}, got {got}")
        if not all(_is_number(x) for x in row):
            raise invalid(f"inputs.{i}", f"expected {expected}, got a value that is not one")
    return np.asarray(inputs, dtype=np.float64)


def _is_number(x) -> bool:
    return type(x) in (int, float) and math.isfinite(x)  # not a bool, a NaN or an infinity


async def _image_rows(request: Request, dataset: DatasetInfo, settings: Settings) -> np.ndarray:
    """Every uploaded file an image, preprocessed as the dataset's images were: (m, n_x)."""
    if len(dataset.image_shape) not in (2, 3):
        raise invalid(
            "images",
            f"the dataset {dataset.name!r} holds vectors, not images: send JSON "
            '{"inputs": [[...], ...]}',
        )
    limit = settings.max_predict_rows
    form = await request.form(max_files=limit + 1, max_fields=limit + 1)
    files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    if not 1 <= len(files) <= limit:
        raise invalid("images", f"upload from 1 to {limit} image files")
    limits = DatasetLimits(max_image_pixels=settings.max_image_pixels)
    rows = []
    for number, upload in enumerate(files):
        name = upload.filename or f"file {number + 1}"
        data = await upload.read()
        try:
            row = await run_in_threadpool(image_example, data, name, dataset.image_shape, limits)
        except DatasetError as error:
            raise invalid("images", str(error)) from None
        rows.append(row)
    return np.stack(rows)
