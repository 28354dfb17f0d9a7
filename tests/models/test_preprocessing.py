"""Preprocessing: worked examples with hand-computed numbers, then properties over shapes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.datasets import flatten, one_hot, scale_pixels, standardize, train_val_split


def assert_row_stored(X: np.ndarray) -> None:
    assert X.T.flags.c_contiguous


def row_stored(examples: list[list[float]]) -> np.ndarray:
    """X (n_x, m) from a list of m examples of n_x features, stored one example per row."""
    return np.array(examples, dtype=np.float64).T


def numbered_examples(n_x: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """X (n_x, m) whose column i is all i, Y (1, m) = i mod 3: each example carries its index."""
    rows = np.repeat(np.arange(m, dtype=np.float64)[:, None], n_x, axis=1)
    return rows.T, (np.arange(m) % 3).reshape(1, m)


# --- flatten ------------------------------------------------------------------------------------


def test_flatten_turns_each_image_into_one_column_in_row_major_pixel_order():
    images = np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]])  # (m=2, h=2, w=2)
    X = flatten(images)
    np.testing.assert_array_equal(X, [[1, 5], [2, 6], [3, 7], [4, 8]])
    assert_row_stored(X)


def test_flatten_keeps_colour_channels_of_a_pixel_together():
    images = np.arange(12).reshape(1, 2, 2, 3)  # (m=1, h=2, w=2, c=3)
    np.testing.assert_array_equal(flatten(images)[:3, 0], [0, 1, 2])


# --- scale_pixels -------------------------------------------------------------------------------


def test_scale_pixels_divides_by_the_maximum_into_unit_range():
    X = np.array([[0, 51], [255, 102]], dtype=np.uint8)
    scaled = scale_pixels(X, 255)
    np.testing.assert_allclose(scaled, [[0.0, 0.2], [1.0, 0.4]], rtol=1e-6)
    assert scaled.dtype == np.float32


def test_scale_pixels_keeps_the_row_stored_layout():
    assert_row_stored(scale_pixels(row_stored([[0, 16], [8, 4], [2, 1]]), 16))


def test_scale_pixels_refuses_values_above_the_maximum():
    with pytest.raises(ValueError, match=r"must lie in \[0, 16\]"):
        scale_pixels(np.array([[0, 17]]), 16)


def test_scale_pixels_refuses_a_maximum_that_is_not_positive():
    with pytest.raises(ValueError, match="max_value must be positive"):
        scale_pixels(np.array([[0, 1]]), 0)


# --- standardize --------------------------------------------------------------------------------


def test_standardize_worked_example_with_a_constant_feature():
    X = row_stored([[1, 2], [3, 2], [5, 2]])  # feature 0: 1, 3, 5; feature 1: always 2
    X_std, mean, std = standardize(X)
    # feature 0: mean 3, population std sqrt(8/3); feature 1: mean 2, std 0 used as 1
    np.testing.assert_allclose(mean, [[3.0], [2.0]])
    np.testing.assert_allclose(std, [[np.sqrt(8 / 3)], [1.0]])
    s = np.sqrt(3 / 8)
    np.testing.assert_allclose(X_std, [[-2 * s, 0, 2 * s], [0, 0, 0]])
    assert_row_stored(X_std)


def test_standardize_applies_given_statistics_instead_of_computing_them():
    X = row_stored([[10.0], [20.0]])  # one feature, two examples
    X_std, mean, std = standardize(X, mean=np.array([[10.0]]), std=np.array([[5.0]]))
    np.testing.assert_allclose(X_std, [[0.0, 2.0]])
    assert (mean.item(), std.item()) == (10.0, 5.0)


def test_standardize_treats_a_given_std_of_zero_as_one():
    X_std, _, std = standardize(row_stored([[4.0], [6.0]]), np.array([[1.0]]), np.array([[0.0]]))
    np.testing.assert_allclose(X_std, [[3.0, 5.0]])
    assert std.item() == 1.0


def test_standardize_keeps_float32_data_float32():
    X_std, mean, std = standardize(np.ones((2, 3), dtype=np.float32))
    assert X_std.dtype == mean.dtype == std.dtype == np.float32


def test_standardize_refuses_statistics_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"mean must be \(2, 1\)"):
        standardize(np.zeros((2, 3)), mean=np.zeros((1, 2)))


# --- one_hot ------------------------------------------------------------------------------------


def test_one_hot_worked_example():
    encoded = one_hot(np.array([[2, 0, 1, 2]]), 3)
    np.testing.assert_array_equal(encoded, [[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]])
    assert encoded.dtype == np.float32
    assert_row_stored(encoded)


def test_one_hot_refuses_a_class_index_beyond_k():
    with pytest.raises(ValueError, match=r"0\.\.2"):
        one_hot(np.array([[0, 3]]), 3)


def test_one_hot_refuses_labels_that_are_not_a_single_row():
    with pytest.raises(ValueError, match=r"Y must be \(1, m\)"):
        one_hot(np.array([0, 1]), 2)


# --- train_val_split ----------------------------------------------------------------------------


def test_split_with_the_same_seed_holds_out_the_same_examples():
    X, Y = numbered_examples(3, 50)
    first, second = train_val_split(X, Y, 0.2, seed=7), train_val_split(X, Y, 0.2, seed=7)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_split_with_another_seed_holds_out_other_examples():
    X, Y = numbered_examples(3, 50)
    _, _, X_val_7, _ = train_val_split(X, Y, 0.2, seed=7)
    _, _, X_val_8, _ = train_val_split(X, Y, 0.2, seed=8)
    assert not np.array_equal(X_val_7, X_val_8)


def test_split_is_disjoint_and_complete_with_labels_following_their_examples():
    X, Y = numbered_examples(2, 20)
    X_train, Y_train, X_val, Y_val = train_val_split(X, Y, 0.25, seed=0)
    train_ids, val_ids = X_train[0].astype(int), X_val[0].astype(int)
    assert len(val_ids) == 5
    assert sorted([*train_ids, *val_ids]) == list(range(20))
    np.testing.assert_array_equal(Y_train[0], train_ids % 3)
    np.testing.assert_array_equal(Y_val[0], val_ids % 3)


def test_split_keeps_every_part_row_stored():
    X, Y = numbered_examples(4, 30)
    for part in train_val_split(X, Y, 0.3, seed=1):
        assert_row_stored(part)


def test_split_fraction_zero_gives_an_empty_validation_set():
    X, Y = numbered_examples(4, 10)
    X_train, Y_train, X_val, Y_val = train_val_split(X, Y, 0.0, seed=0)
    assert X_val.shape == (4, 0) and Y_val.shape == (1, 0)
    np.testing.assert_array_equal(X_train, X)
    np.testing.assert_array_equal(Y_train, Y)


def test_split_splits_one_hot_labels_along_examples_too():
    X, Y = numbered_examples(2, 12)
    Y_hot = one_hot(Y, 3)
    _, Y_train, X_val, Y_val = train_val_split(X, Y_hot, 0.5, seed=3)
    assert Y_train.shape == (3, 6) and Y_val.shape == (3, 6)
    np.testing.assert_array_equal(Y_val.argmax(axis=0), X_val[0].astype(int) % 3)


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5])
def test_split_refuses_a_fraction_outside_zero_to_one(fraction):
    X, Y = numbered_examples(2, 10)
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\)"):
        train_val_split(X, Y, fraction, seed=0)


def test_split_refuses_labels_for_a_different_number_of_examples():
    X, _ = numbered_examples(2, 10)
    with pytest.raises(ValueError, match="must share m"):
        train_val_split(X, np.zeros((1, 9), dtype=int), 0.5, seed=0)


# --- properties over shapes ---------------------------------------------------------------------

dims = st.integers(min_value=1, max_value=6)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(0, 6), image=st.lists(dims, min_size=1, max_size=3))
def test_flatten_property_each_column_is_one_raveled_image(m, image):
    images = np.arange(m * int(np.prod(image)), dtype=np.float32).reshape(m, *image)
    X = flatten(images)
    assert X.shape == (int(np.prod(image)), m)
    assert_row_stored(X)
    for i in range(m):
        np.testing.assert_array_equal(X[:, i], images[i].ravel())


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 8), data=st.data())
def test_one_hot_property_each_column_has_a_single_one_at_its_label(k, data):
    labels = data.draw(st.lists(st.integers(0, k - 1), max_size=20))
    Y = np.array(labels, dtype=np.int64).reshape(1, -1)
    encoded = one_hot(Y, k)
    assert encoded.shape == (k, len(labels))
    np.testing.assert_array_equal(encoded.sum(axis=0), np.ones(len(labels)))
    np.testing.assert_array_equal(encoded.argmax(axis=0), labels if labels else np.empty(0))


@settings(max_examples=80, deadline=None)
@given(
    n_x=dims,
    m=st.integers(1, 40),
    fraction=st.floats(0, 0.99),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_property_parts_partition_the_examples_in_row_stored_layout(n_x, m, fraction, seed):
    X, Y = numbered_examples(n_x, m)
    X_train, Y_train, X_val, Y_val = train_val_split(X, Y, fraction, seed)
    assert X_train.shape[0] == X_val.shape[0] == n_x
    assert X_train.shape[1] + X_val.shape[1] == m and X_train.shape[1] >= 1
    assert Y_train.shape == (1, X_train.shape[1]) and Y_val.shape == (1, X_val.shape[1])
    ids = sorted([*X_train[0].astype(int), *X_val[0].astype(int)])
    assert ids == list(range(m))
    for part in (X_train, Y_train, X_val, Y_val):
        assert_row_stored(part)
