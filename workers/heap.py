"""The objects a worker process creates as it starts, kept out of the garbage collector's way.

A worker's processes import MLflow, SQLAlchemy, Celery, matplotlib and NumPy: ~250,000 objects
that live as long as the process. Python's full collection walks every tracked object, a
long pause with these (docs/benchmarks.md, 'Measured by hand'), of whatever the process
was doing: the training loop, the helper's last metric sends that a finished job waits for,
or the main process's handling of the broker. ``gc.freeze()`` moves them into a permanent
generation that collections skip (the standard library's advice for long-lived objects made at
start-up, and before a fork); later objects are collected as before, and a full collection
walks only those.
"""

import gc


def freeze_startup_objects() -> None:
    """Collect start-up's garbage (frozen objects are never freed), then freeze the rest."""
    gc.collect()
    gc.freeze()
