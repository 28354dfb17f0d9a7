"""The heartbeat thread: a worker that cannot reach SQL for a lease's time stops as if its
lease were lost (the reconciler may have given the job to another worker by then)."""

import time

from settings import Settings
from store.db import make_engine, make_session_factory
from workers.progress import Progress


def test_a_heartbeat_that_fails_for_a_lease_counts_the_lease_as_lost(tmp_path):
    # A database nobody listens on: every beat fails at once.
    unreachable = make_session_factory(
        make_engine("postgresql+psycopg2://nobody@127.0.0.1:9/none?connect_timeout=1")
    )
    settings = Settings(home=tmp_path, lease_seconds=1.0, progress_seconds=0.1)
    progress = Progress(unreachable, "0" * 32, "me/1", settings).start()
    try:
        assert progress.stop_reason() is None  # a missed beat or two is no lost lease
        deadline = time.monotonic() + 10
        while progress.stop_reason() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert progress.stop_reason() == "lost"
        assert progress.beats == 0
    finally:
        progress.close(final_beat=False)
