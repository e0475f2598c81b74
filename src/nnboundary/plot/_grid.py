"""Private helpers shared by the plot modules: windows, grids, input checks, point subsampling, colours,
figure creation and atomic saving.

Nothing here imports matplotlib at module level; the functions that need it import it when called, so
``import nnboundary.plot`` stays cheap.

Notation: ``H (N, 2)`` points (features or inputs), ``y (N,)`` labels in ``0..K-1``, a window is
``(xmin, xmax, ymin, ymax)`` and a grid of resolution ``R`` has ``R * R`` points ``G (R*R, 2)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from nnboundary._jsonio import atomic_write

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

Window = tuple[float, float, float, float]

#: Above this many points a scatter shows a seeded random subset (see :func:`display_subset`).
MAX_DISPLAY_POINTS = 20_000

_PROJECT_HINT = (
    "Project to 2-D first (e.g. onto the plane spanned by the NN and SVM directions), or use a network "
    "whose last hidden layer has 2 units."
)


# --------------------------------------------------------------------------------------- windows, grids
def auto_window(points: np.ndarray, margin: float = 0.1) -> Window:
    """Axis-aligned window around 2-D points, padded by a fraction of the data span.

    Parameters
    ----------
    points : ndarray of shape (N, 2)
        Points to enclose (features or inputs). Non-finite rows are an error.
    margin : float, default=0.1
        Padding on each side, as a fraction of the span along that axis. A degenerate axis (all points
        share one coordinate, e.g. a dead ReLU unit) gets a span of ``max(|value|, 1)`` instead of 0.

    Returns
    -------
    window : tuple of 4 floats
        ``(xmin, xmax, ymin, ymax)`` with ``xmin < xmax`` and ``ymin < ymax``.
    """
    P = check_points_2d(points, "points")  # (N, 2)
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}.")
    lo, hi = P.min(axis=0), P.max(axis=0)  # (2,) each
    span = hi - lo
    degenerate = span <= 1e-12 * np.maximum(np.abs(lo), np.abs(hi))  # True also when span == 0
    span = np.where(degenerate, np.maximum(np.abs(lo), 1.0), span)
    center = (lo + hi) / 2
    half = span * (0.5 + margin)
    return (float(center[0] - half[0]), float(center[0] + half[0]),
            float(center[1] - half[1]), float(center[1] + half[1]))


def check_window(window: Sequence[float]) -> Window:
    """Validate ``(xmin, xmax, ymin, ymax)`` and return it as a tuple of floats."""
    try:
        w = tuple(float(v) for v in window)
    except (TypeError, ValueError):
        raise TypeError(f"window must be 4 numbers (xmin, xmax, ymin, ymax), got {window!r}.") from None
    if len(w) != 4 or not all(np.isfinite(w)):
        raise ValueError(f"window must be 4 finite numbers (xmin, xmax, ymin, ymax), got {window!r}.")
    if not (w[0] < w[1] and w[2] < w[3]):
        raise ValueError(f"window must satisfy xmin < xmax and ymin < ymax, got {w}. "
                         "Pass window=None to choose it from the data.")
    return w  # type: ignore[return-value]


def make_grid(window: Sequence[float], resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regular grid over a window.

    Parameters
    ----------
    window : (xmin, xmax, ymin, ymax)
    resolution : int
        Number of grid points R along each axis (>= 2).

    Returns
    -------
    xx, yy : ndarray of shape (R, R)
        Meshgrid (``"xy"`` indexing): ``xx[i, j]`` is the j-th x value, ``yy[i, j]`` the i-th y value.
    G : ndarray of shape (R*R, 2)
        The grid points, row-major: ``G = np.c_[xx.ravel(), yy.ravel()]``.
    """
    xmin, xmax, ymin, ymax = check_window(window)
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}.")
    xs = np.linspace(xmin, xmax, int(resolution))  # (R,)
    ys = np.linspace(ymin, ymax, int(resolution))  # (R,)
    xx, yy = np.meshgrid(xs, ys)  # (R, R) each
    G = np.c_[xx.ravel(), yy.ravel()]  # (R*R, 2)
    return xx, yy, G


# --------------------------------------------------------------------------------------- input checks
def check_points_2d(points: np.ndarray, name: str = "H") -> np.ndarray:
    """Return ``points`` as a float64 array of shape (N, 2); raise a ValueError saying what to do if not."""
    P = np.asarray(points, dtype=np.float64)
    if P.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (N, 2), got shape {P.shape}.")
    if P.shape[1] != 2:
        raise ValueError(f"Plots draw 2-D points, but {name} has D={P.shape[1]} columns. {_PROJECT_HINT}")
    if P.shape[0] == 0:
        raise ValueError(f"{name} is empty; pass at least one point.")
    if not np.all(np.isfinite(P)):
        bad = int((~np.isfinite(P)).any(axis=1).sum())
        raise ValueError(f"{name} has {bad} rows with NaN or inf; drop them (or fix the features) first.")
    return P


def check_labels(y: np.ndarray, n: int, name: str = "y") -> np.ndarray:
    """Return ``y`` as int64 of shape (n,), with integer labels >= 0."""
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the points, got {arr.shape}.")
    if arr.dtype.kind not in "biuf" or (arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0)):
        raise ValueError(f"{name} must hold integer class labels 0..K-1, got dtype {arr.dtype}. "
                         "Encode labels first, e.g. np.unique(y, return_inverse=True)[1].")
    out = arr.astype(np.int64)
    if out.size and out.min() < 0:
        raise ValueError(f"{name} must hold labels 0..K-1, found {out.min()}. Encode labels first.")
    return out


def check_support(support: np.ndarray | None, n: int) -> np.ndarray | None:
    """Return support-vector indices (n_sv,) from indices or a boolean mask of shape (n,), or None."""
    if support is None:
        return None
    s = np.asarray(support)
    if s.dtype == bool:
        if s.shape != (n,):
            raise ValueError(f"A boolean support mask must have shape ({n},), got {s.shape}.")
        return np.flatnonzero(s)
    s = s.ravel()
    if s.size and s.dtype.kind not in "iu":
        raise ValueError(f"support must be integer indices or a boolean mask, got dtype {s.dtype}.")
    s = s.astype(np.int64)
    if s.size and (s.min() < 0 or s.max() >= n):
        raise ValueError(f"support indices must lie in 0..{n - 1}, got range [{s.min()}, {s.max()}].")
    return s


def check_linear(W: np.ndarray, b: np.ndarray, D: int, name: str = "W") -> tuple[np.ndarray, np.ndarray]:
    """Validate a linear classifier: ``W (K, D)`` or ``(1, D)``, ``b (K,)`` / ``(1,)``; returns float64."""
    W_ = np.asarray(W, dtype=np.float64)
    b_ = np.asarray(b, dtype=np.float64).ravel()
    if W_.ndim == 1:
        W_ = W_[None, :]  # (1, D): a single binary direction
    if W_.ndim != 2:
        raise ValueError(f"{name} must have shape (K, D) or (1, D), got {W_.shape}.")
    if W_.shape[1] != D:
        raise ValueError(f"{name} has D={W_.shape[1]} columns, but the points have {D}. Plots draw 2-D "
                         f"points, so {name} must act on them: {_PROJECT_HINT} Project the weights with the "
                         "same map as the points.")
    if b_.shape != (W_.shape[0],):
        raise ValueError(f"The intercept for {name} must have shape ({W_.shape[0]},), got {b_.shape}.")
    if not (np.all(np.isfinite(W_)) and np.all(np.isfinite(b_))):
        raise ValueError(f"{name} or its intercept contains NaN or inf.")
    return W_, b_


# --------------------------------------------------------------------------------------- points, colours
def display_subset(n: int, cap: int | None = MAX_DISPLAY_POINTS, seed: int = 0) -> np.ndarray:
    """Indices of the points to draw, in a random (seeded) order.

    All ``n`` points are kept when ``cap`` is None or ``n <= cap``; otherwise ``cap`` points are drawn
    without replacement with ``np.random.default_rng(seed)``. The order is always shuffled so that no
    class is systematically drawn on top of another.

    Returns
    -------
    idx : ndarray of shape (min(n, cap),)
    """
    rng = np.random.default_rng(seed)
    if cap is None or n <= cap:
        return rng.permutation(n)
    return rng.choice(n, size=int(cap), replace=False)


def class_colors(K: int) -> list:
    """K distinct RGBA colours: tab10 up to 10 classes, tab20 up to 20, then evenly spaced hues."""
    from matplotlib import colormaps

    if K <= 10:
        return [colormaps["tab10"](i) for i in range(K)]
    if K <= 20:
        return [colormaps["tab20"](i) for i in range(K)]
    return [colormaps["hsv"](i / K) for i in range(K)]


def marker_size(n: int) -> float:
    """Scatter marker area (pt^2) that keeps n points readable: 24 for a few points, 2 for many."""
    return float(np.clip(24 * np.sqrt(200 / max(n, 1)), 2.0, 24.0))


# --------------------------------------------------------------------------------------- figures, saving
def new_figure(nrows: int, ncols: int, figsize: tuple[float, float], **subplot_kw) -> tuple["Figure", np.ndarray]:
    """A pyplot-free Figure on an Agg canvas with constrained layout; axes as an (nrows, ncols) array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def save_figure(fig: "Figure", path: str | os.PathLike, dpi: float) -> Path:
    """Write ``fig`` to ``path`` atomically and return the path.

    The image goes to a temporary file in the same directory, which then replaces ``path`` with
    :func:`os.replace`, so a reader never sees a half-written file and a crash leaves no partial
    figure. The format follows the suffix (``.png`` by default). Missing parent folders are created.
    """
    path = Path(path)
    if not np.isfinite(dpi) or dpi <= 0:
        raise ValueError(f"dpi must be a positive number, got {dpi!r}.")
    fmt = path.suffix[1:].lower() or "png"
    return atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, dpi=dpi), binary=True)
