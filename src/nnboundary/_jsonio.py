"""Writing results: JSON-safe conversion and atomic file writes, shared by every layer that saves files."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np


def to_jsonable(x: Any, default: Callable[[Any], Any] = repr) -> Any:
    """Plain JSON types: NaN/inf -> None, numpy scalars/arrays -> Python, paths -> str, other objects -> ``default``."""
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v, default) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v, default) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist(), default)
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, Path):
        return str(x)
    if x is None or isinstance(x, str):
        return x
    return default(x)


def atomic_write(path: Path, write: Callable[[Any], Any], binary: bool = False) -> Path:
    """Call ``write(fh)`` on a temp file next to ``path``, fsync it, then ``os.replace`` it into place.

    A reader never sees a half-written file, and a failure leaves the old file (if any) and no temp file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented, strict JSON (see :func:`to_jsonable`), atomically."""
    return atomic_write(path, lambda fh: fh.write(json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"))
