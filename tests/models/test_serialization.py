"""weights.npz and checkpoints: round trips, no pickle, atomic writes."""

import io
import json
import re

import numpy as np
import pytest

from models import Checkpoint, Network, load_weights, save_weights, serialization


def test_weights_round_trip_through_npz_with_the_names_w1_b1(tmp_path):
    net = Network([4, 3, 2], output="softmax", seed=1)
    save_weights(net.params, tmp_path / "weights.npz")
    with np.load(tmp_path / "weights.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["W1", "W2", "b1", "b2"]
    loaded = load_weights(tmp_path / "weights.npz")
    assert list(loaded) == ["W1", "b1", "W2", "b2"]
    for name, value in net.params.items():
        np.testing.assert_array_equal(loaded[name], value)


def test_loading_weights_refuses_files_with_other_arrays(tmp_path):
    np.savez(tmp_path / "other.npz", W1=np.zeros(2), secret=np.zeros(1))
    with pytest.raises(ValueError, match="expected arrays W1, b1"):
        load_weights(tmp_path / "other.npz")


def test_loading_weights_refuses_pickled_arrays(tmp_path):
    np.savez(tmp_path / "pickled.npz", W1=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_weights(tmp_path / "pickled.npz")


def test_checkpoint_round_trips_every_field(tmp_path):
    checkpoint = Checkpoint(
        epoch=40,
        params={"W1": np.arange(6.0).reshape(2, 3), "b1": np.zeros((2, 1))},
        optimizer_state={"t": np.array(7), "m_W1": np.ones((2, 3))},
        rng_state=np.random.default_rng(3).bit_generator.state,
        history={"cost": [0.7, 0.6], "grad_norm.W1": [1.0, 0.5]},
        config={"optimizer": "adam", "batch_size": 16},
        note={"history_file": "h.f64"},
    )
    checkpoint.save(tmp_path / "ckpt.npz")
    loaded = Checkpoint.load(tmp_path / "ckpt.npz")
    assert loaded.epoch == 40
    assert loaded.rng_state == checkpoint.rng_state
    assert {k: v.tolist() for k, v in loaded.history.items()} == checkpoint.history
    assert loaded.config == checkpoint.config
    assert loaded.note == checkpoint.note
    for name in ("W1", "b1"):
        np.testing.assert_array_equal(loaded.params[name], checkpoint.params[name])
    assert int(loaded.optimizer_state["t"]) == 7
    assert list(tmp_path.iterdir()) == [tmp_path / "ckpt.npz"]  # no temporary left behind


def test_a_checkpoint_written_without_its_history_reads_back_without_it():
    checkpoint = Checkpoint(epoch=2, params={"W1": np.ones((1, 2))}, history={"cost": [0.7, 0.6]})
    assert Checkpoint.from_bytes(checkpoint.to_bytes(history=False)).history == {}
    assert len(checkpoint.to_bytes(history=False)) < len(checkpoint.to_bytes())


def test_a_checkpoint_of_an_earlier_gradq_with_its_history_in_json_still_reads():
    buffer = io.BytesIO()
    meta = {"epoch": 2, "rng_state": {}, "history": {"cost": [0.7, 0.6]}, "config": {}}
    np.savez(buffer, **{"params/W1": np.ones((1, 2)), "meta": np.array(json.dumps(meta))})
    loaded = Checkpoint.from_bytes(buffer.getvalue())
    assert loaded.history["cost"].tolist() == [0.7, 0.6] and loaded.note == {}


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def weights_only(data: bytes) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, W1=np.zeros((2, 3)))
    return buffer.getvalue()


def pickled_meta(data: bytes) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array([{"epoch": 1}], dtype=object))
    return buffer.getvalue()


def bare_npy(data: bytes) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    return buffer.getvalue()


def meta_not_an_object(data: bytes) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array("[1, 2]"))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "damage",
    [truncated, weights_only, pickled_meta, bare_npy, meta_not_an_object, lambda data: b"junk"],
)
def test_a_checkpoint_that_cannot_be_read_is_refused_naming_the_file(tmp_path, damage):
    path = tmp_path / "ckpt.npz"
    path.write_bytes(damage(Checkpoint(epoch=1, params={"W1": np.ones((2, 3))}).to_bytes()))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": not a readable checkpoint"):
        Checkpoint.load(path)


def test_saving_weights_refuses_anything_but_named_float_arrays(tmp_path):
    with pytest.raises(ValueError, match=r"not \['W1'\]"):
        save_weights({"W1": np.array([object()])}, tmp_path / "w.npz")
    with pytest.raises(ValueError, match=r"not \['extra'\]"):
        save_weights({"W1": np.ones((1, 1)), "extra": np.ones(1)}, tmp_path / "w.npz")
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_fails_before_the_rename_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "weights.npz"
    save_weights({"W1": np.ones((1, 2)), "b1": np.zeros((1, 1))}, target)
    before = target.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(serialization.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_weights({"W1": np.full((1, 2), 9.0), "b1": np.zeros((1, 1))}, target)
    assert target.read_bytes() == before
    assert list(tmp_path.iterdir()) == [target]
