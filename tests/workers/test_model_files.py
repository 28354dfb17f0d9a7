"""The model's files before training (workers/model_files.py write_model_files): a layout saved
once in a process is copied for the next model of that layout, and the copy is the model a
fresh save would make, with its own ids."""

import filecmp
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pytest
import yaml
from mlflow.models import Model

from models import Network, save_weights
from workers import model_files

CLASSES = ("non-face", "face")


@pytest.fixture
def saves(monkeypatch) -> list[Path]:
    """The folders save_pyfunc_model really saved (it still does), with no layout kept before."""
    monkeypatch.setattr(model_files, "_saved", type(model_files._saved)())
    saved, save = [], model_files.save_pyfunc_model

    def counted(path, *args, **kwargs):
        saved.append(path)
        return save(path, *args, **kwargs)

    monkeypatch.setattr(model_files, "save_pyfunc_model", counted)
    return saved


def description(model_id: str, run_id: str) -> Model:
    location = f"mlflow-artifacts:/1/models/{model_id}/artifacts"
    return Model(artifact_path=location, model_uuid=model_id, run_id=run_id, model_id=model_id)


def mlmodel(folder: Path) -> dict:
    return yaml.safe_load((folder / "MLmodel").read_text())


def files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_a_second_model_of_a_layout_is_a_copy_of_the_first_with_its_own_ids(saves, tmp_path):
    net = Network([40, 3, 1], "relu", "sigmoid", "random", seed=1)
    example = np.linspace(0, 1, 40, dtype=np.float32).reshape(1, -1)
    first, second = tmp_path / "first", tmp_path / "second"
    model_files.write_model_files(first, net, CLASSES, description("m-1", "r-1"), example)
    model_files.write_model_files(second, net, CLASSES, description("m-2", "r-2"), example)

    assert saves == [first]  # the second, copied
    assert files(second) == files(first)
    assert model_files.WEIGHTS_IN_MODEL not in files(second)  # sent at the end
    for name in files(first):
        if name != "MLmodel":
            assert filecmp.cmp(first / name, second / name, shallow=False), name
    # MLmodel as a fresh save with the second model's description makes it, but for the time
    # and where save_model found the artifacts (a scratch path, which nothing reads).
    model_files._saved.clear()
    fresh = tmp_path / "fresh"
    model_files.write_model_files(fresh, net, CLASSES, description("m-2", "r-2"), example)
    made, expected = mlmodel(second), mlmodel(fresh)
    assert made["utc_time_created"] > mlmodel(first)["utc_time_created"]
    for kept in (made, expected):
        del kept["utc_time_created"]
        for artifact in kept["flavors"]["python_function"]["artifacts"].values():
            del artifact["uri"]
    assert made == expected
    assert (made["model_id"], made["model_uuid"], made["run_id"]) == ("m-2", "m-2", "r-2")

    # With its weights, the copy loads as a model and predicts as the network does.
    save_weights(net.params, second / model_files.WEIGHTS_IN_MODEL)
    loaded = mlflow.pyfunc.load_model(str(second))
    x = np.random.default_rng(0).random((5, 40), dtype=np.float32)
    answer = loaded.predict(x)
    assert list(answer["label"]) == list(net.predict(x.T).ravel())


@pytest.mark.parametrize("change", ["layout", "classes", "example"])
def test_a_model_of_another_layout_classes_or_example_is_saved_anew(saves, tmp_path, change):
    net = Network([40, 1], output="sigmoid", init="zeros")
    example = np.zeros((1, 40), dtype=np.float32)
    model_files.write_model_files(tmp_path / "a", net, CLASSES, description("m-1", "r"), example)
    other = {
        "layout": (Network([40, 2, 1], "relu", "sigmoid", "he"), CLASSES, example),
        "classes": (net, ("cat", "dog"), example),
        "example": (net, CLASSES, example + 1),
    }[change]
    model_files.write_model_files(tmp_path / "b", *other[:2], description("m-2", "r"), other[2])
    assert saves == [tmp_path / "a", tmp_path / "b"]
    assert mlmodel(tmp_path / "b")["model_id"] == "m-2"


def test_a_process_keeps_the_last_few_layouts_only(saves, tmp_path):
    example = np.zeros((1, 8), dtype=np.float32)
    for width in range(1, model_files.SAVED_LAYOUTS + 2):
        net = Network([8, width, 1], "relu", "sigmoid", "he")
        model_files.write_model_files(tmp_path / f"w{width}", net, CLASSES, None, example)
    assert len(model_files._saved) == model_files.SAVED_LAYOUTS
    net = Network([8, 1, 1], "relu", "sigmoid", "he")  # the first: no longer kept
    model_files.write_model_files(tmp_path / "again", net, CLASSES, None, example)
    assert saves[-1] == tmp_path / "again"
    assert len(saves) == model_files.SAVED_LAYOUTS + 2


def test_the_files_of_a_model_too_large_to_keep_are_saved_each_time(saves, tmp_path, monkeypatch):
    monkeypatch.setattr(model_files, "KEPT_BYTES", 1000)  # the input example alone is larger
    net = Network([400, 1], output="sigmoid", init="zeros")
    example = np.zeros((1, 400), dtype=np.float32)
    for name in ("a", "b"):
        model_files.write_model_files(tmp_path / name, net, CLASSES, None, example)
    assert saves == [tmp_path / "a", tmp_path / "b"]
    assert not model_files._saved
