"""Liveness, readiness and Prometheus metrics."""

from dataclasses import asdict

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service import telemetry
from service.deps import SettingsDep
from service.readiness import readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a dependency is not ready"}})
def readyz(request: Request, settings: SettingsDep) -> JSONResponse:
    """SQL, the broker and MLflow each answer; 503 and the failing checks otherwise."""
    checks = readiness(request.app.state.engine, settings)
    ready = all(check.ok for check in checks.values())
    body = {
        "status": "ok" if ready else "unavailable",
        "checks": {name: asdict(check) for name, check in checks.items()},
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus metrics; the queue's come from SQL, cached for GRADQ_METRICS_CACHE_SECONDS."""
    content, media_type = telemetry.exposition(request.app.state.metrics_registry)
    return Response(content, media_type=media_type)
