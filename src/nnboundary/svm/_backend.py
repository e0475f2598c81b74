"""Features that live on an accelerator: the passes over all points run where the features are.

``MaxMarginClassifier.fit`` accepts any array of the Python array API (a torch tensor on a CUDA device, a CuPy
array, ...; found with ``array_api_compat``, so this package imports no array library of its own). The solver's
state stays small and on the host (the working set, the restricted QP, the certificate); what touches all n points
runs in the features' own namespace and device, in float64:

* the whole-data check of every working-set round, ``H @ Wᵀ + b`` (O(n·K·d) flops), of which only the
  (n, K) score table comes back to the host;
* the Gram matrix of the working-set points for the dual method (O(m_s²·d)).

A host copy of the features is kept for the first-order seed (liblinear runs on the CPU) and for the restricted
QPs' row gathers, so host memory holds the features once, as for a NumPy input.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DeviceFeatures", "is_device_array", "to_host"]


def _compat():
    import array_api_compat  # a dependency of nnboundary; imported here so NumPy-only fits never pay for it
    return array_api_compat


def is_device_array(X) -> bool:
    """True for an array-API array that is not a NumPy array (a torch tensor, a CuPy array, ...)."""
    if isinstance(X, np.ndarray) or not hasattr(X, "__dlpack__"):
        return False
    return _compat().is_array_api_obj(X)


def to_host(X) -> np.ndarray:
    """A NumPy copy of an array-API array (through the CPU and DLPack)."""
    compat = _compat()
    return np.from_dlpack(compat.to_device(X, "cpu")) if not compat.is_numpy_array(X) else np.asarray(X)


class DeviceFeatures:
    """The solver's (normalised) features ``H`` (n, d) as a float64 array on the device of ``like``."""

    def __init__(self, H: np.ndarray, like):
        compat = _compat()
        self.xp = compat.array_namespace(like)
        self.device = compat.device(like)
        self.H = self.xp.asarray(np.ascontiguousarray(H), dtype=self.xp.float64, device=self.device)

    def _put(self, A: np.ndarray):
        return self.xp.asarray(np.ascontiguousarray(A), dtype=self.xp.float64, device=self.device)

    def scores(self, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``H @ Wᵀ + b`` on the device, shape (n, n_blocks), returned as NumPy."""
        return to_host(self.H @ self._put(W).T + self._put(b))

    def gram(self, samples: np.ndarray) -> np.ndarray:
        """``H[samples] @ H[samples]ᵀ`` on the device, shape (m_s, m_s), returned as NumPy."""
        rows = self.xp.take(self.H, self.xp.asarray(samples, device=self.device), axis=0)
        return to_host(rows @ rows.T)
