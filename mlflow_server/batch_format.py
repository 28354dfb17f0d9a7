"""The batch upload of gradq's MLflow server (mlflow_server/batch_upload.py), as the workers
send it (workers/artifact_batch.py): one request carries a plain POSIX ustar tar of files, each
named by its path under the server's artifact root (what MLflow's own upload puts in its URL),
written in the tar's order. MLflow's upload takes one file a request, each a round trip and a
handler's work of its own (docs/benchmarks.md, "Where a trial's time goes").

Plain Python: the workers import it without MLflow's server."""

import posixpath

BATCH_ROUTE = "/gradq/api/2.0/mlflow-artifacts/batch"
TAR_CONTENT_TYPE = "application/x-tar"
MAX_BATCH_BYTES = 64 * 2**20  # the request's body; larger files go by MLflow's upload
MAX_BATCH_FILES = 256  # a model's folder is ~10
# MLflow's local artifact store writes a file under this name first, and refuses it as a name.
RESERVED_PREFIX = ".artifact.uploading."
ESCAPES = ("%", "#", "\\")  # MLflow's check decodes %-escapes and cuts at "#"; "\\" on Windows


def is_plain_path(name: str) -> bool:
    """Whether a batch may carry a file at ``name``: a plain relative path (no empty, ``.`` or
    ``..`` part, not absolute), no escapes or control characters, not a reserved name. The
    server also applies MLflow's own check; the workers send any other name by MLflow's
    upload, one request."""
    return (
        name not in ("", ".")
        and posixpath.normpath(name) == name
        and not name.startswith(("/", "../"))
        and name != ".."
        and not any(escape in name for escape in ESCAPES)
        and all(ord(character) >= 32 and character != "\x7f" for character in name)
        and not posixpath.basename(name).startswith(RESERVED_PREFIX)
    )
