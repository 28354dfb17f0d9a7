"""gradq's settings: one class, read from GRADQ_* environment variables (and a .env file).

The defaults are the embedded stack of `make up`: everything under ./.gradq, SQLite for jobs, a
broker that needs no server, MLflow on 127.0.0.1:5000. Secrets (database passwords, API tokens)
come only from the environment.
"""

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REDIS_VISIBILITY_TIMEOUT_SECONDS = 24 * 3600
# A self-hosted service for offline machines never phones home (MLflow reads both at run time).
MLFLOW_TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def turn_off_mlflow_telemetry() -> None:
    """MLflow's telemetry off in this process, unless its environment says otherwise; call it
    before MLflow is imported (its telemetry client starts at import)."""
    for name, value in MLFLOW_TELEMETRY_OFF.items():
        os.environ.setdefault(name, value)


def half_of_physical_memory() -> int:
    """Half of this machine's physical memory: the default memory limit of one job."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (AttributeError, OSError, ValueError):  # no sysconf here: assume a 16 GiB machine
        return 8 * 1024**3


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRADQ_", env_file=".env", extra="ignore")

    home: Path = Field(Path(".gradq"), description="Where the embedded stack keeps its files.")
    database_url: str = Field(
        "", description="SQLAlchemy URL of the jobs database; empty: SQLite in home."
    )
    broker_url: str = Field(
        "",
        description="Celery broker URL, e.g. redis://127.0.0.1:6379/0; empty: the "
        "filesystem transport in home (no server).",
    )
    mlflow_tracking_uri: str = "http://127.0.0.1:5000"
    mlflow_ui_url: str = Field(
        "", description="Base URL of the MLflow UI for links; empty: the tracking URI."
    )
    data_root: Path = Field(
        Path(""), description="Folder that uploaded datasets live in; empty: home/datasets."
    )
    dataset_store: Literal["local", "mlflow"] = Field(
        "local",
        description="Where workers find uploaded datasets: 'local', the data root only (a "
        "folder the API and every worker share); 'mlflow', also a copy the API stores in the "
        "MLflow server's served artifacts, which a worker fetches into its own data root.",
    )
    # NoDecode: the environment's string reaches the validator as written, not JSON-decoded.
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Bearer tokens, comma-separated (or a JSON list); none configured: no auth.",
    )
    max_epochs: int = Field(100_000, ge=1)
    max_sweep_trials: int = Field(500, ge=1, description="Trials one sweep may make.")
    max_parameters: int = Field(50_000_000, ge=1, description="A network's parameter budget.")
    max_upload_bytes: int = Field(200 * 1024 * 1024, ge=1)
    # What reading one dataset may allocate, decoded (the API's upload check and every
    # worker's load): a few kilobytes of compressed data can declare gigabytes.
    max_dataset_bytes: int = Field(2 * 1024**3, ge=1)
    max_dataset_files: int = Field(50_000, ge=1, description="Images in an uploaded folder.")
    max_image_pixels: int = Field(25_000_000, ge=1, description="Pixels of one image.")
    max_predict_rows: int = Field(
        1000, ge=1, le=100_000, description="Examples (rows or images) one prediction may take."
    )
    predict_cache_jobs: int = Field(
        8, ge=1, le=1000, description="Jobs whose trained networks the API keeps for predictions."
    )
    max_job_bytes: int = Field(
        default_factory=half_of_physical_memory,
        gt=0,
        description="The memory one job may need, as estimated at submission (models/memory.py); "
        "default: half of the physical memory of the machine that reads the setting. Set it "
        "where the workers run on other machines than the API.",
    )
    # How often a running job writes its progress and heartbeat, and checks for a cancel.
    progress_seconds: float = Field(0.5, gt=0)
    lease_seconds: float = Field(
        60.0, gt=0, description="A running job's lease; a worker silent this long is lost."
    )
    max_attempts: int = Field(3, ge=1, description="Claims of a job before it fails.")
    # The reconciler (Celery beat): how often it runs, and how long a queued job's message may
    # go unclaimed before it is sent again (a broker that lost it, e.g. a restarted Redis).
    reconcile_seconds: float = Field(10.0, gt=0)
    redispatch_seconds: float = Field(300.0, gt=0)
    checkpoint_store: Literal["local", "mlflow"] = Field(
        "local",
        description="Where workers keep the checkpoints a job resumes from: 'local', the "
        "checkpoint root (a folder every worker reads); 'mlflow', the MLflow server's served "
        "artifacts, which workers on hosts that share no disk all reach.",
    )
    checkpoint_root: Path = Field(
        Path(""),
        description="Where workers write checkpoints with checkpoint_store 'local', a folder "
        "every worker reads; empty: home/checkpoints.",
    )
    # MLflow: one HTTP call never takes longer than this (training does not wait on it at all:
    # metrics go through a background thread and a spool)...
    mlflow_timeout_seconds: float = Field(10.0, gt=0)
    # ... and a job waits at most this long for MLflow to come back, at its start and its end.
    mlflow_wait_seconds: float = Field(300.0, ge=0)
    metrics_spool_max: int = Field(
        2_000_000, ge=1000, description="Metric values kept for MLflow while it is down."
    )
    max_metric_values: int = Field(
        1_000_000,
        ge=1000,
        description="Metric values one run logs at most: past it, a job logs every k-th epoch "
        "(training.log_every, decided at submission). At most metrics_spool_max.",
    )
    metrics_flush_seconds: float = Field(1.0, gt=0, description="MLflow log_batch period.")
    broker_polling_seconds: float = Field(0.05, gt=0, description="Filesystem broker polling.")
    max_queued_jobs_per_token: int = Field(
        1000,
        ge=0,
        description="Jobs one API token may have queued or running at once (POST /v1/jobs "
        "answers 429 past it); 0: no cap. No tokens configured: no cap.",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text, or one JSON object a line."
    )
    # /metrics computes the job gauges from SQL at most this often (scrapes in between reuse them).
    metrics_cache_seconds: float = Field(5.0, ge=0)

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if isinstance(value, list):  # "" and "a,,b" configure no empty token
            return [str(token).strip() for token in value if str(token).strip()]
        return value

    @field_validator("log_format", "dataset_store", "checkpoint_store", mode="before")
    @classmethod
    def _one_of_its_choices(cls, value, info: ValidationInfo):
        """A message naming the variable and its choices, not pydantic's literal_error."""
        choices = get_args(cls.model_fields[info.field_name].annotation)
        if value not in choices:
            named = " or ".join(repr(choice) for choice in choices)
            raise ValueError(f"GRADQ_{info.field_name.upper()} must be {named}, not {value!r}")
        return value

    @model_validator(mode="after")
    def _spool_holds_a_run(self) -> "Settings":
        if self.metrics_spool_max < self.max_metric_values:
            raise ValueError(
                f"metrics_spool_max ({self.metrics_spool_max}) must be at least "
                f"max_metric_values ({self.max_metric_values}): the spool holds a whole run"
            )
        return self

    @model_validator(mode="after")
    def _shared_stores_reach_mlflow_over_http(self) -> "Settings":
        """Served artifacts are an HTTP API: a file: or sqlite: tracking URI has none."""
        http = self.mlflow_tracking_uri.startswith(("http://", "https://"))
        for name in ("dataset_store", "checkpoint_store"):
            if getattr(self, name) == "mlflow" and not http:
                raise ValueError(
                    f"GRADQ_{name.upper()}=mlflow needs an http(s):// MLflow tracking URI "
                    "(a tracking server with --serve-artifacts)"
                )
        return self

    @property
    def sql_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'gradq.db').resolve()}"

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        return (self.home / "broker").resolve()

    @property
    def celery_broker_transport(self) -> str | None:
        """kombu's transport class where the URL's own will not do (broker/filesystem.py:
        messages written atomically); None: the URL's scheme decides."""
        if self.celery_broker_url.startswith("filesystem://"):
            return "broker.filesystem:Transport"
        return None

    def broker_transport_options(self) -> dict:
        """Kombu transport options for the broker, the same for the API (which sends) and the
        workers (which receive); creates the filesystem broker's folders."""
        url = self.celery_broker_url
        if url.startswith("filesystem://"):
            queue, processed, control = (
                self.broker_folder / name for name in ("queue", "processed", "control")
            )
            for folder in (queue, processed, control):
                folder.mkdir(parents=True, exist_ok=True)
            # One folder in and out: the producer writes where the consumer reads.
            return {
                "data_folder_in": str(queue),
                "data_folder_out": str(queue),
                "processed_folder": str(processed),
                # kombu's default is "control" in the working directory (remote control).
                "control_folder": str(control),
                "polling_interval": self.broker_polling_seconds,
            }
        if url.startswith(("redis://", "rediss://")):
            # Longer than the longest job: Redis re-delivers an unacknowledged message after
            # this, and with late acks a running job's message stays unacknowledged until the
            # job ends. A job that outlives it gets a second delivery, which its claim turns
            # into a no-op; a worker that died is noticed by its lease (the reconciler), never
            # by this timeout, so it need not be short.
            return {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT_SECONDS}
        return {}

    @property
    def checkpoints_folder(self) -> Path:
        root = self.checkpoint_root
        return (root if str(root) not in ("", ".") else self.home / "checkpoints").resolve()

    @property
    def datasets_folder(self) -> Path:
        return (
            self.data_root if str(self.data_root) not in ("", ".") else self.home / "datasets"
        ).resolve()

    def dataset_limits(self):
        """The models.datasets.DatasetLimits these settings set."""
        from models.datasets import DatasetLimits  # NumPy, only where datasets are read

        return DatasetLimits(
            max_bytes=self.max_dataset_bytes,
            max_files=self.max_dataset_files,
            max_image_pixels=self.max_image_pixels,
        )

    @property
    def mlflow_ui_base(self) -> str:
        return (self.mlflow_ui_url or self.mlflow_tracking_uri).rstrip("/")


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
