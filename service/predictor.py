"""A succeeded job's network, for POST /v1/jobs/{id}/predict: built from the job's spec and its
dataset's shape by the rules the worker trained it by, its weights.npz read from the job's own
MLflow run (never from a path a user gives), checked before a byte of it is decoded, and kept in
a small cache so that a job's weights are read once."""

import io
import tempfile
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from contract.network_shape import network_shape
from contract.spec import JobSpec
from models import Network, load_weights
from models.datasets.arrays import NPZ_READ_ERRORS
from service.mlflow_metrics import TIMEOUT_SECONDS, MlflowUnavailableError
from store.tables import Dataset, Job

ARCHIVE_OVERHEAD_BYTES = 64 * 1024  # zip and .npy headers around the arrays


class WeightsError(Exception):
    """The run's weights.npz is not what the job's network needs."""


@dataclass(frozen=True)
class Predictor:
    net: Network
    classes: tuple[str, ...]
    image_shape: tuple[int, ...]  # one example before flattening; (n_x,) when not images

    @property
    def n_x(self) -> int:
        return self.net.layer_dims[0]

    def predict(self, rows: np.ndarray) -> dict:
        """rows (m, n_x) -> the labels, each class's probability per example, the classes."""
        A = self.net.forward(np.ascontiguousarray(rows, dtype=self.net.dtype).T)  # (n[L], m)
        labels = self.net.classify(A)[0]
        probabilities = np.vstack([1.0 - A, A]) if A.shape[0] == 1 else A  # (k, m)
        return {
            "labels": labels.tolist(),  # class indices
            "predicted": [self.classes[i] for i in labels],  # their names
            "probabilities": probabilities.T.astype(float).tolist(),  # in the order of classes
            "classes": list(self.classes),
        }


class Predictors:
    """Predictors by job id, the ``size`` most recently used kept."""

    def __init__(self, tracking_uri: str, size: int):
        self.tracking_uri, self.size = tracking_uri, size
        self._cache: OrderedDict[str, Predictor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job: Job, dataset: Dataset) -> Predictor:
        with self._lock:
            if job.id in self._cache:
                self._cache.move_to_end(job.id)
                return self._cache[job.id]
        made = build_predictor(job, dataset, self.tracking_uri)  # outside the lock: a download
        with self._lock:
            self._cache[job.id] = made
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return made


def build_predictor(job: Job, dataset: Dataset, tracking_uri: str) -> Predictor:
    spec = JobSpec.model_validate(job.spec)
    classes = tuple(dataset.classes)
    shape = network_shape(spec.model, dataset.n_x, len(classes), dataset.name)
    net = Network(
        layer_dims=shape.layer_dims,
        hidden_activation=shape.hidden_activation,
        output=shape.output,
        init=shape.init,  # the weights are replaced just below
        dtype=spec.training.dtype,
    )
    expected_bytes = sum(p.nbytes for p in net.params.values())
    data = fetch_weights(tracking_uri, job.mlflow_run_id, expected_bytes + ARCHIVE_OVERHEAD_BYTES)
    try:
        _check_archive(data, expected_bytes)
        net.params = load_weights(io.BytesIO(data))
    except (*NPZ_READ_ERRORS, KeyError) as error:  # load_weights' own, and the check's
        message = f"the run's weights.npz does not fit the job's network: {error}"
        raise WeightsError(message) from None
    return Predictor(net, classes, tuple(dataset.image_shape))


def _check_archive(data: bytes, expected_bytes: int) -> None:
    """Refuse, before decoding it, an archive whose members are compressed or declare more
    than the network's parameters could fill (save_weights stores them uncompressed)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
        if any(member.compress_type != zipfile.ZIP_STORED for member in members):
            raise ValueError("compressed members")
        if sum(member.file_size for member in members) > expected_bytes + ARCHIVE_OVERHEAD_BYTES:
            raise ValueError("more data than the network's parameters")


def fetch_weights(tracking_uri: str, run_id: str, max_bytes: int) -> bytes:
    """The run's weights.npz, at most ``max_bytes`` of it, through the tracking server's
    artifact proxy (or MLflow's client for a local store)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return _local_weights(tracking_uri, run_id, max_bytes)
    url = f"{tracking_uri.rstrip('/')}/get-artifact"
    params = {"path": "weights.npz", "run_uuid": run_id}
    try:
        with httpx.stream("GET", url, params=params, timeout=TIMEOUT_SECONDS) as response:
            if response.status_code >= 400:
                raise MlflowUnavailableError(f"HTTP {response.status_code} for weights.npz")
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    raise WeightsError(f"the run's weights.npz is over {max_bytes} bytes")
    except httpx.HTTPError as error:
        raise MlflowUnavailableError(f"{type(error).__name__}: {error}") from error
    return bytes(data)


def _local_weights(tracking_uri: str, run_id: str, max_bytes: int) -> bytes:
    # Imported here: service/app.py turns MLflow's telemetry off after importing the routes.
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory(prefix="gradq-predict-") as folder:
        path = Path(MlflowClient(tracking_uri).download_artifacts(run_id, "weights.npz", folder))
        if path.stat().st_size > max_bytes:
            raise WeightsError(f"the run's weights.npz is over {max_bytes} bytes")
        return path.read_bytes()
