"""What a submission of jobs (POST /v1/jobs, POST /v1/sweeps) shares: the Idempotency-Key
header, the answers to a reused key and to a token over its cap, and the outbox's repair after
a failed send."""

import logging
from typing import Annotated

from fastapi import APIRouter, Header, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.errors import APIError, error_responses
from service.limits import JSONBodyRoute
from service.security import FINGERPRINT_STATE
from settings import Settings
from store import jobs as job_rows
from store.text import SqlText

log = logging.getLogger("gradq.service")
# A client over its token's cap waits for some of its jobs to finish: seconds, not milliseconds.
QUOTA_RETRY_AFTER_SECONDS = 30

IdempotencyKey = Annotated[
    SqlText | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Retrying with the same key and body returns the same job (or sweep).",
    ),
]


# The answers a submission may get besides 202, 401, 422 and 503 (every route of its router).
SUBMISSION_ERRORS = error_responses(409, 413, 415, 429)


def submission_router(prefix: str, tag: str) -> APIRouter:
    """A router whose routes take JSON bodies (JSONBodyRoute: their size limit, 415 for
    another media type), with the answers every route of it may give documented."""
    return APIRouter(
        prefix=prefix,
        tags=[tag],
        route_class=JSONBodyRoute,
        responses=error_responses(401, 422, 503),
    )


def submitter(request: Request, settings: Settings) -> tuple[str | None, int]:
    """The submitting token's fingerprint (None: no tokens configured) and its cap on active
    jobs (0: none)."""
    fingerprint = getattr(request.state, FINGERPRINT_STATE, None)
    return fingerprint, settings.max_queued_jobs_per_token if fingerprint is not None else 0


def idempotency_conflict() -> APIError:
    return APIError(
        409,
        "idempotency_conflict",
        "Idempotency-Key was already used with a different request body",
        "Idempotency-Key",
    )


def over_quota(cap: int) -> APIError:
    return APIError(
        429,
        "too_many_jobs",
        f"this API token already has {cap} jobs queued or running "
        "(GRADQ_MAX_QUEUED_JOBS_PER_TOKEN); retry when some have finished",
        "Authorization",
        headers={"Retry-After": str(QUOTA_RETRY_AFTER_SECONDS)},
    )


def mark_undispatched(session: Session, job_id: str) -> None:
    """Clear dispatched_at after a failed send, so the reconciler sends the job soon. The job
    is committed: if this write fails too, the request still answers 202 (an error would make
    a client without an Idempotency-Key submit it twice), and the reconciler sends the job
    anyway once it is stale."""
    try:
        job_rows.mark_undispatched(session, job_id)
        session.commit()
    except SQLAlchemyError:
        log.exception("job %s: not marked undispatched; the reconciler sends it when stale", job_id)
