"""cost_curve.png: a run's cost per epoch, and its accuracies on a second axis.

Building a figure (axes, ticks, labels, legend) is a large part of drawing one (docs/benchmarks.md,
'Measured by hand'), and every run draws the same figure with other numbers. So a worker builds it
once per set of curves and, for each run, only gives it the run's points and title before saving it;
the image is the same as from a figure built for that run alone (tests/workers/test_cost_curve.py).
"""

import threading
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

MAX_POINTS = 2000
CURVES = {"cost": "tab:blue", "train_accuracy": "tab:orange", "val_accuracy": "tab:green"}

_figures: dict[tuple[str, ...], tuple[Figure, list[Line2D]]] = {}
_lock = threading.Lock()  # one figure may serve two jobs of a thread pool: one at a time


def plot_cost_curve(history: dict[str, list[float]], path: Path, title: str) -> None:
    """Draw ``history``'s cost and accuracies (one value per epoch) into the PNG ``path``."""
    names = tuple(name for name in CURVES if history.get(name))
    epochs = max((len(history[name]) for name in names), default=0)
    # Every epoch of a long run is more points than pixels: plot at most ~MAX_POINTS of them.
    stride = max(1, epochs // MAX_POINTS)
    with _lock:
        if names not in _figures:
            _figures[names] = _new_figure(names)
        figure, lines = _figures[names]
        for name, line in zip(names, lines, strict=True):
            values = history[name][::stride]
            line.set_data(np.arange(len(values)) * stride, values)
        cost_axis = figure.axes[0]  # its x axis is the accuracies' too; their y: 0 to 1
        cost_axis.relim()
        cost_axis.autoscale_view()
        # A fixed title height: left to itself, each axes measures every tick label to place
        # its title above them, and nothing is drawn above these axes.
        cost_axis.set_title(title, y=1.0, parse_math=False)  # a "$" in a run's name is text
        # zlib's fastest level: a plot a little larger, drawn faster.
        figure.savefig(path, pil_kwargs={"compress_level": 1})


def _new_figure(names: tuple[str, ...]) -> tuple[Figure, list[Line2D]]:
    """An empty figure with a line for each of ``names``, in that order."""
    # Figure + Agg canvas, not pyplot: no global figure state and no GUI backend in a worker.
    figure = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(figure)
    cost_axis = figure.add_subplot()
    accuracy_axis = cost_axis.twinx()
    accuracy_axis.set_title("", y=1.0)
    lines = []
    for name in names:
        axis = cost_axis if name == "cost" else accuracy_axis
        lines += axis.plot([], [], color=CURVES[name], label=name.replace("_", " "))
    cost_axis.set_xlabel("epoch")
    cost_axis.set_ylabel("cost")
    accuracy_axis.set_ylabel("accuracy")
    accuracy_axis.set_ylim(0, 1.02)
    # At most ~5 ticks an axis: each tick is a line and a text to lay out.
    for axis in (cost_axis.xaxis, cost_axis.yaxis, accuracy_axis.yaxis):
        steps = [1, 2, 2.5, 5, 10]
        axis.set_major_locator(MaxNLocator(nbins=5, steps=steps, integer=axis is cost_axis.xaxis))
    cost_axis.legend(handles=lines, loc="center right")
    # Fixed margins: tight_layout costs more than the rest of the plot.
    figure.subplots_adjust(left=0.11, right=0.89, bottom=0.14, top=0.91)
    return figure, lines
