"""The HTTP API. ``create_app`` is the factory (``uvicorn --factory service.app:create_app``):
importing this module touches no database and no broker."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

import logs
from service.dispatch import make_celery_client
from service.errors import error_responses, install_error_handlers
from service.job_metrics import JobMetrics
from service.limits import BodySizeLimit
from service.predictor import Predictors
from service.routes import datasets, health, jobs, predict, sweeps
from service.routes.datasets import STAGING
from service.security import BearerTokenAuth
from service.telemetry import RequestMetrics
from settings import Settings, get_settings, turn_off_mlflow_telemetry
from store.db import make_engine, make_session_factory
from store.stale_files import remove_stale

turn_off_mlflow_telemetry()  # before the routes first import MLflow; an API started by hand too

# Room for the multipart framing and the form fields around the (at most two) files.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024
# A job spec is a few hundred bytes; prediction inputs as JSON are the largest bodies expected.
MAX_JSON_BYTES = 16 * 1024 * 1024
# The only routes whose multipart bodies may be larger than MAX_JSON_BYTES.
UPLOAD_ROUTES = frozenset({("POST", "/v1/datasets")})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logs.configure(settings.log_format)  # after uvicorn's own logging setup

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # What is loaded by now lives as long as the server: frozen, it is out of the
        # collector's sight: a full collection of it held every request waiting
        # (docs/benchmarks.md, 'Measured by hand').
        remove_stale(settings.datasets_folder / STAGING)  # what crashed uploads left
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # back to the oldest generation, collectable again
            app.state.celery.close()
            app.state.engine.dispose()

    app = FastAPI(
        title="gradq",
        summary="Neural networks from first principles, trained as queued jobs.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings.sql_url)
    app.state.session_factory = make_session_factory(app.state.engine)
    app.state.celery = make_celery_client(settings)
    # The app's own registry: several apps in one process (the tests) each count their queue.
    app.state.metrics_registry = CollectorRegistry(auto_describe=False)
    app.state.metrics_registry.register(JobMetrics(app.state.session_factory, settings))
    install_error_handlers(app)
    app.include_router(jobs.router)
    app.include_router(sweeps.router)
    app.include_router(predict.router)
    app.state.predictors = Predictors(settings.mlflow_tracking_uri, settings.predict_cache_jobs)
    # The dataset routes' errors, documented here for the router as a whole.
    app.include_router(
        datasets.router, responses=error_responses(400, 401, 404, 409, 413, 422, 503)
    )
    app.include_router(health.router)
    # The last added runs first: metrics see every answer, auth comes before any body is read.
    app.add_middleware(
        BodySizeLimit,
        json_limit=MAX_JSON_BYTES,
        upload_limit=2 * settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        upload_routes=UPLOAD_ROUTES,
    )
    tokens = [token.get_secret_value() for token in settings.api_tokens]
    app.add_middleware(BearerTokenAuth, tokens=tokens)
    app.add_middleware(RequestMetrics)
    return app
