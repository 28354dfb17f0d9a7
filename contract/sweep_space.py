"""A sweep's search space (DESIGN.md section 5), expanded into its trials' job specs.

The space maps spec fields (``"training.learning_rate"``, ``"model.hidden_layers"``, ...) to
axes. A list is a grid axis: every value is tried. ``{"uniform": [a, b]}``,
``{"log_uniform": [a, b]}``, ``{"int": [a, b]}`` (both ends included) and ``{"choice": [...]}``
are random axes, sampled ``trials`` times from ``seed``, never the same configuration twice;
as in Ray Tune, each sample is tried with every point of the grid. The same request gives the
same trials, in the same order, on any machine (Python's own generator, not NumPy's).
"""

import itertools
import json
import math
import random
from typing import Any

from pydantic import ValidationError

from contract.spec import JobSpec, ModelSpec, TrainingSpec
from store.text import is_storable

RANDOM_AXES = ("uniform", "log_uniform", "int", "choice")
MAX_AXIS_VALUES = 1000  # values of one grid or choice axis
SAMPLING_TRIES = 100  # draws per wanted sample before a space is called too small


class SpaceError(ValueError):
    """A space, or a trial it makes, that cannot run; ``field`` is the request's path to it."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def expand_space(
    base: dict[str, Any], space: dict[str, Any], trials: int | None, seed: int, max_trials: int
) -> list[dict[str, Any]]:
    """The trials' specs: ``base`` (a job spec as JSON) with each configuration of ``space``
    set in it, each validated as a JobSpec with every default filled in.

    Raises SpaceError naming the field: an empty space, a field that is no spec field, a bad
    axis, ``trials`` missing for random axes or given for a grid alone, more trials than
    ``max_trials``, fewer distinct configurations than asked, or a trial spec that does not
    validate (``space.<field>``)."""
    if not space:
        raise SpaceError("space", "give at least one field to vary")
    grid, sampled = {}, {}
    for path, axis in space.items():
        _check_path(path)
        if isinstance(axis, list):
            grid[path] = _grid_values(path, axis)
        else:
            sampled[path] = _random_axis(path, axis)
    grid_points = math.prod(len(values) for values in grid.values())
    if sampled and trials is None:
        raise SpaceError("trials", "random axes are sampled trials times: give trials")
    if not sampled and trials is not None:
        raise SpaceError("trials", "a grid alone tries every point: leave trials out")
    count = grid_points * (trials or 1)
    if count > max_trials:
        raise SpaceError("trials", f"the space makes {count} trials, more than {max_trials}")
    samples = _samples(sampled, trials or 1, seed)
    configurations = [
        {**dict(zip(grid, point, strict=True)), **sample}
        for sample in samples
        for point in itertools.product(*grid.values())
    ]
    return [_trial_spec(base, configuration) for configuration in configurations]


def _check_path(path: str) -> None:
    if not is_storable(path):  # not even quoted in an answer: no text holds it
        raise SpaceError("space", "a field name holds a character no text can hold")
    section, _, name = path.partition(".")
    fields = {"model": ModelSpec.model_fields, "training": TrainingSpec.model_fields}
    if section not in fields or name not in fields[section]:
        known = ", ".join(f"{s}.{n}" for s, names in fields.items() for n in names)
        raise SpaceError(f"space.{path}", f"not a field a sweep can vary; known: {known}")


def _grid_values(path: str, values: list) -> list:
    if not values:
        raise SpaceError(f"space.{path}", "a grid axis needs at least one value")
    if len(values) > MAX_AXIS_VALUES:
        raise SpaceError(f"space.{path}", f"at most {MAX_AXIS_VALUES} values")
    if len({_canonical(v) for v in values}) < len(values):
        raise SpaceError(f"space.{path}", "a value is repeated: each grid point is tried once")
    return values


class _Axis:
    """A random axis: ``draw(rng)`` gives one value; ``size`` its distinct values (inf when
    continuous)."""

    def __init__(self, draw, size: float):
        self.draw, self.size = draw, size


def _random_axis(path: str, axis: Any) -> _Axis:
    field = f"space.{path}"
    if not isinstance(axis, dict) or len(axis) != 1 or next(iter(axis)) not in RANDOM_AXES:
        raise SpaceError(
            field, f"a list (grid) or one of {{{', '.join(RANDOM_AXES)}: ...}} (random)"
        )
    kind, args = next(iter(axis.items()))
    if kind == "choice":
        if not isinstance(args, list):
            raise SpaceError(f"{field}.choice", "takes a list of values")
        values = _grid_values(f"{path}.choice", args)
        return _Axis(lambda rng: rng.choice(values), len(values))
    if not (isinstance(args, list) and len(args) == 2):
        raise SpaceError(f"{field}.{kind}", "takes [low, high]")
    low, high = args
    if kind == "int":
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in args) or low > high:
            raise SpaceError(f"{field}.int", "takes two integers [low, high], low <= high")
        return _Axis(lambda rng: rng.randint(low, high), high - low + 1)
    if not all(_finite_number(v) for v in args) or not low < high:
        raise SpaceError(f"{field}.{kind}", "takes two finite numbers [low, high], low < high")
    if kind == "uniform":
        return _Axis(lambda rng: rng.uniform(low, high), math.inf)
    if low <= 0:
        raise SpaceError(f"{field}.log_uniform", "takes positive bounds (its log is uniform)")
    log_low, log_high = math.log(low), math.log(high)
    return _Axis(lambda rng: math.exp(rng.uniform(log_low, log_high)), math.inf)


def _samples(axes: dict[str, _Axis], count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` distinct samples of the random axes (one empty sample when there are none)."""
    if not axes:
        return [{}]
    available = math.prod(axis.size for axis in axes.values())
    if available < count:
        raise SpaceError("trials", f"the random axes have only {available} configurations")
    rng, seen, samples = random.Random(seed), set(), []
    for _ in range(count * SAMPLING_TRIES):
        sample = {path: axis.draw(rng) for path, axis in axes.items()}
        key = _canonical(sample)
        if key not in seen:
            seen.add(key)
            samples.append(sample)
            if len(samples) == count:
                return samples
    raise SpaceError("trials", f"found {len(samples)} distinct configurations of {count}")


def _trial_spec(base: dict[str, Any], configuration: dict[str, Any]) -> dict[str, Any]:
    spec = json.loads(json.dumps(base))  # a deep copy of plain JSON
    for path, value in configuration.items():
        section, _, name = path.partition(".")
        if not isinstance(spec.get(section, {}), dict):
            raise SpaceError(f"base.{section}", "must be an object")
        spec.setdefault(section, {})[name] = value
    try:
        return JobSpec.model_validate(spec).model_dump(mode="json")
    except ValidationError as error:
        first = error.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        varied = next((p for p in configuration if f"{path}.".startswith(f"{p}.")), None)
        field = f"space.{varied}" if varied else f"base.{path}"
        raise SpaceError(field, f"{first['msg']} (trial {_canonical(configuration)})") from None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
