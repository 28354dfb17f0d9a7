"""A run's best value of each ranked metric and the epoch it was measured at, for a sweep's
trials table."""

import math

from workers.final_metrics import best_metrics


def test_the_best_of_each_metric_is_its_extreme_over_the_epochs_and_the_final_value():
    history = {"cost": [0.7, 0.4, 0.5], "val_accuracy": [0.5, 0.8, 0.8], "train_accuracy": [0.5]}
    final = {"cost": 0.45, "val_accuracy": 0.75, "train_accuracy": 0.9}

    best = best_metrics(history, final)

    assert best == {
        "best_cost": 0.4, "best_cost_epoch": 1,  # the lowest cost
        "best_val_accuracy": 0.8, "best_val_accuracy_epoch": 1,  # the first of a tie
        "best_train_accuracy": 0.9, "best_train_accuracy_epoch": 1,  # the final value
    }  # fmt: skip


def test_a_metric_never_measured_has_no_best_and_nan_never_wins():
    history = {"cost": [math.nan, 0.9], "train_accuracy": [0.4]}
    final = {"cost": math.nan, "train_accuracy": 0.3, "val_accuracy": None}

    best = best_metrics(history, final)

    assert best == {"best_cost": 0.9, "best_cost_epoch": 1,
                    "best_train_accuracy": 0.4, "best_train_accuracy_epoch": 0}  # fmt: skip
