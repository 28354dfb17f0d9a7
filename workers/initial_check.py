"""The gradient check of a job's network before any update: a few examples, a bounded number
of entries, so that a wrong gradient fails the job at its start and a big network checks fast."""

from collections.abc import Callable

from models import Network, gradient_check
from workers.data import TrainingData

GRADIENT_CHECK_EXAMPLES = 5
GRADIENT_CHECK_PER_PARAMETER = 20
# Entries checked in all: each costs two forward passes of the examples through the whole
# network, so a big network gets fewer, within about GRADIENT_CHECK_WORK multiply-adds.
GRADIENT_CHECK_MAX_ENTRIES = 200
GRADIENT_CHECK_MIN_ENTRIES = 4
GRADIENT_CHECK_WORK = 10**9


def initial_gradient_check(
    net: Network, data: TrainingData, l2: float, should_stop: Callable[[], bool] | None = None
) -> float:
    """The gradient check of the network before any update, on a few training examples and
    a bounded number of entries; raises GradientCheckStopped when ``should_stop()`` says so."""
    examples = min(GRADIENT_CHECK_EXAMPLES, data.m_train)
    return gradient_check(
        net,
        data.X_train[:, :examples],
        data.Y_train[:, :examples],
        l2=l2,
        max_per_parameter=GRADIENT_CHECK_PER_PARAMETER,
        max_entries=gradient_check_entries(net.num_parameters, examples),
        should_stop=should_stop,
    )


def gradient_check_entries(num_parameters: int, examples: int) -> int:
    """How many entries the initial gradient check perturbs in all, for a network of
    ``num_parameters`` on ``examples`` examples."""
    affordable = GRADIENT_CHECK_WORK // max(2 * examples * num_parameters, 1)
    return max(GRADIENT_CHECK_MIN_ENTRIES, min(GRADIENT_CHECK_MAX_ENTRIES, affordable))
