"""A layout's saved model, copied for each job: saved once, each copy naming its own model."""

from pathlib import Path

import yaml
from mlflow.models import Model

from workers.model_template import MAX_TEMPLATES, ModelTemplates


def fake_save(saved: list):
    def save(path: Path) -> None:
        saved.append(path)
        path.mkdir()
        (path / "code.py").write_text("x = 1\n")
        Model(artifact_path="template", signature=None).save(path / "MLmodel")

    return save


def ids(n: int) -> Model:
    return Model(artifact_path=f"mlflow-artifacts:/1/models/m-{n}/artifacts",
                 model_uuid=f"m-{n}", model_id=f"m-{n}", run_id=f"r-{n}")  # fmt: skip


def test_a_layout_is_saved_once_and_each_copy_names_its_own_model(tmp_path):
    (tmp_path / "templates").mkdir()
    templates, saved = ModelTemplates("gradq-test-", tmp_path / "templates"), []
    for n in (1, 2):
        templates.copy(("layout", 1), fake_save(saved), tmp_path / f"model{n}", ids(n))

    assert len(saved) == 1
    for n in (1, 2):
        mlmodel = yaml.safe_load((tmp_path / f"model{n}" / "MLmodel").read_text())
        assert (mlmodel["model_id"], mlmodel["model_uuid"], mlmodel["run_id"]) == (
            f"m-{n}",
            f"m-{n}",
            f"r-{n}",
        )
        assert mlmodel["artifact_path"] == f"mlflow-artifacts:/1/models/m-{n}/artifacts"
        assert (tmp_path / f"model{n}" / "code.py").read_text() == "x = 1\n"


def test_the_least_recently_used_layout_is_dropped_past_the_limit(tmp_path):
    (tmp_path / "templates").mkdir()
    templates, saved = ModelTemplates("gradq-test-", tmp_path / "templates"), []
    for layout in range(MAX_TEMPLATES + 1):
        templates.copy(("layout", layout), fake_save(saved), tmp_path / f"m{layout}", ids(layout))
    assert not saved[0].exists() and saved[-1].exists()  # the first, unused since, is gone
    templates.copy(("layout", 0), fake_save(saved), tmp_path / "again", ids(0))
    assert len(saved) == MAX_TEMPLATES + 2  # saved anew
