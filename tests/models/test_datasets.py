"""load_dataset and Dataset: every source, its layout, and every kind of bad data it refuses."""

import gzip
import io
import re
import struct
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from models.datasets import (
    BUILTIN_DATASETS,
    Dataset,
    DatasetError,
    MissingDependencyError,
    load_dataset,
)
from models.datasets.builtin import load_faces


def assert_row_stored(X: np.ndarray) -> None:
    assert X.T.flags.c_contiguous


def named(path: Path, problem: str) -> str:
    """A match pattern: the message names the file, then states the problem."""
    return re.escape(str(path)) + ".*" + problem


def assert_refused(path: Path, problem: str) -> None:
    """Loading `path` raises a DatasetError that names the file, then `problem`."""
    with pytest.raises(DatasetError, match=named(path, problem)):
        load_dataset(path)


# --- fixture builders ---------------------------------------------------------------------------


def save_image(path: Path, color, size=(4, 3), mode="RGB") -> Path:
    """A solid image; size is Pillow's (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def image_folder(root: Path, counts: dict[str, int], size=(4, 3), mode="RGB") -> Path:
    for class_index, (name, count) in enumerate(counts.items()):
        for i in range(count):
            color = (10 * class_index + i) if mode == "L" else (class_index, i, 51)
            save_image(root / name / f"{i}.png", color, size, mode)
    return root


IDX_CODES = {np.dtype("u1"): 0x08, np.dtype(">i2"): 0x0B, np.dtype(">f4"): 0x0D}


def write_idx(path: Path, array: np.ndarray, dtype="u1") -> Path:
    """An IDX file of ``dtype`` values (uint8 by default); gzipped when the name ends in .gz."""
    array = np.asarray(array, dtype=dtype)
    code = IDX_CODES[array.dtype]
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.tobytes()
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def write_mnist_pair(folder: Path, prefix: str, images: np.ndarray, labels, gz=False) -> Path:
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.asarray(labels))
    return write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)


def write_course_h5(path: Path, split: str, x: np.ndarray, y, classes=(b"non-cat", b"cat")):
    with h5py.File(path, "w") as file:
        file[f"{split}_set_x"] = x
        file[f"{split}_set_y"] = np.asarray(y)
        if classes is not None:
            file["list_classes"] = np.array(classes, dtype="S")
    return path


def random_pixels(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


# --- built-ins ----------------------------------------------------------------------------------


def test_builtin_names_are_digits_and_faces():
    assert BUILTIN_DATASETS == ("digits", "faces")


def test_digits_has_1797_8x8_examples_of_ten_classes_scaled_to_unit_range():
    ds = load_dataset("digits")
    assert (ds.X.shape, ds.Y.shape, ds.image_shape) == ((64, 1797), (1, 1797), (8, 8))
    assert ds.classes == tuple("0123456789")
    assert ds.X.dtype == np.float32 and ds.Y.dtype == np.int64
    assert ds.X.min() == 0.0 and ds.X.max() == 1.0
    assert set(np.unique(ds.Y)) == set(range(10))
    assert ds.X_test is None and ds.Y_test is None
    assert_row_stored(ds.X)


def test_faces_has_100_faces_labelled_1_then_100_non_faces_at_25x25():
    ds = load_dataset("faces")
    assert (ds.X.shape, ds.Y.shape, ds.image_shape) == ((625, 200), (1, 200), (25, 25))
    assert ds.classes == ("non-face", "face")
    assert (ds.Y[0, :100] == 1).all() and (ds.Y[0, 100:] == 0).all()
    assert ds.X.min() >= 0.0 and ds.X.max() <= 1.0
    assert_row_stored(ds.X)


def test_dtype_float64_gives_float64_features():
    assert load_dataset("faces", dtype="float64").X.dtype == np.float64


def test_non_floating_dtype_is_refused():
    with pytest.raises(ValueError, match="floating"):
        load_dataset("faces", dtype="int32")


def test_unknown_name_lists_the_builtin_names():
    with pytest.raises(DatasetError, match=r"no-such-set.*not a built-in dataset.*digits, faces"):
        load_dataset("no-such-set")


def test_image_options_are_refused_for_sources_that_are_not_image_folders():
    with pytest.raises(ValueError, match="only to folders of images"):
        load_dataset("digits", image_size=(4, 4))


@pytest.mark.parametrize(
    ("name", "modules"),
    [("digits", ["sklearn", "sklearn.datasets"]), ("faces", ["skimage"])],
)
def test_a_builtin_without_its_library_says_which_extra_to_install(name, modules, monkeypatch):
    for module in modules:  # None in sys.modules makes the import fail, even if done before
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'gradq[datasets]'")):
        load_dataset(name)


def test_importing_models_loads_numpy_and_the_standard_library_only():
    # The optional readers (Pillow, h5py, scikit-learn, scikit-image) are imported when used.
    code = (
        "import sys, numpy\n"
        "before = set(sys.modules)\n"
        "import models\n"
        "top = {name.split('.')[0] for name in set(sys.modules) - before}\n"
        "top -= set(sys.stdlib_module_names) | {'numpy', 'models'}\n"
        "print(sorted(n for n in top if not n.startswith(('_cython', 'cython_runtime'))))"
    )  # numpy.random's compiled modules bring Cython's runtime modules
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


def test_pickled_npy_behind_faces_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "lfw_subset.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match=named(path, "contains pickled objects")):
        load_faces(np.dtype("float32"), path)


# --- Dataset ------------------------------------------------------------------------------------


def small_dataset(X=None) -> Dataset:
    X = np.arange(6, dtype=np.float32).reshape(3, 2) if X is None else X
    return Dataset("small", X, np.array([[0, 1]]), ("a", "b"), (3,))


def test_dataset_reports_n_x_m_and_num_classes():
    ds = small_dataset()
    assert (ds.n_x, ds.m, ds.num_classes) == (3, 2, 2)


def test_dataset_stores_a_column_major_x_as_rows_without_changing_values():
    X = np.arange(6, dtype=np.float32).reshape(3, 2)  # C-contiguous (n_x, m): the wrong storage
    ds = small_dataset(X)
    assert_row_stored(ds.X)
    np.testing.assert_array_equal(ds.X, X)


def test_dataset_refuses_labels_whose_length_differs_from_m():
    with pytest.raises(DatasetError, match=r"small: Y must be \(1, 2\)"):
        Dataset("small", np.zeros((3, 2)), np.array([[0, 1, 1]]), ("a", "b"), (3,))


def test_dataset_refuses_an_image_shape_that_does_not_hold_n_x():
    with pytest.raises(DatasetError, match="image_shape"):
        Dataset("small", np.zeros((3, 2)), np.array([[0, 1]]), ("a", "b"), (2, 2))


def test_sha256_is_stable_across_loads_and_changes_with_one_pixel():
    first, second = load_dataset("faces"), load_dataset("faces")
    assert first.sha256() == second.sha256()
    X = first.X.copy()
    X[0, 0] += 0.5
    changed = Dataset("faces", X, first.Y, first.classes, first.image_shape)
    assert changed.sha256() != first.sha256()


def test_sha256_changes_with_class_names():
    ds = small_dataset()
    renamed = Dataset("small", ds.X, ds.Y, ("a", "c"), (3,))
    assert renamed.sha256() != ds.sha256()


# --- folders of images --------------------------------------------------------------------------


def test_image_folder_classes_are_sorted_subfolder_names_and_labels_follow_them(tmp_path):
    root = image_folder(tmp_path / "pets", {"zebra": 2, "cat": 3})
    ds = load_dataset(root)
    assert ds.classes == ("cat", "zebra")
    assert ds.Y.tolist() == [[0, 0, 0, 1, 1]]
    assert ds.name == "pets"


def test_image_folder_pixels_are_uint8_over_255_in_rgb_rows(tmp_path):
    save_image(tmp_path / "a" / "0.png", (51, 102, 255), size=(2, 1))
    save_image(tmp_path / "b" / "0.png", (0, 0, 0), size=(2, 1))
    ds = load_dataset(tmp_path)
    assert ds.image_shape == (1, 2, 3)
    np.testing.assert_allclose(ds.X[:, 0], [0.2, 0.4, 1.0, 0.2, 0.4, 1.0], rtol=1e-6)
    assert_row_stored(ds.X)


def test_image_folder_resizes_to_image_size_given_as_height_width(tmp_path):
    root = image_folder(tmp_path, {"a": 1, "b": 1}, size=(4, 3))
    ds = load_dataset(root, image_size=(5, 7))
    assert ds.image_shape == (5, 7, 3) and ds.X.shape == (105, 2)


def test_image_folder_resizes_every_image_to_the_first_images_size_by_default(tmp_path):
    save_image(tmp_path / "a" / "0.png", (1, 2, 3), size=(6, 2))
    save_image(tmp_path / "b" / "0.png", (1, 2, 3), size=(3, 9))
    assert load_dataset(tmp_path).image_shape == (2, 6, 3)


def test_image_folder_of_grayscale_images_gives_two_dimensional_image_shape(tmp_path):
    root = image_folder(tmp_path, {"a": 2, "b": 2}, size=(3, 3), mode="L")
    ds = load_dataset(root)
    assert ds.image_shape == (3, 3) and ds.n_x == 9


def test_image_folder_mode_converts_rgb_to_grayscale_on_request(tmp_path):
    root = image_folder(tmp_path, {"a": 1, "b": 1}, size=(3, 3))
    assert load_dataset(root, mode="L").image_shape == (3, 3)


def test_image_folder_normalises_palette_and_rgba_first_images_to_rgb(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.new("RGB", (2, 2), (200, 10, 10)).convert("P").save(tmp_path / "a" / "0.png")
    Image.new("RGBA", (2, 2), (1, 2, 3, 4)).save(tmp_path / "b" / "0.png")
    ds = load_dataset(tmp_path)
    assert ds.image_shape == (2, 2, 3)


def test_image_folder_reads_jpeg_bmp_and_gif(tmp_path):
    save_image(tmp_path / "a" / "0.jpg", (9, 9, 9))
    save_image(tmp_path / "a" / "1.bmp", (9, 9, 9))
    save_image(tmp_path / "b" / "0.gif", (9, 9, 9))
    save_image(tmp_path / "b" / "1.JPEG", (9, 9, 9))
    assert load_dataset(tmp_path).m == 4


def test_image_folder_skips_hidden_entries_and_files_that_are_not_images(tmp_path):
    root = image_folder(tmp_path, {"a": 1, "b": 1})
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / ".DS_Store").write_bytes(b"\0junk")
    (root / ".cache").mkdir()
    (root / "README.md").write_text("about")
    ds = load_dataset(root)
    assert (ds.m, ds.classes) == (2, ("a", "b"))


def test_image_folder_refuses_an_unknown_mode(tmp_path):
    root = image_folder(tmp_path, {"a": 1, "b": 1})
    with pytest.raises(ValueError, match="mode must be one of"):
        load_dataset(root, mode="CMYK")


def test_truncated_image_is_refused_naming_the_file(tmp_path):
    root = image_folder(tmp_path, {"a": 1, "b": 1}, size=(64, 64))
    buffer = io.BytesIO()
    Image.fromarray(random_pixels((64, 64, 3))).save(buffer, format="PNG")
    broken = root / "b" / "1.png"
    broken.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(DatasetError, match=named(broken, "corrupt or unreadable image")):
        load_dataset(root)


def test_text_file_named_png_is_refused_naming_the_file(tmp_path):
    root = image_folder(tmp_path, {"a": 1, "b": 1})
    fake = root / "a" / "fake.png"
    fake.write_text("I am not a picture")
    with pytest.raises(DatasetError, match=named(fake, "corrupt or unreadable image")):
        load_dataset(root)


def test_empty_class_folder_is_refused_naming_the_folder(tmp_path):
    root = image_folder(tmp_path, {"a": 1, "b": 1})
    (root / "c").mkdir()
    with pytest.raises(DatasetError, match=named(root / "c", "empty class folder")):
        load_dataset(root)


def test_folder_with_a_single_class_is_refused(tmp_path):
    root = image_folder(tmp_path, {"only": 3})
    assert_refused(root, "a single class")


def test_folder_without_class_subfolders_is_refused(tmp_path):
    save_image(tmp_path / "loose.png", (1, 1, 1))
    assert_refused(tmp_path, "no class subfolders")


def test_missing_pillow_says_which_extra_to_install(tmp_path, monkeypatch):
    root = image_folder(tmp_path, {"a": 1, "b": 1})
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'gradq[datasets]'")):
        load_dataset(root)
    assert issubclass(MissingDependencyError, ImportError)


# --- .npz ---------------------------------------------------------------------------------------


def test_npz_of_uint8_images_is_scaled_by_255_with_given_class_names(tmp_path):
    x = random_pixels((5, 2, 3))
    path = tmp_path / "set.npz"
    np.savez(path, x=x, y=np.array([0, 1, 2, 1, 0]), classes=np.array(["r", "g", "b"]))
    ds = load_dataset(path)
    assert ds.classes == ("r", "g", "b") and ds.image_shape == (2, 3)
    np.testing.assert_allclose(ds.X, x.reshape(5, 6).T / 255, rtol=1e-6)
    assert ds.Y.tolist() == [[0, 1, 2, 1, 0]]
    assert_row_stored(ds.X)


def test_npz_of_float_vectors_keeps_values_and_names_classes_by_index(tmp_path):
    x = np.array([[0.5, -2.0], [3.0, 0.25], [1.0, 1.0]])
    path = tmp_path / "vectors.npz"
    np.savez(path, x=x, y=np.array([2, 0, 1]))
    ds = load_dataset(path, dtype="float64")
    assert ds.classes == ("0", "1", "2") and ds.image_shape == (2,)
    np.testing.assert_array_equal(ds.X, x.T)


def test_npz_with_x_test_and_y_test_fills_the_test_split(tmp_path):
    path = tmp_path / "split.npz"
    np.savez(
        path,
        x=random_pixels((4, 3)),
        y=np.array([0, 1, 0, 1]),
        x_test=random_pixels((2, 3)),
        y_test=np.array([1, 0]),
    )
    ds = load_dataset(path)
    assert ds.X_test.shape == (3, 2) and ds.Y_test.tolist() == [[1, 0]]
    assert_row_stored(ds.X_test)


def test_npz_with_pickled_objects_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, x=np.array([{"evil": 1}, None], dtype=object), y=np.array([0, 1]))
    assert_refused(path, "contains pickled objects")


def test_garbage_named_npz_is_refused_as_not_a_zip(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"\x00\x01 this is not a zip archive at all")
    assert_refused(path, "not an .npz archive")


def test_truncated_npz_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "cut.npz"
    np.savez(path, x=random_pixels((50, 8, 8)), y=np.arange(50) % 2)
    path.write_bytes(path.read_bytes()[:1500])
    assert_refused(path, "could not read")


def test_npz_without_x_or_y_lists_the_arrays_it_found(tmp_path):
    path = tmp_path / "keys.npz"
    np.savez(path, images=random_pixels((2, 3)), y=np.array([0, 1]))
    assert_refused(path, r"missing array\(s\) \['x'\].*'images'")


def test_npz_with_more_images_than_labels_is_refused(tmp_path):
    path = tmp_path / "counts.npz"
    np.savez(path, x=random_pixels((3, 4)), y=np.array([0, 1]))
    assert_refused(path, "3 images but 2 labels")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_npz_with_non_finite_values_is_refused(tmp_path, bad):
    x = np.zeros((2, 3))
    x[1, 2] = bad
    path = tmp_path / "nan.npz"
    np.savez(path, x=x, y=np.array([0, 1]))
    assert_refused(path, "non-finite")


def test_npz_of_float64_values_beyond_float32s_range_is_refused_for_float32(tmp_path):
    path = tmp_path / "huge.npz"
    np.savez(path, x=np.array([[1e39, 0.0], [0.5, 0.5]]), y=np.array([0, 1]))
    assert_refused(path, "non-finite .*beyond float32's range")
    assert load_dataset(path, dtype="float64").X[0, 0] == 1e39


def test_npz_label_beyond_the_class_names_is_refused(tmp_path):
    path = tmp_path / "range.npz"
    np.savez(path, x=random_pixels((3, 2)), y=np.array([0, 1, 2]), classes=np.array(["a", "b"]))
    assert_refused(path, "label 2 is out of range for 2 classes")


def test_npz_negative_label_is_refused(tmp_path):
    path = tmp_path / "negative.npz"
    np.savez(path, x=random_pixels((3, 2)), y=np.array([0, -1, 1]))
    assert_refused(path, "label -1 is out of range")


def test_npz_float_labels_are_refused(tmp_path):
    path = tmp_path / "float_labels.npz"
    np.savez(path, x=random_pixels((2, 2)), y=np.array([0.0, 1.0]))
    assert_refused(path, "labels have dtype float64")


def test_npz_without_examples_is_refused(tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path, x=np.zeros((0, 2), np.uint8), y=np.zeros(0, dtype=int))
    assert_refused(path, "no examples")


def test_npz_whose_labels_are_all_one_class_is_refused(tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, x=random_pixels((3, 2)), y=np.zeros(3, dtype=int))
    assert_refused(path, "a single class")


def one_class_npz(folder: Path) -> tuple[Path, Path]:
    path = folder / "ones.npz"
    np.savez(path, x=random_pixels((3, 2)), y=np.ones(3, dtype=int))
    return path, path


def one_class_h5(folder: Path) -> tuple[Path, Path]:
    path = write_course_h5(folder / "train_x.h5", "train", random_pixels((3, 2, 2, 3)), [1, 1, 1])
    return path, path


def one_class_idx(folder: Path) -> tuple[Path, Path]:
    images = write_mnist_pair(folder, "train", random_pixels((3, 2, 2)), [5, 5, 5])
    return images, folder / "train-labels-idx1-ubyte"


@pytest.mark.parametrize("make", [one_class_npz, one_class_h5, one_class_idx])
def test_labels_of_a_single_class_are_refused_though_more_classes_are_named(tmp_path, make):
    # The class names (labels 0..max, or the file's list) count two or more; the examples don't.
    source, named_file = make(tmp_path)
    with pytest.raises(DatasetError, match=named(named_file, "a single class")):
        load_dataset(source)


def test_npz_of_wide_integer_pixels_is_refused_rather_than_guessing_a_scale(tmp_path):
    path = tmp_path / "int64.npz"
    np.savez(path, x=np.array([[0, 300], [5, 6]]), y=np.array([0, 1]))
    assert_refused(path, "dtype int64; expected uint8")


# --- the course's .h5 ---------------------------------------------------------------------------


def test_course_h5_loads_train_and_the_test_file_beside_it(tmp_path):
    x_train, x_test = random_pixels((6, 4, 4, 3), seed=1), random_pixels((2, 4, 4, 3), seed=2)
    train = write_course_h5(tmp_path / "train_catvnoncat.h5", "train", x_train, [0, 1, 1, 0, 1, 0])
    write_course_h5(tmp_path / "test_catvnoncat.h5", "test", x_test, [1, 0])
    ds = load_dataset(train)
    assert ds.classes == ("non-cat", "cat") and ds.image_shape == (4, 4, 3)
    assert ds.X.shape == (48, 6) and ds.Y.tolist() == [[0, 1, 1, 0, 1, 0]]
    np.testing.assert_allclose(ds.X_test, x_test.reshape(2, -1).T / 255, rtol=1e-6)
    assert ds.Y_test.tolist() == [[1, 0]]
    assert_row_stored(ds.X)
    assert_row_stored(ds.X_test)


def test_course_h5_without_a_test_file_has_no_test_split(tmp_path):
    train = write_course_h5(tmp_path / "train_x.h5", "train", random_pixels((2, 2, 2, 3)), [0, 1])
    ds = load_dataset(train)
    assert ds.X_test is None and ds.Y_test is None


def test_zip_named_h5_is_refused_as_not_hdf5(tmp_path):
    path = tmp_path / "train_fake.h5"
    np.savez(path.with_suffix(".npz"), x=np.zeros(2))
    path.write_bytes(path.with_suffix(".npz").read_bytes())
    assert_refused(path, "not an HDF5 file")


def test_truncated_h5_is_refused_naming_the_file(tmp_path):
    path = write_course_h5(
        tmp_path / "train_cut.h5", "train", random_pixels((40, 8, 8, 3)), [0, 1] * 20
    )
    path.write_bytes(path.read_bytes()[:3000])
    assert_refused(path, "HDF5")


def test_h5_without_the_course_datasets_lists_what_it_found(tmp_path):
    path = tmp_path / "train_other.h5"
    with h5py.File(path, "w") as file:
        file["pixels"] = np.zeros((2, 3))
    assert_refused(path, "train_set_x.*found.*'pixels'")


def test_h5_without_list_classes_names_classes_by_index(tmp_path):
    x = random_pixels((3, 2, 2, 3))
    path = write_course_h5(tmp_path / "train_n.h5", "train", x, [2, 0, 1], classes=None)
    ds = load_dataset(path)
    assert ds.classes == ("0", "1", "2") and ds.Y.tolist() == [[2, 0, 1]]


def test_h5_of_float_images_with_a_nan_is_refused(tmp_path):
    x = np.full((2, 2, 2, 3), 0.5)
    x[1, 0, 1, 2] = np.nan
    path = write_course_h5(tmp_path / "train_f.h5", "train", x, [0, 1])
    assert_refused(path, "non-finite")


def test_h5_with_fewer_labels_than_images_is_refused(tmp_path):
    path = write_course_h5(tmp_path / "train_n.h5", "train", random_pixels((3, 2, 2, 3)), [0, 1])
    assert_refused(path, "3 images but 2 labels")


def test_h5_test_label_beyond_the_class_names_is_refused_naming_the_test_file(tmp_path):
    train = write_course_h5(tmp_path / "train_r.h5", "train", random_pixels((2, 2, 2, 3)), [0, 1])
    test = write_course_h5(tmp_path / "test_r.h5", "test", random_pixels((2, 2, 2, 3)), [0, 5])
    with pytest.raises(DatasetError, match=named(test, "label 5 is out of range for 2 classes")):
        load_dataset(train)


def test_missing_h5py_says_which_extra_to_install(tmp_path, monkeypatch):
    path = write_course_h5(tmp_path / "train_d.h5", "train", random_pixels((2, 2, 2, 3)), [0, 1])
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'gradq[datasets]'")):
        load_dataset(path)


# --- MNIST IDX ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
def test_idx_images_load_with_labels_beside_and_the_t10k_pair_as_test(tmp_path, gz):
    images = random_pixels((5, 3, 2))
    train = write_mnist_pair(tmp_path, "train", images, [0, 9, 3, 3, 1], gz=gz)
    write_mnist_pair(tmp_path, "t10k", random_pixels((2, 3, 2)), [4, 2], gz=gz)
    ds = load_dataset(train)
    assert ds.classes == tuple("0123456789") and ds.image_shape == (3, 2)
    np.testing.assert_allclose(ds.X, images.reshape(5, 6).T / 255, rtol=1e-6)
    assert ds.Y.tolist() == [[0, 9, 3, 3, 1]] and ds.Y_test.tolist() == [[4, 2]]
    assert_row_stored(ds.X)
    assert_row_stored(ds.X_test)


def test_idx_test_file_alone_has_no_test_split(tmp_path):
    t10k = write_mnist_pair(tmp_path, "t10k", random_pixels((2, 3, 3)), [0, 1])
    ds = load_dataset(t10k)
    assert ds.m == 2 and ds.X_test is None


def test_folder_of_idx_files_loads_the_training_pair(tmp_path):
    write_mnist_pair(tmp_path, "train", random_pixels((4, 2, 2)), [0, 1, 1, 0], gz=True)
    write_mnist_pair(tmp_path, "t10k", random_pixels((3, 2, 2)), [1, 1, 0], gz=True)
    ds = load_dataset(tmp_path)
    assert (ds.m, ds.X_test.shape[1]) == (4, 3)


def test_idx_of_float_images_keeps_their_values(tmp_path):
    images = np.array([[[0.25, -1.5]], [[2.0, 0.5]]])  # (2, 1, 2)
    write_idx(tmp_path / "train-labels-idx1-ubyte", [1, 0])
    path = write_idx(tmp_path / "train-images-idx3-ubyte", images, ">f4")
    ds = load_dataset(path, dtype="float64")
    np.testing.assert_array_equal(ds.X, images.reshape(2, 2).T)


def test_idx_of_float_images_with_a_nan_is_refused(tmp_path):
    write_idx(tmp_path / "train-labels-idx1-ubyte", [1, 0])
    path = write_idx(tmp_path / "train-images-idx3-ubyte", [[[0.5, np.nan]], [[1, 0]]], ">f4")
    assert_refused(path, "non-finite")


def test_idx_of_wide_integer_images_is_refused_rather_than_guessing_a_scale(tmp_path):
    write_idx(tmp_path / "train-labels-idx1-ubyte", [1, 0])
    path = write_idx(tmp_path / "train-images-idx3-ubyte", [[[300, 2]], [[1, 0]]], ">i2")
    assert_refused(path, "dtype int16; expected uint8")


def test_idx_without_examples_is_refused(tmp_path):
    write_mnist_pair(tmp_path, "train", np.zeros((0, 2, 2)), np.zeros(0))
    with pytest.raises(DatasetError, match=named(tmp_path / "train-labels-idx1-ubyte", "no ex")):
        load_dataset(tmp_path / "train-images-idx3-ubyte")


def test_truncated_idx_data_is_refused_naming_the_file(tmp_path):
    train = write_mnist_pair(tmp_path, "train", random_pixels((4, 3, 3)), [0, 1, 0, 1])
    train.write_bytes(train.read_bytes()[:-5])
    assert_refused(train, "truncated.*needs 36 bytes, found 31")


def test_truncated_idx_header_is_refused(tmp_path):
    train = write_mnist_pair(tmp_path, "train", random_pixels((4, 3, 3)), [0, 1, 0, 1])
    train.write_bytes(train.read_bytes()[:9])
    assert_refused(train, "truncated IDX header")


def test_truncated_gzip_idx_is_refused_naming_the_file(tmp_path):
    train = write_mnist_pair(tmp_path, "train", random_pixels((40, 9, 9)), [0, 1] * 20, gz=True)
    train.write_bytes(train.read_bytes()[:-30])
    assert_refused(train, "corrupt or truncated gzip")


def test_file_with_a_bad_idx_magic_number_is_refused(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"PNG? no, just text pretending to be IDX")
    assert_refused(path, "not an IDX file")


def test_idx_images_without_their_labels_file_are_refused(tmp_path):
    images = write_idx(tmp_path / "train-images-idx3-ubyte", random_pixels((2, 2, 2)))
    assert_refused(images, "labels file train-labels-idx1-ubyte")


def test_idx_images_and_labels_of_different_counts_are_refused(tmp_path):
    train = write_mnist_pair(tmp_path, "train", random_pixels((3, 2, 2)), [0, 1])
    assert_refused(train, "3 images but 2 labels")


def test_file_of_an_unsupported_kind_is_refused(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,3\n")
    assert_refused(path, "unsupported source")
