"""Many clients at once, some retrying with the same Idempotency-Key: one job per key, every
202 backed by a row, every job finished."""

import collections
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.faults.harness import mlp_spec

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("stack_kind", ["redis_postgres", "embedded"])
def test_200_concurrent_submissions_with_repeated_keys_make_one_job_per_key(make_stack, stack_kind):
    # Embedded: SQLite's single write lock shared by the API, the worker and the reconciler.
    stack = make_stack(workers=1, concurrency=2, embedded=stack_kind == "embedded")
    rng = random.Random(0)
    unique = [f"key-{n}" for n in range(120)]
    keys = unique + [rng.choice(unique) for _ in range(80)]  # 200 requests, 80 repeats
    rng.shuffle(keys)
    local = threading.local()

    def post(key: str) -> tuple[str, int, str | None]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=stack.api_url, timeout=60)
        seed = int(key.split("-")[1])  # the same key always sends the same body
        response = stack.post(mlp_spec(stack.experiment, 20, seed=seed), key, local.client)
        return key, response.status_code, response.json().get("id")

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(post, keys))

    assert collections.Counter(status for _, status, _ in answers) == {202: 200}
    ids_by_key = collections.defaultdict(set)
    for key, _, job_id in answers:
        ids_by_key[key].add(job_id)
    assert all(len(ids) == 1 for ids in ids_by_key.values())
    ids = sorted({job_id for _, _, job_id in answers})
    assert len(ids) == len(unique)
    rows = stack.jobs(ids)
    assert len(rows) == len(unique)  # every 202 is a row
    assert len({job.idempotency_key for job in rows.values()}) == len(unique)
    counts, _ = stack.report(ids, timeout=300)
    assert (counts.succeeded, counts.lost, counts.duplicate_runs, counts.bad_curves) == (
        len(unique), 0, 0, 0,
    )  # fmt: skip
    logs = "".join(path.read_text(errors="replace") for path in stack.home.glob("*.log"))
    assert "database is locked" not in logs
