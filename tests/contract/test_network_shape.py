"""One contract across the seam: the API completes a spec and the worker builds its network by
the same rules (contract/network_shape.py), and sends and runs the task by the same name."""

import pytest

from contract.network_shape import SpecRuleError, network_shape
from contract.spec import ModelSpec
from contract.task_names import TRAIN_TASK


@pytest.mark.parametrize(
    ("model", "classes", "expected"),
    [
        ({}, 2, ([625, 1], "sigmoid", "zeros")),
        ({}, 10, ([625, 10], "softmax", "zeros")),
        ({"hidden_layers": [20, 7]}, 2, ([625, 20, 7, 1], "sigmoid", "he")),
        (
            {"hidden_layers": [5], "hidden_activation": "tanh"},
            3,
            ([625, 5, 3], "softmax", "xavier"),
        ),
        ({"output": "softmax"}, 2, ([625, 2], "softmax", "zeros")),
    ],
)
def test_the_network_a_spec_describes(model, classes, expected):
    shape = network_shape(ModelSpec.model_validate(model), 625, classes, "faces")
    assert (shape.layer_dims, shape.output, shape.init) == expected


@pytest.mark.parametrize(
    ("model", "classes", "field", "reason"),
    [
        ({"output": "sigmoid"}, 10, "model.output", "needs exactly 2 classes"),
        ({}, 1, "model.output", "needs at least 2 classes"),
        ({"hidden_layers": [4], "init": "zeros"}, 2, "model.init", "logistic regression only"),
    ],
)
def test_a_broken_rule_names_its_field(model, classes, field, reason):
    with pytest.raises(SpecRuleError) as broken:
        network_shape(ModelSpec.model_validate(model), 8, classes, "faces")
    assert broken.value.field == field and reason in broken.value.reason


def test_the_api_completes_a_spec_as_the_worker_builds_it():
    from contract.spec import JobSpec
    from models import load_dataset
    from service.catalog import describe_builtin
    from service.job_rules import complete_spec
    from settings import Settings
    from workers.run import build_network

    spec = JobSpec.model_validate({"dataset": {"name": "digits"}, "model": {"hidden_layers": [9]}})
    completed = complete_spec(spec, describe_builtin("digits"), Settings())

    class Data:  # what build_network reads of the worker's TrainingData
        dataset = load_dataset("digits")

    net = build_network(spec, Data)
    assert (completed.model.output, completed.model.init) == (net.output.name, net.init)
    assert net.layer_dims == [64, 9, 10]


def test_the_api_sends_the_task_the_workers_run():
    from service import dispatch
    from workers.tasks import app

    assert dispatch.TRAIN_TASK == TRAIN_TASK and TRAIN_TASK in app.tasks
