"""Every malformed file is one clear DatasetError: valid files of each format, with bytes
changed, cut or added by Hypothesis, either load or raise DatasetError, never another exception
(a struct.error, a KeyError from h5py, a zlib.error...), which the API would answer with a 500."""

import gzip
import io
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from models.datasets import DatasetError, DatasetLimits, load_dataset
from tests.hostile_files import MIB, idx_header

LIMITS = DatasetLimits(max_bytes=32 * MIB)
X = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
Y = np.array([0, 1, 1, 0])


def npz_file() -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=X, y=Y, classes=np.array(["a", "b"]))
    return buffer.getvalue()


def h5_file() -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        file.create_dataset("train_set_x", data=X, chunks=(2, 2, 2, 3), compression="gzip")
        file["train_set_y"] = Y
        file["list_classes"] = np.array([b"a", b"b"])
    return buffer.getvalue()


def idx_file() -> bytes:
    return gzip.compress(idx_header((4, 2, 6)) + X.tobytes())


def png_file() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(X[0]).save(buffer, format="PNG")
    return buffer.getvalue()


FORMATS = {"npz": npz_file(), "h5": h5_file(), "idx": idx_file(), "png": png_file()}


def write(kind: str, content: bytes, folder: Path) -> Path:
    """The source load_dataset reads, with ``content`` as the file of that kind."""
    if kind == "npz":
        path = folder / "data.npz"
    elif kind == "h5":
        path = folder / "train_data.h5"
    elif kind == "idx":
        labels = folder / "train-labels-idx1-ubyte"
        labels.write_bytes(idx_header((4,)) + Y.astype(np.uint8).tobytes())
        path = folder / "train-images-idx3-ubyte.gz"
    else:
        for label in "ab":
            (folder / "pets" / label).mkdir(parents=True, exist_ok=True)
            (folder / "pets" / label / "1.png").write_bytes(FORMATS["png"])
        path = folder / "pets" / "a" / "0.png"
    path.write_bytes(content)
    return folder / "pets" if kind == "png" else path


@st.composite
def damaged(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(FORMATS)))
    data = bytearray(FORMATS[kind])
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return kind, bytes(data)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=damaged())
def test_a_damaged_file_loads_or_is_a_dataset_error(tmp_path_factory, case):
    kind, content = case
    source = write(kind, content, tmp_path_factory.mktemp(kind))
    try:
        dataset = load_dataset(source, limits=LIMITS)
    except DatasetError as error:
        assert str(source).split("/")[-1] in str(error) or "pets" in str(error)
    else:
        assert dataset.m > 0 and np.isfinite(dataset.X).all()


def test_a_zip_whose_local_and_central_headers_disagree_is_a_dataset_error(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", FORMATS["npz"][:10])
    path = tmp_path / "bad.npz"
    path.write_bytes(buffer.getvalue().replace(b"x.npy", b"y.npy", 1))  # the local header only
    with pytest.raises(DatasetError):
        load_dataset(path, limits=LIMITS)


def test_a_member_claiming_a_zip_version_python_cannot_read_is_a_dataset_error(tmp_path):
    # zipfile raises NotImplementedError for it (a damaged header found by the test above).
    data = bytearray(npz_file())
    central = data.index(b"PK\x01\x02")  # the first member's central directory entry
    data[central + 6 : central + 8] = (109).to_bytes(2, "little")  # "version needed": 10.9
    path = tmp_path / "data.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"data\.npz"):
        load_dataset(path, limits=LIMITS)
