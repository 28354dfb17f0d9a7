"""What the readers of whole arrays share: the .npy reader (scikit-image's faces), magic numbers,
and one way to say that a file could not be read.

Never unpickles: arrays load with ``allow_pickle=False``, and an object array becomes a
DatasetError naming the file, since unpickling an untrusted file runs arbitrary code.
"""

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .dataset import DatasetError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip
# NotImplementedError: zipfile's answer to a member of a zip version or compression it does
# not know (a damaged header can claim any).
NPZ_READ_ERRORS = (
    OSError, ValueError, EOFError, NotImplementedError, zipfile.BadZipFile, zlib.error
)  # fmt: skip
END_OF_CENTRAL_DIRECTORY = b"PK\x05\x06"
END_RECORD_BYTES = 22  # and a comment of at most 65,535 bytes after it


def starts_with(path: Path, magics: tuple[bytes, ...]) -> bool:
    with open(path, "rb") as file:
        head = file.read(max(len(m) for m in magics))
    return any(head.startswith(m) for m in magics)


def unreadable(path: Path, what: str, error: Exception) -> DatasetError:
    # numpy refuses object arrays with a message about allow_pickle; say what it means instead.
    if "allow_pickle" in str(error) or "pickled" in str(error):
        return DatasetError(f"{path}: {what} contains pickled objects, which are never loaded")
    return DatasetError(f"{path}: could not read {what} ({type(error).__name__}: {error})")


def read_npy(path: Path) -> np.ndarray:
    """One array from a .npy file, any shape; never unpickles."""
    if not starts_with(path, (NPY_MAGIC,)):
        raise DatasetError(f"{path}: not a .npy file (no NumPy header)")
    try:
        with open(path, "rb") as file:
            return np.load(file, allow_pickle=False)
    except NPZ_READ_ERRORS as error:
        raise unreadable(path, "the array", error) from error


def zip_entry_count(path: Path) -> int:
    """The number of entries a zip's end record declares, read before zipfile parses (and
    holds in memory) its whole central directory; 65,535 means a ZIP64 archive of more."""
    with open(path, "rb") as file:
        size = file.seek(0, 2)
        file.seek(max(0, size - END_RECORD_BYTES - 65_535))
        tail = file.read()
    at = tail.rfind(END_OF_CENTRAL_DIRECTORY)
    if at < 0 or len(tail) - at < END_RECORD_BYTES:
        raise DatasetError(
            f"{path}: could not read the archive (no end of central directory: truncated, or "
            "not a zip)"
        )
    return struct.unpack("<H", tail[at + 10 : at + 12])[0]
