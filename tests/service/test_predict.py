"""POST /v1/jobs/{id}/predict on a job trained by a real worker call into a real MLflow server:
the labels are those of its weights.npz loaded into a Network, from rows of features or from
images of any size preprocessed as the dataset's were; every bad request is a 4xx naming why."""

import io

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from models import Network, load_dataset, load_weights
from tests.workers.helpers import FACES_LOGREG
from workers.run import run_job

FACES = load_dataset("faces")


@pytest.fixture
def trained(make_client, make_settings, mlflow_server, rows, tmp_path):
    """(the API, the succeeded job's id, its network as weights.npz makes it)."""
    overrides = {"mlflow_tracking_uri": mlflow_server, "broker_url": "", "max_predict_rows": 50}
    client = make_client(**overrides)
    spec = FACES_LOGREG | {"experiment": "predict", "training": {"epochs": 40}}
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    assert run_job(job_id, make_settings(**overrides), rows, "test-worker/1") == "succeeded"
    run_id = client.get(f"/v1/jobs/{job_id}").json()["mlflow_run_id"]
    weights = MlflowClient(mlflow_server).download_artifacts(run_id, "weights.npz", str(tmp_path))
    net = Network([FACES.n_x, 1], output="sigmoid", init="zeros")
    net.params = load_weights(weights)
    return client, job_id, net


def png(pixels: np.ndarray, mode: str = "L") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels, mode).save(out, format="PNG")
    return out.getvalue()


def test_rows_of_features_get_the_labels_and_probabilities_of_the_jobs_weights(trained):
    client, job_id, net = trained
    X = FACES.X[:, :30]  # (625, 30)

    answer = client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": X.T.tolist()})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = net.predict(X)[0].tolist()
    assert body["labels"] == expected
    assert body["predicted"] == [FACES.classes[i] for i in expected]
    assert body["classes"] == list(FACES.classes)
    a = net.forward(X)[0]
    assert np.allclose(np.array(body["probabilities"]), np.stack([1 - a, a], axis=1), atol=1e-6)


def test_images_of_any_size_are_preprocessed_as_the_datasets_were(trained):
    client, job_id, net = trained
    pixels = (FACES.X[:, :3].T.reshape(3, 25, 25) * 255).round().astype(np.uint8)
    large = Image.fromarray(pixels[2]).resize((60, 50)).convert("RGB")  # another size and mode
    files = [("images", (f"{i}.png", png(p), "image/png")) for i, p in enumerate(pixels[:2])]
    files.append(("images", ("large.png", png(np.asarray(large), "RGB"), "image/png")))

    answer = client.post(f"/v1/jobs/{job_id}/predict", files=files)

    assert answer.status_code == 200, answer.text
    # As the dataset's loader does: gray, resized to 25x25 (bilinear), divided by 255.
    shrunk = np.asarray(large.convert("L").resize((25, 25), Image.Resampling.BILINEAR))
    rows = np.vstack([pixels[0].ravel(), pixels[1].ravel(), shrunk.ravel()]) / 255.0
    assert answer.json()["labels"] == net.predict(rows.T)[0].tolist()


def test_the_weights_are_read_once_per_job(trained):
    client, job_id, _ = trained
    body = {"inputs": FACES.X[:, :2].T.tolist()}
    client.post(f"/v1/jobs/{job_id}/predict", json=body)
    cached = client.app.state.predictors._cache[job_id]

    client.post(f"/v1/jobs/{job_id}/predict", json=body)

    assert client.app.state.predictors._cache[job_id] is cached


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"inputs": [[0.5] * 624]}, "inputs.0", "rows of 625 numbers"),
        ({"inputs": [[0.5] * 625, [0.5] * 626]}, "inputs.1", "got 626 values"),
        ({"inputs": [[0.5] * 624 + ["x"]]}, "inputs.0", "a value that is not one"),
        ({"inputs": [[0.5] * 624 + [True]]}, "inputs.0", "a value that is not one"),
        ({"inputs": []}, "inputs", "from 1 to 50 rows"),
        ({"inputs": [[0.5] * 625] * 51}, "inputs", "from 1 to 50 rows"),
        ({"rows": [[0.5] * 625]}, "inputs", "one row an example"),
    ],
)
def test_bad_rows_are_422_naming_the_field_and_the_shape_expected(trained, body, field, reason):
    client, job_id, _ = trained

    answer = client.post(f"/v1/jobs/{job_id}/predict", json=body)

    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == field and reason in error["message"]


def test_a_non_finite_value_is_422(trained):
    client, job_id, _ = trained
    body = '{"inputs": [[' + ", ".join(["0.5"] * 624 + ["NaN"]) + "]]}"

    answer = client.post(
        f"/v1/jobs/{job_id}/predict", content=body, headers={"Content-Type": "application/json"}
    )

    assert answer.status_code == 422 and answer.json()["error"]["field"] == "inputs.0"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("notes.png", b"not an image at all", "notes.png"),
        ("huge.png", None, "over the limit"),
    ],
)
def test_a_file_that_is_not_a_usable_image_is_422_naming_it(trained, name, data, reason):
    client, job_id, _ = trained
    if data is None:  # a header that declares 6000x5000 pixels: refused before decoding
        data = png(np.zeros((5000, 6000), np.uint8))

    answer = client.post(f"/v1/jobs/{job_id}/predict", files=[("images", (name, data))])

    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == "images" and reason in error["message"]


def test_only_a_succeeded_job_predicts_and_from_json_or_images_only(trained):
    client, job_id, _ = trained
    queued = client.post("/v1/jobs", json=FACES_LOGREG).json()["id"]
    body = {"inputs": [[0.5] * 625]}
    text = {"Content-Type": "text/plain"}

    assert client.post(f"/v1/jobs/{queued}/predict", json=body).status_code == 409
    assert client.post(f"/v1/jobs/{'0' * 32}/predict", json=body).status_code == 404
    assert client.post(f"/v1/jobs/{job_id}/predict", content=b"x", headers=text).status_code == 415
