"""A sweep's space expanded into its trials: grids, random axes reproducible from their seed and
never repeated, and every bad space refused naming its field."""

import math

import pytest

from contract.sweep_space import SpaceError, expand_space

BASE = {"experiment": "sweep", "dataset": {"name": "faces"}, "training": {"epochs": 50}}


def expand(space, trials=None, seed=0, max_trials=1000, base=BASE):
    return expand_space(base, space, trials, seed, max_trials)


def varied(specs, path):
    section, name = path.split(".")
    return [spec[section][name] for spec in specs]


def points(specs, *paths):
    """Each spec's values of ``paths``, as a tuple."""
    return [tuple(spec[p.split(".")[0]][p.split(".")[1]] for p in paths) for spec in specs]


def test_a_grid_tries_every_point_of_its_axes_with_the_base_and_its_defaults():
    specs = expand({"training.learning_rate": [0.1, 0.01], "model.hidden_layers": [[], [8]]})

    points_ = points(specs, "training.learning_rate", "model.hidden_layers")
    assert points_ == [(0.1, []), (0.1, [8]), (0.01, []), (0.01, [8])]
    assert all(spec["training"]["epochs"] == 50 for spec in specs)  # the base's own
    assert all(spec["training"]["optimizer"] == "gd" for spec in specs)  # a default, filled in


def test_random_axes_are_reproducible_from_their_seed_and_stay_within_their_bounds():
    space = {
        "training.learning_rate": {"log_uniform": [1e-4, 1e-1]},
        "training.l2": {"uniform": [0, 2]},
        "training.seed": {"int": [0, 9]},
        "model.hidden_activation": {"choice": ["relu", "tanh"]},
    }
    first, again, other = expand(space, 20, seed=3), expand(space, 20, seed=3), expand(space, 20, 4)

    assert first == again and first != other
    assert all(1e-4 <= v <= 1e-1 for v in varied(first, "training.learning_rate"))
    assert all(0 <= v <= 2 for v in varied(first, "training.l2"))
    assert set(varied(first, "training.seed")) <= set(range(10))
    assert set(varied(first, "model.hidden_activation")) == {"relu", "tanh"}
    # log-uniform: as many values below the geometric middle as above, roughly
    below = sum(v < math.sqrt(1e-4 * 1e-1) for v in varied(first, "training.learning_rate"))
    assert 3 <= below <= 17


def test_random_search_never_repeats_a_configuration_even_when_it_uses_up_the_space():
    space = {
        "training.seed": {"int": [0, 4]},
        "model.hidden_activation": {"choice": ["relu", "tanh"]},
    }
    specs = expand(space, trials=10)

    configurations = points(specs, "training.seed", "model.hidden_activation")
    assert len(set(configurations)) == 10  # all 5 × 2 of them, each once
    with pytest.raises(SpaceError, match="only 10 configurations") as refused:
        expand(space, trials=11)
    assert refused.value.field == "trials"


def test_each_random_sample_is_tried_with_every_grid_point():
    space = {"training.learning_rate": [0.1, 0.01, 0.001], "training.seed": {"int": [0, 1000]}}
    specs = expand(space, trials=4, seed=1)

    assert len(specs) == 12
    seeds = varied(specs, "training.seed")
    assert len(set(seeds)) == 4 and all(seeds.count(s) == 3 for s in set(seeds))


@pytest.mark.parametrize(
    ("space", "trials", "field", "reason"),
    [
        ({}, None, "space", "at least one field"),
        ({"training.lr": [0.1]}, None, "space.training.lr", "not a field"),
        ({"experiment": ["a", "b"]}, None, "space.experiment", "not a field"),
        ({"dataset.name": ["faces"]}, None, "space.dataset.name", "not a field"),
        ({"training.learning_rate": []}, None, "space.training.learning_rate", "at least one"),
        ({"training.learning_rate": [0.1, 0.1]}, None, "space.training.learning_rate", "repeated"),
        ({"training.learning_rate": [0.1, -1]}, None, "space.training.learning_rate", "greater"),
        ({"model.hidden_layers": [[0]]}, None, "space.model.hidden_layers", "greater"),
        ({"training.learning_rate": {"normal": [0, 1]}}, 2, "space.training.learning_rate", "grid"),
        ({"training.learning_rate": 0.1}, None, "space.training.learning_rate", "grid"),
        ({"training.l2": {"uniform": [1]}}, 2, "space.training.l2.uniform", "low, high"),
        ({"training.l2": {"uniform": [2, 1]}}, 2, "space.training.l2.uniform", "low < high"),
        ({"training.l2": {"uniform": [0, "1"]}}, 2, "space.training.l2.uniform", "finite"),
        ({"training.learning_rate": {"log_uniform": [0, 1]}}, 2,
         "space.training.learning_rate.log_uniform", "positive"),
        ({"training.seed": {"int": [0, 2.5]}}, 2, "space.training.seed.int", "integers"),
        ({"training.seed": {"choice": "abc"}}, 2, "space.training.seed.choice", "list"),
        ({"training.seed": {"int": [0, 9]}}, None, "trials", "give trials"),
        ({"training.seed": [1, 2]}, 2, "trials", "leave trials out"),
        ({"training.seed": {"int": [0, 10**6]}}, 1001, "trials", "more than 1000"),
        ({"training.optimizer": ["sgd"]}, None, "base.training", "batch_size"),
    ],
)  # fmt: skip
def test_a_bad_space_is_refused_naming_its_field_and_the_reason(space, trials, field, reason):
    with pytest.raises(SpaceError, match=reason) as refused:
        expand(space, trials)
    assert refused.value.field == field


def test_a_grid_over_the_trial_limit_is_refused_before_any_spec_is_made():
    space = {"training.seed": list(range(40)), "training.epochs": list(range(1, 41))}
    with pytest.raises(SpaceError, match="1600 trials, more than 1000"):
        expand(space)
