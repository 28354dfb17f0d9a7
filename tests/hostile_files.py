"""Dataset files made the way an attacker would make them: links and outside storage in HDF5,
compression bombs, headers that lie. Each builder writes small files, streaming what would be
large, so that making a bomb costs the test little memory."""

import io
import struct
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np

MIB = 1024 * 1024
# What a hostile file tries to read out of the server: a line of its environment.
SECRET = b"GRADQ_API_TOKENS=hunter2-the-secret\n"


def zip_of(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def deflate_stream(parts, wbits: int) -> bytes:
    """Compress the byte strings of ``parts`` (an iterable, never held whole)."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, wbits)
    out = [compressor.compress(part) for part in parts]
    return b"".join(out) + compressor.flush()


def zeros(total: int, chunk: int = MIB):
    for start in range(0, total, chunk):
        yield bytes(min(chunk, total - start))


def idx_header(shape: tuple[int, ...], code: int = 0x08) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def gzipped_idx(shape: tuple[int, ...], values: bytes = b"", trailing_zeros: int = 0) -> bytes:
    """A gzipped IDX file: its header, ``values``, then ``trailing_zeros`` bytes of zeros."""
    return deflate_stream([idx_header(shape), values, *zeros(trailing_zeros)], wbits=31)


def idx_pair(folder: Path, images: bytes, labels: list[int], gz: bool = True) -> Path:
    """train-images (the bytes given) and train-labels (uint8 ``labels``) in ``folder``."""
    suffix = ".gz" if gz else ""
    label_bytes = idx_header((len(labels),)) + bytes(labels)
    (folder / f"train-labels-idx1-ubyte{suffix}").write_bytes(
        deflate_stream([label_bytes], 31) if gz else label_bytes
    )
    images_path = folder / f"train-images-idx3-ubyte{suffix}"
    images_path.write_bytes(images)
    return images_path


def png_of_size(width: int, height: int, corrupt_pixels: bool = False) -> bytes:
    """An 8-bit RGB PNG of one colour, its rows compressed as they are made; with
    ``corrupt_pixels``, a valid header followed by pixel data that cannot be decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = bytes(1 + 3 * width)  # filter byte 0, then black pixels
    pixels = b"not zlib" if corrupt_pixels else deflate_stream((row for _ in range(height)), 15)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def course_h5(path: Path, m: int = 4, **overrides) -> Path:
    """A course file of m 2x2 RGB images; ``overrides`` replace datasets by name with a
    callable (file, name) that creates them, e.g. a link."""
    makers = {
        "train_set_x": lambda f, n: f.create_dataset(n, data=np.full((m, 2, 2, 3), 7, np.uint8)),
        "train_set_y": lambda f, n: f.create_dataset(n, data=np.arange(m) % 2),
        "list_classes": lambda f, n: f.create_dataset(n, data=np.array([b"no", b"yes"])),
    }
    with h5py.File(path, "w") as file:
        for name, make in (makers | overrides).items():
            make(file, name)
    return path


def external(target: Path, dtype: str, shape: tuple[int, ...]):
    """A dataset whose bytes are ``target``'s (HDF5 external raw storage)."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return lambda f, n: f.create_dataset(n, shape, dtype, external=[(str(target), 0, size)])


def soft_link(to: str, data: np.ndarray):
    def make(file, name):
        file[to] = data
        file[name] = h5py.SoftLink(f"/{to}")

    return make


def external_link(target: Path, inside: str):
    return lambda f, n: f.__setitem__(n, h5py.ExternalLink(str(target), inside))


def virtual(target: Path, inside: str, shape: tuple[int, ...], dtype: str):
    def make(file, name):
        layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
        layout[:] = h5py.VirtualSource(str(target), inside, shape=shape)
        file.create_virtual_dataset(name, layout)

    return make


def one_element_chunks(shape: tuple[int, ...]):
    """A dataset of ``shape`` never written, in chunks of one value: a tiny file that costs a
    chunk lookup per value to read."""
    return lambda f, n: f.create_dataset(n, shape, "u1", chunks=(1,) * len(shape))


def npy_member(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npy_header_only(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """A .npy header declaring ``shape``, with no data after it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def npz_of(members: dict[str, bytes]) -> bytes:
    return zip_of(members)
