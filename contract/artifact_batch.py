"""The batch upload of gradq's MLflow server (mlflow_server/batch_upload.py), used by the
workers (workers/artifact_batch.py): one request carries a tar of files, each named by its
path under the server's artifact root (what MLflow's own upload puts in its URL), written in
the tar's order. MLflow's upload takes one file a request, each a round trip and a handler's
work of its own (docs/benchmarks.md, "Where a trial's time goes")."""

BATCH_ROUTE = "/gradq/api/2.0/mlflow-artifacts/batch"
TAR_CONTENT_TYPE = "application/x-tar"
MAX_BATCH_BYTES = 64 * 2**20  # the request's body; larger files go by MLflow's upload
MAX_BATCH_FILES = 256  # a model's folder is ~10
