"""A training job's metrics without the training: the load bench/service.py puts on MLflow.

``python bench/metrics_load.py URI --epochs N --seconds-per-epoch S --keys cost,...`` creates
a run on the tracking server at URI, prints ``ready``, waits for a line on stdin, then adds one
value of each key per epoch, an epoch every S seconds, to the worker's ``MetricsBuffer``
(which sends them as the worker does), and closes it. Run beside training alone, it shows
what the tracking server's work of storing a job's metrics costs the training on this machine,
apart from anything the worker's own process does.
"""

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlflow.tracking import MlflowClient

from settings import Settings
from workers import metrics_spool, tracking


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tracking_uri")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--seconds-per-epoch", type=float, required=True)
    parser.add_argument("--keys", required=True, help="comma-separated metric names")
    args = parser.parse_args()
    client = MlflowClient(args.tracking_uri)
    run = tracking.start_run(client, experiment="bench-metrics-load", run_name="load", tags={})
    buffer = metrics_spool.MetricsBuffer(client, run.run_id, Settings().metrics_flush_seconds)
    keys = args.keys.split(",")
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    for epoch in range(args.epochs):
        time.sleep(max(0.0, started + (epoch + 1) * args.seconds_per_epoch - time.perf_counter()))
        buffer.add(epoch, {key: random.random() for key in keys})
    buffer.close()
    client.set_terminated(run.run_id)


if __name__ == "__main__":
    main()
