"""load_dataset against hostile files: each is refused with a DatasetError naming the file and
the reason, from its headers, before its data is read (or, where the header is honest, while
reading it a block at a time): no outside file read, no bomb decompressed whole."""

import os
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from models.datasets import DatasetError, DatasetLimits, inspect_dataset, load_dataset
from tests.hostile_files import (
    MIB,
    SECRET,
    course_h5,
    external,
    external_link,
    gzipped_idx,
    idx_pair,
    npy_header_only,
    npy_member,
    npz_of,
    one_element_chunks,
    png_of_size,
    soft_link,
    virtual,
    zip_of,
)

SMALL = DatasetLimits(max_bytes=16 * MIB)
ROOMY = DatasetLimits(max_bytes=256 * MIB)  # room for a labels bomb read whole


@pytest.fixture
def secret_file(tmp_path) -> Path:
    path = tmp_path / "outside" / "environ"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def refused(source, match: str, limits: DatasetLimits = SMALL, named: Path | None = None) -> str:
    with pytest.raises(DatasetError, match=match) as caught:
        load_dataset(source, limits=limits)
    assert str(named or source) in str(caught.value)
    return str(caught.value)


def peak_python_bytes(call) -> int:
    """The peak of memory allocated through Python and NumPy while ``call()`` runs."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- HDF5: nothing outside the file is read ----------------------------------------------------


def test_h5_class_names_stored_in_an_outside_file_are_refused_unread(tmp_path, secret_file):
    path = course_h5(
        tmp_path / "train_x.h5", list_classes=external(secret_file, "S6", (len(SECRET) // 6,))
    )
    message = refused(path, "'list_classes' keeps its data in an outside file")
    assert "hunter2" not in message


def test_h5_labels_stored_in_proc_self_environ_are_refused_unread(tmp_path):
    # The attack of the issue: labels read one byte at a time from the process's environment.
    environ = Path(f"/proc/{os.getpid()}/environ")
    path = course_h5(tmp_path / "train_x.h5", train_set_y=external(environ, "u1", (4,)))
    refused(path, "'train_set_y' keeps its data in an outside file")


def test_h5_soft_link_is_refused(tmp_path):
    path = course_h5(tmp_path / "train_x.h5", train_set_y=soft_link("hidden", np.arange(4) % 2))
    refused(path, "'hidden' is a group|is a SoftLink")


def test_h5_external_link_to_another_file_is_refused(tmp_path, secret_file):
    other = course_h5(tmp_path / "other.h5")
    path = course_h5(tmp_path / "train_x.h5", train_set_y=external_link(other, "/train_set_y"))
    refused(path, "'train_set_y' is a ExternalLink; only data stored in the file itself")


def test_h5_virtual_dataset_mapped_from_another_file_is_refused(tmp_path):
    other = course_h5(tmp_path / "other.h5")
    path = course_h5(tmp_path / "train_x.h5", train_set_y=virtual(other, "train_set_y", (4,), "i8"))
    refused(path, "'train_set_y' is a virtual dataset")


def test_h5_group_at_the_root_is_refused(tmp_path):
    path = course_h5(tmp_path / "train_x.h5", extra=lambda f, n: f.create_group(n))
    refused(path, "'extra' is a group")


def test_h5_of_one_value_chunks_is_refused_before_a_chunk_is_read(tmp_path):
    # 1.7 KB on disk; reading it calls the chunk index and the filters ~200,000 times.
    path = course_h5(tmp_path / "train_x.h5", train_set_x=one_element_chunks((4, 64, 64, 3)))
    assert path.stat().st_size < 16 * 1024
    refused(path, "split in 49152 chunks, over the limit of 16384")


def test_h5_with_a_filter_gradq_does_not_read_is_refused(tmp_path):
    def scaleoffset(file, name):
        file.create_dataset(name, data=np.arange(4) % 2, scaleoffset=0)

    path = course_h5(tmp_path / "train_x.h5", train_set_y=scaleoffset)
    refused(path, "uses HDF5 filters")


def test_h5_declaring_more_than_the_limit_is_refused_from_its_shape(tmp_path):
    def huge(file, name):  # never written: the file stays small, its shape says 4 GB
        file.create_dataset(name, (4096, 1024, 1024), "u1", chunks=(64, 1024, 1024))

    path = course_h5(tmp_path / "train_x.h5", m=4096, train_set_x=huge)
    refused(path, "would take 16 GiB once decoded, over the limit of 16 MiB")


def test_h5_class_names_that_are_not_utf8_are_refused(tmp_path):
    names = lambda f, n: f.create_dataset(n, data=np.array([b"\xff\xfe", b"ok"]))  # noqa: E731
    path = course_h5(tmp_path / "train_x.h5", list_classes=names)
    refused(path, "class names must be UTF-8")


# --- IDX: gzip is decompressed as it is read, within the header's size -------------------------


def test_gzipped_idx_declaring_more_than_the_limit_is_refused_before_decompressing(tmp_path):
    bomb = gzipped_idx((60_000, 100, 100), trailing_zeros=64 * MIB)  # ~64 KB compressed
    path = idx_pair(tmp_path, bomb, [0, 1] * 30_000)
    assert path.stat().st_size < MIB

    peak = peak_python_bytes(lambda: refused(path, "once decoded, over the limit"))

    assert peak < 4 * MIB


def test_gzipped_idx_with_a_bomb_after_an_honest_header_stops_at_the_header_size(tmp_path):
    bomb = gzipped_idx((4, 2, 2), bytes(16), trailing_zeros=256 * MIB)
    path = idx_pair(tmp_path, bomb, [0, 1, 0, 1])

    peak = peak_python_bytes(lambda: refused(path, "IDX data has trailing bytes"))

    assert peak < 16 * MIB  # the old reader held all 256 MiB


def test_idx_with_too_many_dimensions_is_refused(tmp_path):
    path = idx_pair(tmp_path, gzipped_idx((1,) * 9), [0, 1])
    refused(path, "9 dimensions")


def test_idx_labels_claiming_a_billion_classes_are_refused_before_naming_them(tmp_path):
    from tests.hostile_files import idx_header

    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(idx_header((2, 1, 1)) + bytes(2))
    labels = idx_header((2,), code=0x0C) + (0).to_bytes(4, "big") + (10**9).to_bytes(4, "big")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(labels)
    refused(
        images,
        "label 1000000000 means 1000000001 classes, over the limit of 1000",
        named=tmp_path / "train-labels-idx1-ubyte",
    )


# --- .npz: members and headers checked before any array is read --------------------------------


def test_npz_with_more_members_than_the_limit_is_refused(tmp_path):
    members = {f"extra{i}.npy": npy_member(np.zeros(1)) for i in range(20)}
    members |= {"x.npy": npy_member(np.zeros((2, 2))), "y.npy": npy_member(np.arange(2))}
    path = tmp_path / "many.npz"
    path.write_bytes(npz_of(members))
    refused(path, "22 members, over the limit of 16")


def test_npz_member_that_is_not_npy_is_refused(tmp_path):
    path = tmp_path / "raw.npz"
    path.write_bytes(npz_of({"x.npy": b"raw bytes, no header", "y.npy": npy_member(np.arange(2))}))
    refused(path, "could not read array 'x'")


def test_npz_header_claiming_two_to_the_forty_values_is_refused_unread(tmp_path):
    path = tmp_path / "huge.npz"
    members = {"x.npy": npy_header_only((2**20, 2**20)), "y.npy": npy_member(np.arange(2))}
    path.write_bytes(npz_of(members))
    refused(path, "array 'x' holds 0 bytes but its header")


def test_npz_deflated_bomb_under_an_honest_header_is_refused_from_its_size(tmp_path):
    x = np.zeros((64 * 1024, 256), dtype=np.uint8)  # 16 MiB of zeros, 16 KiB deflated
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, x=x, y=np.arange(len(x)) % 2)
    del x

    peak = peak_python_bytes(lambda: refused(path, r"would take 6\d\.\d MiB once decoded"))

    assert peak < 4 * MIB


def test_npz_labels_that_are_a_bomb_of_their_own_are_refused_before_they_are_read(tmp_path):
    path = tmp_path / "labels.npz"
    np.savez_compressed(path, x=np.zeros((4, 2), np.uint8), y=np.zeros(8 * MIB, np.int64))

    peak = peak_python_bytes(lambda: refused(path, "4 images but 8388608 labels", ROOMY))

    assert peak < 4 * MIB  # the labels are 64 MiB


def test_gzipped_idx_labels_that_are_a_bomb_of_their_own_are_refused_unread(tmp_path):
    from tests.hostile_files import idx_header

    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_header((2, 1, 1)) + bytes(2))
    labels = gzipped_idx((64 * MIB,), trailing_zeros=64 * MIB)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(labels)

    peak = peak_python_bytes(
        lambda: refused(tmp_path / "train-images-idx3-ubyte", "2 images but 67108864", ROOMY)
    )

    assert peak < 4 * MIB


def test_h5_labels_declaring_more_than_the_images_are_refused_unread(tmp_path):
    def huge(file, name):
        file.create_dataset(name, (2**28,), "i8", chunks=(2**20,))  # 2 GiB, unwritten

    path = course_h5(tmp_path / "train_x.h5", train_set_y=huge)
    refused(path, "4 images but 268435456", DatasetLimits(max_bytes=4 * 1024**3))


def test_the_decoded_size_counts_the_training_dtype_not_the_stored_bytes(tmp_path):
    path = tmp_path / "bytes.npz"
    np.savez(path, x=np.zeros((1024, 1024), dtype=np.uint8), y=np.arange(1024) % 2)
    limits = DatasetLimits(max_bytes=3 * MIB)  # 1 MiB stored, 4 MiB as float32
    refused(path, "once decoded", limits)
    assert load_dataset(path, limits=DatasetLimits(max_bytes=16 * MIB)).X.dtype == np.float32


def test_npz_of_examples_without_values_is_refused(tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path, x=np.zeros((4, 3, 0), np.uint8), y=np.arange(4) % 2)
    refused(path, "at least one value")


def test_npz_encrypted_or_bzip2_member_is_refused(tmp_path):
    path = tmp_path / "bz.npz"
    members = {"x.npy": npy_member(np.zeros((2, 2))), "y.npy": npy_member(np.arange(2))}
    path.write_bytes(zip_of(members, compression=zipfile.ZIP_BZIP2))
    refused(path, "compressed with a method other than deflate")


def test_npz_class_names_that_are_not_utf8_are_refused(tmp_path):
    path = tmp_path / "names.npz"
    np.savez(path, x=np.zeros((2, 2)), y=np.arange(2), classes=np.array([b"\xff", b"b"]))
    refused(path, "class names must be UTF-8")


@pytest.mark.parametrize("name", ["a\x00b", "tab\there", "", "   ", "x" * 200])
def test_class_names_must_be_short_printable_text(tmp_path, name):
    path = tmp_path / "names.npz"
    np.savez(path, x=np.zeros((2, 2)), y=np.arange(2), classes=np.array([name, "other"]))
    refused(path, "class name|over the limits")


# --- folders of images: every header read before any pixel is decoded --------------------------


def image_folder(root: Path, images: dict[str, bytes]) -> Path:
    for relative, content in images.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    return root


@pytest.mark.parametrize("order", ["small first", "large first"])
def test_one_image_over_the_pixel_limit_is_refused_whichever_comes_first(tmp_path, order):
    small, large = png_of_size(4, 4), png_of_size(6000, 5000, corrupt_pixels=True)
    first, second = (small, large) if order == "small first" else (large, small)
    root = image_folder(tmp_path / "pets", {"a/0.png": first, "b/0.png": second})
    # The large image's pixels cannot even be decoded: refused from its header alone.
    refused(root, "6000x5000 pixels are over the limit of 25,000,000 per image")


def test_images_under_the_pixel_limit_whose_sum_is_over_the_budget_are_refused(tmp_path):
    image = png_of_size(2000, 1000, corrupt_pixels=True)  # 6 MB each to decode
    root = image_folder(tmp_path / "pets", {f"{c}/{i}.png": image for c in "ab" for i in range(2)})
    refused(root, "decoding its images would take 22.9 MiB once decoded")


def test_a_symbolic_link_in_an_image_folder_is_refused(tmp_path, secret_file):
    root = image_folder(tmp_path / "pets", {"a/0.png": png_of_size(2, 2)})
    (root / "b").mkdir()
    (root / "b" / "0.png").symlink_to(secret_file)
    refused(root, "a symbolic link")


def test_a_linked_class_folder_is_refused(tmp_path):
    root = image_folder(tmp_path / "pets", {"a/0.png": png_of_size(2, 2)})
    (root / "b").symlink_to(tmp_path)
    refused(root, "a symbolic link")


def test_a_file_named_png_that_is_another_image_format_is_not_decoded(tmp_path):
    from PIL import Image

    root = tmp_path / "pets"
    for label in "ab":
        (root / label).mkdir(parents=True)
        Image.new("RGB", (2, 2)).save(root / label / "0.png", format="TIFF")
    refused(root, "corrupt or unreadable image")


# --- the whole dataset ------------------------------------------------------------------------


def test_inspect_reads_shapes_and_labels_and_digest_matches_the_loaded_sha256(tmp_path):
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (50, 3, 3), dtype=np.uint8), y=np.arange(50) % 3)
    stored = inspect_dataset(path, limits=SMALL)

    assert (stored.n_x, stored.m, stored.classes) == (9, 50, ("0", "1", "2"))
    assert stored.digest(SMALL) == load_dataset(path).sha256()
