"""The tag keys and tag values MLflow accepts (mlflow.utils.validation: _validate_tag), checked
when a job is submitted so that no attempt fails on them later, and the tag prefixes MLflow and
gradq set themselves.

Mirrored rather than imported: importing mlflow costs the API seconds and ~100 MB for these
few lines; tests/store/test_mlflow_names.py holds them to MLflow's own validators.
"""

import posixpath
import re

MAX_TAG_KEY_LENGTH = 250  # MAX_ENTITY_KEY_LENGTH
MAX_TAG_VALUE_LENGTH = 8000  # MAX_TAG_VAL_LENGTH; MLflow would truncate a longer one silently
RESERVED_TAG_PREFIXES = ("mlflow.", "gradq.")
# validate_param_and_metric_name off Windows: slashes, word characters, . - space and colon.
_TAG_KEY_CHARACTERS = re.compile(r"^[/\w.\- :]*$")


def check_tag_key(key: str) -> str:
    """ValueError with the reason MLflow (or gradq) would refuse ``key``."""
    if not _TAG_KEY_CHARACTERS.match(key):
        raise ValueError(
            "a tag key may only contain alphanumerics, underscores, dashes, periods, spaces, "
            "colons and slashes"
        )
    normalized = posixpath.normpath(key)
    if normalized != key or normalized == "." or normalized.startswith(("..", "/")):
        raise ValueError(f"a tag key must be a plain relative path; this one reads {normalized!r}")
    if len(key) > MAX_TAG_KEY_LENGTH:
        raise ValueError(f"a tag key is at most {MAX_TAG_KEY_LENGTH} characters")
    if key.lower().startswith(RESERVED_TAG_PREFIXES):
        raise ValueError(
            f"tag keys starting with {' or '.join(RESERVED_TAG_PREFIXES)} are reserved"
        )
    return key
