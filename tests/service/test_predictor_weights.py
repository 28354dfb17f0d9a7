"""The weights a prediction loads are checked before any array is decoded: an archive with a
compressed member, or declaring more bytes than the network's parameters, is refused."""

import io
import zipfile

import numpy as np
import pytest

from service.predictor import ARCHIVE_OVERHEAD_BYTES, _check_archive

PARAMS = {"W1": np.zeros((1, 625), np.float32), "b1": np.zeros((1, 1), np.float32)}
EXPECTED = sum(p.nbytes for p in PARAMS.values())


def npz(save, **arrays) -> bytes:
    out = io.BytesIO()
    save(out, **arrays)
    return out.getvalue()


def test_the_weights_a_job_saves_pass():
    _check_archive(npz(np.savez, **PARAMS), EXPECTED)


def test_a_compressed_member_is_refused_before_it_is_decoded():
    with pytest.raises(ValueError, match="compressed members"):
        _check_archive(npz(np.savez_compressed, **PARAMS), EXPECTED)


def test_members_declaring_more_than_the_parameters_are_refused():
    big = {"W1": np.zeros((1, 625 + ARCHIVE_OVERHEAD_BYTES), np.float32), "b1": PARAMS["b1"]}
    with pytest.raises(ValueError, match="more data than"):
        _check_archive(npz(np.savez, **big), EXPECTED)


def test_bytes_that_are_not_an_archive_are_refused():
    with pytest.raises(zipfile.BadZipFile):
        _check_archive(b"not a zip at all", EXPECTED)
