"""File-format readers for real image data: IDX (MNIST family), CIFAR-10 python batches, ``.npz``.

Each reader checks what it reads (magic numbers, sizes, keys, dtypes) and turns any failure into
a :class:`DataFormatError` that names the file, so a truncated download never surfaces as a
numpy traceback. CIFAR pickles are read with an unpickler that only admits the few numpy
objects a batch contains, so a hostile pickle cannot run code.
"""

from __future__ import annotations

import codecs
import gzip
import io
import pickle
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import DataFormatError

__all__ = ["read_cifar_batch", "read_cifar_label_names", "read_idx", "read_npz"]

_REDOWNLOAD = "The file is probably truncated or corrupt: delete it and copy or download it again."

# IDX type codes (third byte of the magic number), big-endian as the format specifies.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    """Whole file content, transparently gunzipped when it starts with the gzip magic 1f 8b."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            fh.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=fh) as gz:
                    return gz.read()
            return fh.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataFormatError(f"{path} is not a readable gzip file ({exc}). {_REDOWNLOAD}") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST / Fashion-MNIST format), raw or gzip-compressed.

    The header is a magic number ``00 00 TT DD`` (``TT`` the element type, ``DD`` the number
    of dimensions) followed by ``DD`` big-endian uint32 sizes, then the data in C order.

    Parameters
    ----------
    path : str or Path
        E.g. ``train-images-idx3-ubyte`` or ``train-images-idx3-ubyte.gz`` (compression is
        detected from the content, not the name).

    Returns
    -------
    ndarray of shape given by the header
        E.g. (60000, 28, 28) uint8 for MNIST training images, (60000,) for labels; native
        byte order, writable.

    Raises
    ------
    DataFormatError
        Bad magic number, unknown type code, or a data size that disagrees with the header.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataFormatError(f"{path} is not an IDX file: its magic number is {raw[:4].hex(' ') or 'empty'}, "
                              f"expected 00 00 <type> <ndim> (e.g. 00 00 08 03 for images). {_REDOWNLOAD}")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise DataFormatError(f"{path}: unknown IDX element type 0x{code:02x}; expected one of "
                              f"{', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)}.")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataFormatError(f"{path}: IDX header declares {ndim} dimensions but the file has only "
                              f"{len(raw)} bytes. {_REDOWNLOAD}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataFormatError(f"{path}: IDX header says shape {dims} ({expected} data bytes) but the file holds "
                              f"{len(raw) - header} data bytes. {_REDOWNLOAD}")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


# ---------------------------------------------------------------------------------------- CIFAR

def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only callables a CIFAR batch pickle needs, under their old and new numpy module paths."""
    reconstruct = np.zeros(1).__reduce__()[0]                    # numpy's ndarray _reconstruct
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]                 # protocol-5 ndarray rebuild
    scalar = np.float64(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): codecs.encode}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _SafeUnpickler(pickle.Unpickler):
    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _load_pickle(path: Path) -> Any:
    raw = _read_bytes(path)
    try:
        return _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # any unpickling failure: corrupt, truncated, or not a CIFAR batch
        raise DataFormatError(f"{path} is not a readable CIFAR-10 python batch ({type(exc).__name__}: {exc}). "
                              f"{_REDOWNLOAD}") from None


def _get(d: dict, key: str) -> Any:
    return d.get(key.encode(), d.get(key))


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch (``data_batch_1`` … ``data_batch_5``, ``test_batch``).

    A batch is a pickled dict with ``data`` (uint8, shape (n, 3072): 1024 red, 1024 green,
    1024 blue values, each a 32×32 row-major image) and ``labels`` (n ints in 0..9).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    x : ndarray of shape (n, 3, 32, 32), uint8
        Channels first, RGB.
    y : ndarray of shape (n,), int64

    Raises
    ------
    DataFormatError
        Not a pickle, a pickle holding other objects, or arrays of the wrong shape or type.
    """
    path = Path(path)
    batch = _load_pickle(path)
    if not isinstance(batch, dict) or _get(batch, "data") is None or _get(batch, "labels") is None:
        keys = sorted(map(str, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise DataFormatError(f"{path}: expected a dict with keys 'data' and 'labels' (a CIFAR-10 python batch), "
                              f"got {keys}.")
    data, labels = np.asarray(_get(batch, "data")), np.asarray(_get(batch, "labels"))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataFormatError(f"{path}: 'data' must be uint8 of shape (n, 3072), got {data.dtype} {data.shape}.")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataFormatError(f"{path}: 'labels' must be {len(data)} integers, got {labels.dtype} {labels.shape}.")
    return data.reshape(-1, 3, 32, 32).copy(), labels.astype(np.int64)


def read_cifar_label_names(path: str | Path) -> list[str] | None:
    """Class names from a CIFAR-10 ``batches.meta`` file, or None if it is absent or unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        meta = _load_pickle(path)
    except DataFormatError:
        return None
    names = _get(meta, "label_names") if isinstance(meta, dict) else None
    if names is None:
        return None
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


# ------------------------------------------------------------------------------------------ npz

def read_npz(path: str | Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Read the named arrays from an ``.npz`` archive (without unpickling anything).

    Parameters
    ----------
    path : str or Path
    keys : sequence of str
        Array names that must be present, e.g. ``("y_train", "y_test")``.

    Returns
    -------
    dict
        ``key -> ndarray`` for each requested key.

    Raises
    ------
    DataFormatError
        Not a zip archive, a missing key (the message lists the keys present), a pickled
        object array, or a damaged member.
    """
    path = Path(path)
    errors = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except errors as exc:
        raise DataFormatError(f"{path} is not a readable .npz archive ({type(exc).__name__}: {exc}). "
                              f"{_REDOWNLOAD}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataFormatError(f"{path} holds a single array; expected an .npz archive with the arrays "
                              f"{', '.join(keys)} (write it with np.savez).")
    with archive:
        missing = [k for k in keys if k not in archive.files]
        if missing:
            raise DataFormatError(f"{path} lacks the arrays {missing}; it holds {sorted(archive.files)}. "
                                  f"Expected {', '.join(keys)} (as written by np.savez).")
        try:
            return {k: archive[k] for k in keys}
        except errors as exc:
            raise DataFormatError(f"{path}: an array in the archive is damaged or pickled "
                                  f"({type(exc).__name__}: {exc}). {_REDOWNLOAD}") from None
