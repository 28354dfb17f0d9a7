"""The rule that bounds the metric values one run logs to MLflow, decided at submission.

A run logs, per epoch it logs, one value of each per-epoch metric: cost, train_accuracy,
learning_rate, val_accuracy when there is a validation split, and grad_norm.W<l> for each of
its L layers. With ``training.log_every`` = k, the epochs logged are the multiples of k and the
last one; every epoch still reaches the job's progress and the cost curve artifact. The API
picks the smallest k whose run logs at most the budget (GRADQ_MAX_METRIC_VALUES), counting
the values logged once (gradient_check and the final metrics) too:

    k = the smallest k >= ceil(epochs × values per epoch / budget) with
        logged_values(epochs, k, values per epoch) <= budget
"""

import math

ONCE_PER_RUN = 5  # gradient_check, final.cost, final.train_accuracy, final.val_accuracy, test_


def logs_epoch(epoch: int, log_every: int | None, epochs: int) -> bool:
    """Whether the per-epoch metrics of ``epoch`` (0-based, of ``epochs``) go to MLflow."""
    return not log_every or epoch % log_every == 0 or epoch == epochs - 1


def logged_epochs(epochs: int, log_every: int) -> int:
    """How many epochs logs_epoch says yes to."""
    multiples = math.ceil(epochs / log_every)
    return multiples + (1 if (epochs - 1) % log_every else 0)


def logged_values(epochs: int, log_every: int, values_per_epoch: int) -> int:
    """The metric values a run of ``epochs`` logs at most, every log_every-th epoch."""
    return logged_epochs(epochs, log_every) * values_per_epoch + ONCE_PER_RUN


def smallest_log_every(epochs: int, values_per_epoch: int, budget: int) -> int:
    """The smallest log_every whose run logs at most ``budget`` values (or logs only its first
    and last epochs, when even that is over the budget)."""
    k = max(1, math.ceil(epochs * values_per_epoch / budget))
    while k < epochs and logged_values(epochs, k, values_per_epoch) > budget:
        k += 1
    return k
