"""Runs side by side (service/compare.py): only the params that differ, each run's final and
best value with its epoch, the value at a step, and the cost curves drawn into a PNG."""

from contract.spec import JobSpec
from service.compare import compare, plot_cost_curves


def job(job_id: str, learning_rate: float, final: dict, epochs: int = 4) -> dict:
    spec = {"dataset": {"name": "faces"}, "training": {"learning_rate": learning_rate,
                                                       "epochs": epochs}}  # fmt: skip
    return {
        "id": job_id,
        "name": f"lr-{learning_rate}",
        "spec": JobSpec.model_validate(spec).model_dump(mode="json"),
        "metrics": final,
        "progress": {"epoch": epochs, "epochs": epochs, "cost": None},
    }


def metrics(**curves) -> dict:
    return {"metrics": {name: [{"step": s, "value": v} for s, v in enumerate(values)]
                        for name, values in curves.items()}}  # fmt: skip


def test_only_the_params_that_differ_are_shown_with_final_best_and_the_value_at_a_step():
    jobs = [job("a" * 32, 0.01, {"val_accuracy": 0.7}), job("b" * 32, 0.1, {"val_accuracy": 0.9})]
    histories = [metrics(val_accuracy=[0.5, 0.8, 0.6, None]), metrics(val_accuracy=[0.5, 0.6])]

    first, second = compare(jobs, histories, "val_accuracy", step=2)

    assert first.params == {"training.learning_rate": "0.01"}  # the one param that differs
    assert second.params == {"training.learning_rate": "0.1"}
    assert (first.final, first.best, first.best_step, first.at_step) == (0.7, 0.8, 1, 0.6)
    # the final value is the best, at step `epochs`; step 2 was not logged: the last before it
    assert (second.final, second.best, second.best_step, second.at_step) == (0.9, 0.9, 4, 0.6)


def test_the_cost_is_best_lowest_and_a_run_without_points_has_no_best():
    jobs = [job("a" * 32, 0.01, {"cost": 0.5}), job("b" * 32, 0.1, {"cost": None})]
    histories = [metrics(cost=[0.7, 0.3, 0.4]), metrics()]

    first, second = compare(jobs, histories, "cost", step=None)

    assert (first.best, first.best_step, first.at_step) == (0.3, 1, None)
    assert (second.final, second.best, second.best_step) == (None, None, None)


def test_the_cost_curves_are_drawn_into_a_png_even_for_a_run_without_points(tmp_path):
    jobs = [job("a" * 32, 0.01, {}), job("b" * 32, 0.1, {})]
    path = tmp_path / "curves.png"

    plot_cost_curves(jobs, [metrics(cost=[0.7, 0.3, 0.4]), metrics()], path)

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
