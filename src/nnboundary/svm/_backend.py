"""Features that live on an accelerator: the passes over all points run where the features are.

``MaxMarginClassifier.fit`` accepts any array of the Python array API (a torch tensor on a CUDA device, a CuPy
array, ...; found with ``array_api_compat``, so this package imports no array library of its own). The solver's
state stays small and on the host (the working set, the restricted QP, the certificate); what touches all n points
runs in the features' own namespace and device, in float64:

* the whole-data check of every working-set round, ``H @ Wᵀ + b`` (O(n·K·d) flops), of which only the
  (n, K) score table comes back to the host;
* the Gram matrix of the working-set points for the dual method (O(m_s²·d));
* with torch on an accelerator, also the dual method's p×p matrix and its Cholesky factor (O(p³) per interior-point
  iteration, the cost that grows with the active set): only vectors of length p cross to the host.

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

    @property
    def factors(self) -> bool:
        """Whether the dual method's dense matrix and its factor live here too: torch tensors on an accelerator
        (``torch.linalg``; the array API has no triangular solve, so other libraries keep them on the host, and a
        CPU tensor is faster with the host's LAPACK: measured 17.8 s against 12.3 s on K=100, d=128, n=3,000)."""
        return _compat().is_torch_array(self.H) and getattr(self.device, "type", "cpu") != "cpu"

    @property
    def relative_speed(self) -> float:
        """Assumed float64 dense throughput of the device relative to the host's, for choosing between the primal
        method (host) and the dual one (here) and for the long-QP warning: 100 on CUDA (a data-centre GPU does tens
        of TFLOP/s in float64, a few-core host tens of GFLOP/s; conservative), 1 elsewhere."""
        return 100.0 if getattr(self.device, "type", None) == "cuda" else 1.0

    def free_bytes(self) -> float:
        """Bytes free on the device now (CUDA: ``torch.cuda.mem_get_info``; elsewhere the host's)."""
        if getattr(self.device, "type", None) == "cuda":
            return float(self.xp.cuda.mem_get_info(self.device)[0])
        from nnboundary.svm._memory import available_bytes
        return float(available_bytes())

    def _index(self, idx: np.ndarray):
        return self.xp.asarray(np.asarray(idx, dtype=np.int64), device=self.device)

    def pair_matrix(self, samples: np.ndarray, us: np.ndarray, coefficients: np.ndarray):
        """The dual matrix Q = G[us][:, us] ∘ (c cᵀ) on the device, shape (p, p), with G the Gram matrix of
        ``H[samples]``, ``us`` (p,) each unit's index into ``samples`` and ``coefficients`` (p, K) the units' class
        coefficients. Memory on the device: p² + m_s² doubles while it is built."""
        rows = self.xp.take(self.H, self._index(samples), axis=0)
        where = self._index(us)
        G = self.xp.take(self.xp.take(rows @ rows.T, where, axis=0), where, axis=1)
        c = self._put(coefficients)
        return G * (c @ c.T)

    def factor_solver(self, Q, diagonal: np.ndarray, same_sample: np.ndarray | None = None,
                      omega: np.ndarray | None = None):
        """A function B ↦ M⁻¹B (NumPy in, NumPy out) for M = Q + diag(``diagonal``) [+ Ωᵢ on every pair of units
        of the same sample ``same_sample`` (p,)], factored by Cholesky on the device; a tiny diagonal shift when M is
        numerically singular (as ``_dual._factor``); None when even that fails. Memory: two p×p matrices.

        The array API has no Cholesky solve, so this takes torch's own ``linalg.cholesky_ex`` and
        ``cholesky_solve`` from the features' namespace, and tensor methods (``clone``, ``diagonal``): ``factors``
        is true for torch only, and this package still imports no array library of its own."""
        xp = self.xp
        M = Q.clone()
        M.diagonal().add_(self._put(diagonal))
        if omega is not None:
            where = self._index(same_sample)
            rows = xp.take(self._put(omega), where, axis=0)
            M += (where[:, None] == where[None, :]) * rows[:, None]
        L = self._cholesky(M)
        if L is None:
            base = M.diagonal().clone()
            for relative in (1e-14, 1e-12, 1e-10):
                M.diagonal().copy_(base + relative * max(float(base.max()), 1.0))
                L = self._cholesky(M)
                if L is not None:
                    break
            else:
                return None
        del M

        def solve(B: np.ndarray) -> np.ndarray:
            out = xp.cholesky_solve(xp.reshape(self._put(B), (B.shape[0], -1)), L)
            return to_host(out).reshape(B.shape)
        return solve

    def _cholesky(self, M):
        L, info = self.xp.linalg.cholesky_ex(M)
        return L if int(info) == 0 and bool(self.xp.all(self.xp.isfinite(L))) else None

    def matvec(self, Q, v: np.ndarray) -> np.ndarray:
        """``Q @ v`` on the device, returned as NumPy."""
        return to_host(Q @ self._put(v))
