"""cost_curve.png: the figure a worker reuses from run to run draws each run exactly as a
figure built for that run alone would."""

import math

import numpy as np
import pytest
from PIL import Image

from workers import cost_curve


def history(epochs: int, seed: int, validation: bool = True) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    cost = np.cumsum(rng.random(epochs))[::-1] / epochs + rng.random()
    curves = {"cost": cost, "train_accuracy": 1 - cost / cost.max() / 2}
    if validation:
        curves["val_accuracy"] = curves["train_accuracy"] * 0.9
    return {name: [float(v) for v in values] for name, values in curves.items()}


def fresh_png(run: dict[str, list[float]], path, title: str) -> bytes:
    cost_curve._figures.clear()
    cost_curve.plot_cost_curve(run, path, title)
    return path.read_bytes()


@pytest.mark.parametrize("validation", [True, False])
def test_a_reused_figure_draws_a_run_exactly_as_a_fresh_one(tmp_path, validation):
    first = history(5000, seed=1, validation=validation)  # the same curves: the same figure
    second = history(37, seed=2, validation=validation)
    expected = fresh_png(second, tmp_path / "fresh.png", "second run")

    cost_curve._figures.clear()
    cost_curve.plot_cost_curve(first, tmp_path / "first.png", "a much longer first run")
    cost_curve.plot_cost_curve(second, tmp_path / "reused.png", "second run")

    assert (tmp_path / "reused.png").read_bytes() == expected
    assert (tmp_path / "first.png").read_bytes() != expected
    assert_axes_hold(second)


def assert_axes_hold(run: dict[str, list[float]]) -> None:
    """The last figure drawn for ``run`` shows all of its points, and accuracies from 0 to 1."""
    names = tuple(name for name in cost_curve.CURVES if run.get(name))
    (figure, _lines) = cost_curve._figures[names]
    cost_axis, accuracy_axis = figure.axes
    low, high = cost_axis.get_ylim()
    assert low <= min(run["cost"]) and max(run["cost"]) <= high
    assert high - low < 2 * (max(run["cost"]) - min(run["cost"]))  # not a stale, wider range
    left, right = cost_axis.get_xlim()
    assert left <= 0 and len(run["cost"]) - 1 <= right < 1.2 * len(run["cost"])
    assert accuracy_axis.get_ylim() == (0, 1.02)


def test_a_shorter_run_then_a_longer_one_draws_the_longer_one_whole(tmp_path):
    longer = history(900, seed=6)
    expected = fresh_png(longer, tmp_path / "fresh.png", "longer")
    cost_curve.plot_cost_curve(history(12, seed=5), tmp_path / "short.png", "short")
    cost_curve.plot_cost_curve(longer, tmp_path / "reused.png", "longer")
    assert (tmp_path / "reused.png").read_bytes() == expected
    assert_axes_hold(longer)


def test_the_plot_is_a_png_with_a_line_per_curve(tmp_path):
    run = history(120, seed=3)
    cost_curve.plot_cost_curve(run, tmp_path / "c.png", r"faces, $\frac{1$ (not math)")
    image = Image.open(tmp_path / "c.png").convert("RGB")
    assert image.size == (600, 350)
    pixels = np.asarray(image).reshape(-1, 3)
    for color in ((31, 119, 180), (255, 127, 14), (44, 160, 44)):  # tab:blue, orange, green
        assert np.any(np.all(np.abs(pixels.astype(int) - color) < 8, axis=1)), color


def test_a_long_run_is_plotted_from_at_most_max_points_points(tmp_path):
    run = history(3 * cost_curve.MAX_POINTS + 1, seed=4)
    cost_curve.plot_cost_curve(run, tmp_path / "c.png", "long")
    _figure, lines = cost_curve._figures[("cost", "train_accuracy", "val_accuracy")]
    x, y = lines[0].get_data()
    assert len(x) <= cost_curve.MAX_POINTS + 1
    assert x[-1] == 3 * cost_curve.MAX_POINTS and math.isclose(y[-1], run["cost"][-1])
