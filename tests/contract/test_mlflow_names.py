"""gradq's copy of MLflow's tag-key rules (contract/mlflow_names.py) accepts exactly the keys
MLflow's own validators accept, less the reserved prefixes."""

import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException
from mlflow.utils import mlflow_tags
from mlflow.utils import validation as mlflow_validation
from pydantic import ValidationError

from contract import mlflow_names
from contract.spec import JobSpec

KEY_CHARACTERS = st.sampled_from(string.ascii_letters + string.digits + "/_.- :!?\\\t\n\x00é语")


def mlflow_accepts(key: str) -> bool:
    try:
        mlflow_validation._validate_tag(key, "value")
    except MlflowException:
        return False
    return True


def gradq_accepts(key: str) -> bool:
    try:
        mlflow_names.check_tag_key(key)
    except ValueError:
        return False
    return True


def reserved(key: str) -> bool:
    return key.lower().startswith(mlflow_names.RESERVED_TAG_PREFIXES)


@given(st.text(KEY_CHARACTERS, max_size=12) | st.text(max_size=12) | st.text(min_size=245))
@example("owner!")
@example("../x")
@example("a/./b")
@example("x" * 251)
@example("")
@example("owner\n")
def test_a_tag_key_is_accepted_exactly_when_mlflow_accepts_it_and_it_is_not_reserved(key):
    assert gradq_accepts(key) == (mlflow_accepts(key) and not reserved(key))


def test_the_limits_are_mlflows():
    assert mlflow_names.MAX_TAG_KEY_LENGTH == mlflow_validation.MAX_ENTITY_KEY_LENGTH
    assert mlflow_names.MAX_TAG_VALUE_LENGTH == mlflow_validation.MAX_TAG_VAL_LENGTH


@pytest.mark.parametrize(
    "key",
    [mlflow_tags.MLFLOW_RUN_NAME, mlflow_tags.MLFLOW_PARENT_RUN_ID, mlflow_tags.MLFLOW_USER,
     mlflow_tags.MLFLOW_SOURCE_NAME, mlflow_tags.MLFLOW_RUN_NOTE, "gradq.job_id"],
)  # fmt: skip
def test_system_tags_of_mlflow_and_gradq_are_refused(key):
    assert not gradq_accepts(key)


def spec_accepts(**fields) -> bool:
    try:
        JobSpec.model_validate({"dataset": {"name": "faces"}, **fields})
    except ValidationError:
        return False
    return True


@given(st.text(max_size=300))
@example("x" * 255)
@example("a\x00b")
def test_every_experiment_and_run_name_the_spec_accepts_mlflow_accepts(text):
    if spec_accepts(experiment=text):
        mlflow_validation._validate_experiment_name(text)
    if spec_accepts(name=text):
        mlflow_validation._validate_tag(mlflow_tags.MLFLOW_RUN_NAME, text)
        assert len(text) <= mlflow_names.MAX_TAG_VALUE_LENGTH  # never truncated by MLflow
