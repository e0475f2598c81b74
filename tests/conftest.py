"""The one conftest of the suite: thread limits for a small shared machine, and where the shared real data are.

``tests/`` mirrors ``src/nnboundary/`` (tests/svm/, tests/experiments/, tests/train/, ...); each folder is a
package so that two test files may share a basename.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

torch.set_num_threads(1)  # the test machine is small and shared: tiny tensors, extra threads only contend
threadpool_limits(1)      # likewise for BLAS


def _shared_data_dir() -> Path:
    """``$NNBOUNDARY_SHARED_DATA``, ``<repo>/../shared/data`` or ``/work/shared/data`` (the first that exists)."""
    repo = Path(__file__).resolve().parents[1]
    env = os.environ.get("NNBOUNDARY_SHARED_DATA")
    for cand in ([Path(env)] if env else []) + [repo.parent / "shared" / "data", Path("/work/shared/data")]:
        if cand.is_dir():
            return cand
    return repo.parent / "shared" / "data"


#: Folder with the shared mnist.npz and cifar10_airplane_bird.npz (tests that need them skip without it).
SHARED_DATA: Path = _shared_data_dir()
