"""Schemathesis against the API's own OpenAPI document, on the real app (SQLite and
PostgreSQL, Redis as the broker, a real MLflow server): its examples, coverage and fuzzing
phases, a bounded number of examples per operation. No answer may be a 500, and every answer
must be one the document describes (status, media type, body schema).

The seed is fixed so that CI is repeatable; GRADQ_FUZZ_SEED=<n> explores elsewhere."""

import os

import schemathesis
from schemathesis.engine import events, from_schema

from service.app import create_app

EXAMPLES_PER_OPERATION = 50
CONFIG = {
    "seed": int(os.environ.get("GRADQ_FUZZ_SEED", "24")),
    "generation": {"max-examples": EXAMPLES_PER_OPERATION, "mode": "all"},
    "phases": {"stateful": {"enabled": False}},
    "checks": {
        "enabled": False,
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
    },
    "continue-on-failure": True,
}


def failures_of(schema) -> tuple[list[str], int]:
    """Each failed check or engine error, with a curl line that reproduces it; and how many
    cases were sent."""
    failures, cases = [], 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases += len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                failures += [
                    f"{check.name}: {check.failure_info.failure.title}\n"
                    f"{check.failure_info.code_sample}"
                    for check in checks
                    if check.failure_info is not None
                ]
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.append(f"engine error: {event!r}")
    return failures, cases


def test_no_example_gets_a_500_or_an_answer_outside_the_schema(
    make_settings, redis_queue, mlflow_server
):
    app = create_app(make_settings(broker_url=redis_queue.url, mlflow_tracking_uri=mlflow_server))
    config = schemathesis.Config.from_dict(CONFIG)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)

    failures, cases = failures_of(schema)

    assert cases > 10 * EXAMPLES_PER_OPERATION  # every operation was exercised
    assert not failures, "\n\n".join(sorted(set(failures)))
