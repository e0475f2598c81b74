"""Simulated data sets of Li, Ding & Gao (arXiv 1808.05385), re-derived from their description.

Every generator returns a :class:`~nnboundary.data.Dataset` and draws from its own
``numpy.random.default_rng(seed)``: no global state, and the two classes of a data set come
from independent draws of one stream (the original drew both sector classes from the *same*
seed, which correlated them; that quirk is not reproduced).

``scale`` multiplies every coordinate (the original's "large" ×100 / ×1000 variants); all
other arguments are given in unit-scale coordinates. ``params["linearly_separable"]`` states
what holds *by construction*: ``True`` (guaranteed separable), ``False`` (guaranteed not) or
``None`` (depends on the sample; the docstring says what to expect).

Registry names (see :data:`SIMULATED` and :func:`make_simulated`):

============================  ==================================================================
``blobs``                     two Gaussian blobs, truncated so they are always separable
``three_blobs``               three Gaussian blobs (3 classes)
``cs_ovr_blobs``              four blobs, three tight + one far and wide: Crammer–Singer ≠ one-vs-rest
``cs_ovr_blobs_16d``          the same four blobs in 16 dimensions
``plate``                     uniform square, linear ground truth, diagonal margin band removed
``disc``                      uniform square, inside vs outside a circle (not linearly separable)
``difficult_sectors``         two quarter annuli, separable with a tiny margin
``sectors_not_sep``           two quarter annuli, not linearly separable
``moons``                     two interleaved half circles (not linearly separable)
``iris``                      Iris, setosa (0) vs the rest (1), 4-D
``blobs_large``               ``blobs`` at scale 100
``plate_large``               ``plate`` at scale 100
``difficult_sectors_large``   the original's ×1000 sectors (radii 0.1–200 vs 300–400)
``sectors_not_sep_large``     the original's ×1000 sectors (radii 0.1–200 vs 240–400)
============================  ==================================================================
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._dataset import Dataset

__all__ = [
    "SIMULATED",
    "make_difficult_sectors",
    "make_disc",
    "make_iris_setosa",
    "make_moons",
    "make_plate",
    "make_sectors_not_separable",
    "make_simulated",
    "make_three_blobs",
    "make_cs_ovr_blobs",
    "make_two_blobs",
]

Seed = int | np.random.Generator


# --------------------------------------------------------------------------- helpers

def _check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_scale(scale: Any) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) \
            or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}. "
                         "Use scale=100 or scale=1000 for the original's 'large' variants.")
    return float(scale)


def _seed_param(seed: Seed) -> int | None:
    """The seed as recorded in ``params`` (None when a Generator was passed in)."""
    return int(seed) if isinstance(seed, (int, np.integer)) else None


def _split_counts(n: int, weights: Sequence[float]) -> list[int]:
    """Largest-remainder allocation of ``n`` samples to classes in proportion to ``weights``."""
    w = np.asarray(weights, dtype=np.float64)
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]] += 1
    return counts.tolist()


def _stack(parts: Sequence[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-class point arrays (each (n_k, d)) and shuffle rows together with labels."""
    X = np.concatenate(parts)                                             # (N, d)
    y = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, p in enumerate(parts)])
    order = rng.permutation(len(y))
    return X[order], y[order]


def _dataset(name: str, X_unit: np.ndarray, y: np.ndarray, scale: float, params: dict[str, Any]) -> Dataset:
    counts = np.bincount(y, minlength=int(params.pop("n_classes", y.max() + 1))).tolist()
    return Dataset(X=X_unit * scale, y=y, name=name, params={**params, "class_counts": counts})


def _rejection_uniform(rng: np.random.Generator, n: int, label_of: Callable[[np.ndarray], np.ndarray],
                       accept_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` points uniformly from the unit square restricted to ``label_of(X) >= 0``.

    ``label_of`` maps (m, 2) points to labels, -1 for rejected points. Batches are sized from
    ``accept_rate`` so that the loop usually runs once.
    """
    kept_X, kept_y, have = [], [], 0
    while have < n:
        m = int(math.ceil((n - have) / accept_rate * 1.1)) + 16
        X = rng.uniform(0.0, 1.0, size=(m, 2))                            # (m, 2)
        y = label_of(X)                                                   # (m,)
        keep = y >= 0
        kept_X.append(X[keep])
        kept_y.append(y[keep])
        have += int(keep.sum())
    return np.concatenate(kept_X)[:n], np.concatenate(kept_y)[:n].astype(np.int64)


# --------------------------------------------------------------------------- blobs

def _truncated_gaussian(rng: np.random.Generator, n: int, center: np.ndarray, std: float,
                        truncate: float | None) -> np.ndarray:
    """``n`` draws of N(center, std² I), redrawing those farther than ``truncate * std`` from center."""
    Z = rng.standard_normal((n, len(center)))                             # (n, d)
    if truncate is not None:
        out = np.linalg.norm(Z, axis=1) > truncate
        while out.any():
            Z[out] = rng.standard_normal((int(out.sum()), len(center)))
            out = np.linalg.norm(Z, axis=1) > truncate
    return center + std * Z


def _blobs(name: str, generator: str, n_samples: int, centers: Sequence[Sequence[float]], std: float,
           truncate: float | None, scale: float, seed: Seed) -> Dataset:
    n = _check_positive_int(n_samples, "n_samples", minimum=len(centers))
    scale = _check_scale(scale)
    C = np.asarray(centers, dtype=np.float64)                             # (K, 2)
    if C.ndim != 2 or len(C) < 2:
        raise ValueError(f"centers must be a sequence of at least 2 points, got shape {C.shape}.")
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std!r}.")
    if truncate is not None and not truncate > 0:
        raise ValueError(f"truncate must be > 0 (in units of std) or None, got {truncate!r}.")
    rng = np.random.default_rng(seed)
    counts = _split_counts(n, [1.0] * len(C))
    X, y = _stack([_truncated_gaussian(rng, m, c, std, truncate) for m, c in zip(counts, C)], rng)
    # Each truncated blob lies in its own Voronoi cell (hence linear argmax separability) when
    # its radius is below half the smallest distance between centres.
    half_gap = 0.5 * min(np.linalg.norm(a - b) for i, a in enumerate(C) for b in C[i + 1:])
    separable = True if truncate is not None and truncate * std < half_gap else None
    params = {"generator": generator, "n_samples": n, "centers": C.tolist(), "std": float(std),
              "truncate": None if truncate is None else float(truncate), "scale": scale,
              "seed": _seed_param(seed), "linearly_separable": separable, "n_classes": len(C)}
    return _dataset(name, X, y, scale, params)


def make_two_blobs(n_samples: int = 1000, *, centers: Sequence[Sequence[float]] = ((0.2, 0.2), (0.8, 0.8)),
                   std: float = 0.1, truncate: float | None = 4.0, scale: float = 1.0,
                   seed: Seed = 0) -> Dataset:
    """Two isotropic Gaussian blobs ("blobs"; checklist items 3–7, 11, 14, 19, 20).

    Distribution: class 0 ~ N((0.2, 0.2), 0.1² I), class 1 ~ N((0.8, 0.8), 0.1² I), each
    truncated to the disc of radius ``truncate * std`` around its centre (points outside are
    redrawn). Sizes ``ceil(n/2)`` and ``floor(n/2)``.

    Label rule: the blob a point was drawn from; class 0 is the lower-left blob.

    Separability: the centres are 0.849 apart, so a point of an untruncated blob crosses the
    bisector x1 + x2 = 1 with probability 1.1e-5 (a 4.24 sigma event), which happens in about
    5 % of data sets of 5000 points; such a set may still be separable by another line, but
    nothing guarantees it. Truncating at 4 sigma (radius 0.4 < 0.424) removes 3.4e-4 of the
    mass and *guarantees* separability with a geometric margin of at least 0.024 (× scale).
    Pass ``truncate=None`` for the plain Gaussians of ``sklearn.datasets.make_blobs``.

    Parameters
    ----------
    n_samples : int, default=1000
        Total number of points (the original used 1000, 2000 and 5000).
    centers : sequence of two (x1, x2) pairs, default=((0.2, 0.2), (0.8, 0.8))
        Unit-scale centres.
    std : float, default=0.1
        Unit-scale standard deviation per coordinate.
    truncate : float or None, default=4.0
        Truncation radius in units of ``std``; None disables it.
    scale : float, default=1.0
        Multiplies all coordinates (100 gives the original's "large" blobs, centres (20, 20)
        and (80, 80), std 10).
    seed : int or numpy.random.Generator, default=0

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, 2), ``y`` in {0, 1}, ``name="blobs"``.

    Examples
    --------
    >>> ds = make_two_blobs(100, seed=0)
    >>> ds.X.shape, ds.class_counts.tolist()
    ((100, 2), [50, 50])
    """
    if len(centers) != 2:
        raise ValueError(f"make_two_blobs needs exactly 2 centers, got {len(centers)}; "
                         "use make_three_blobs or pass two (x1, x2) pairs.")
    return _blobs("blobs", "make_two_blobs", n_samples, centers, std, truncate, scale, seed)


def make_three_blobs(n_samples: int = 5000, *,
                     centers: Sequence[Sequence[float]] = ((10.0, 10.0), (45.0, 75.0), (80.0, 10.0)),
                     std: float = 5.0, truncate: float | None = 4.0, scale: float = 1.0,
                     seed: Seed = 0) -> Dataset:
    """Three isotropic Gaussian blobs, three classes ("three_blobs"; checklist item 27).

    Distribution: class k ~ N(centers[k], 5² I) with centres (10, 10), (45, 75), (80, 10) —
    the original's notebook already works at this coordinate scale, so ``scale=1`` reproduces
    it. Each blob is truncated at ``truncate * std`` (20 by default); the classes get
    ``n // 3`` points each, the remainder going to the first classes.

    Label rule: index of the blob a point was drawn from.

    Separability: the closest centres are 70 apart (14 std), so with truncation each blob sits
    inside its own Voronoi cell: linearly separable (one-vs-rest and argmax) by construction.

    Parameters
    ----------
    n_samples : int, default=5000
    centers : sequence of (x1, x2) pairs, default=((10, 10), (45, 75), (80, 10))
    std : float, default=5.0
    truncate : float or None, default=4.0
        Truncation radius in units of ``std``; None disables it.
    scale : float, default=1.0
    seed : int or numpy.random.Generator, default=0

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, 2), ``y`` in {0, 1, 2}, ``name="three_blobs"``.
    """
    return _blobs("three_blobs", "make_three_blobs", n_samples, centers, std, truncate, scale, seed)


def make_cs_ovr_blobs(n_samples: int = 800, *, dim: int = 2, far: float = 5.0, near_std: float = 0.2,
                      far_std: float = 0.8, truncate: float = 3.0, scale: float = 1.0, seed: Seed = 0) -> Dataset:
    """Four blobs whose Crammer–Singer and one-vs-rest SVMs differ ("cs_ovr_blobs"; the "which SVM?" experiment).

    Distribution: class k ~ N(c_k, s_k² I_dim) truncated at ``truncate * s_k`` from c_k, with centres
    c_0 = (0, 0), c_1 = (2, 0), c_2 = (0, 2) and c_3 = (far, far) in the first two coordinates (zeros in the
    other ``dim - 2``) and spreads s_0 = s_1 = s_2 = ``near_std``, s_3 = ``far_std``: three tight classes close
    together and a fourth far away and wide. Sizes ``n // 4`` each (remainder to the first classes).

    Why the two SVMs differ: one-vs-rest fits each class against the union of the others, so the far wide class
    pulls the three near classes' hyperplanes towards itself, while Crammer–Singer fits the pairwise margins
    jointly; a symmetric layout (equal spreads, equilateral centres) makes them nearly agree. With the defaults
    the angle between the two SVM directions on the inputs is about 40° in 2-D (measured on seed 0); the tests
    assert >= 10°.

    Label rule: index of the blob a point was drawn from.

    Separability: the truncated blobs are balls of radius ``truncate * s_k``; when every two are disjoint each
    lies in its own power-diagram cell (weights r_k²), so the classes are linearly separable by an argmax
    (Crammer–Singer) — ``params["linearly_separable"]`` is True then. One-vs-rest separability is not
    guaranteed by this rule (it holds for the defaults: class 1 and 2 sit off the line from class 0 to 3).

    Parameters
    ----------
    n_samples : int, default=800
    dim : int, default=2
        Input dimension (>= 2); ``cs_ovr_blobs_16d`` uses 16.
    far : float, default=5.0
        The far class's centre is (far, far, 0, ...).
    near_std, far_std : float, default=0.2 and 0.8
    truncate : float, default=3.0
        Truncation radius in units of each class's std.
    scale : float, default=1.0
    seed : int or numpy.random.Generator, default=0

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, dim), ``y`` in {0, 1, 2, 3}, ``name="cs_ovr_blobs"``.

    Examples
    --------
    >>> ds = make_cs_ovr_blobs(40, dim=16, seed=0)
    >>> ds.X.shape, ds.class_counts.tolist()
    ((40, 16), [10, 10, 10, 10])
    """
    n = _check_positive_int(n_samples, "n_samples", minimum=4)
    d = _check_positive_int(dim, "dim", minimum=2)
    scale = _check_scale(scale)
    for value, what in ((near_std, "near_std"), (far_std, "far_std"), (truncate, "truncate"), (far, "far")):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{what} must be a finite number > 0, got {value!r}.")
    C = np.zeros((4, d))                                                  # (4, dim)
    C[:, :2] = [(0.0, 0.0), (2.0, 0.0), (0.0, 2.0), (far, far)]
    stds = np.array([near_std, near_std, near_std, far_std], dtype=np.float64)
    rng = np.random.default_rng(seed)
    counts = _split_counts(n, [1.0] * 4)
    X, y = _stack([_truncated_gaussian(rng, m, c, s, truncate) for m, c, s in zip(counts, C, stds)], rng)
    radii = truncate * stds
    disjoint = all(np.linalg.norm(C[i] - C[j]) > radii[i] + radii[j] for i in range(4) for j in range(i + 1, 4))
    params = {"generator": "make_cs_ovr_blobs", "n_samples": n, "dim": d, "centers": C[:, :2].tolist(),
              "stds": stds.tolist(), "truncate": float(truncate), "scale": scale, "seed": _seed_param(seed),
              "linearly_separable": True if disjoint else None, "n_classes": 4}
    return _dataset("cs_ovr_blobs", X, y, scale, params)


# --------------------------------------------------------------------------- plate and disc

def make_plate(n_samples: int = 1000, *, margin: float = 0.1, scale: float = 1.0, seed: Seed = 0) -> Dataset:
    """Uniform points with a linear ground truth and a removed band ("plate"; items 2, 15, 19).

    Distribution: uniform on the unit square conditioned on ``|x1 + x2 - 1| >= margin``, i.e.
    a diagonal band of width ``2 * margin / sqrt(2)`` is removed. Exactly ``n_samples`` points
    are kept (the original drew ``size`` points and then dropped those in the band, so its
    ``size=1000, margin=0.2`` gave about 640 points and ``size=5000, margin=0.1`` about 4050).

    Label rule (the original's): **1** if ``x1 + x2 <= 1 - margin`` (lower-left), **0** if
    ``x1 + x2 >= 1 + margin`` (upper-right) — the opposite colour convention to the blobs.
    Class sizes are random (equal in expectation).

    Separability: linearly separable by construction for ``margin > 0``; the ground-truth line
    ``x1 + x2 = 1`` has geometric margin at least ``margin / sqrt(2)`` (× scale).

    Parameters
    ----------
    n_samples : int, default=1000
    margin : float, default=0.1
        Half-width of the removed band in units of ``x1 + x2``; in [0, 1). The original used 0.2
        (April runs) and 0.1 (May runs).
    scale : float, default=1.0
        100 gives the original's "plate_large" (coordinates and margin × 100).
    seed : int or numpy.random.Generator, default=0

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, 2) in [0, scale]², ``y`` in {0, 1}, ``name="plate"``.
    """
    n = _check_positive_int(n_samples, "n_samples")
    scale = _check_scale(scale)
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must lie in [0, 1), got {margin!r} (the band must stay inside the square).")

    def label_of(X: np.ndarray) -> np.ndarray:
        z = X.sum(axis=1)                                                 # (m,)
        return np.where(z <= 1.0 - margin, 1, np.where(z >= 1.0 + margin, 0, -1))

    rng = np.random.default_rng(seed)
    X, y = _rejection_uniform(rng, n, label_of, accept_rate=(1.0 - margin) ** 2)
    params = {"generator": "make_plate", "n_samples": n, "margin": float(margin), "scale": scale,
              "seed": _seed_param(seed), "linearly_separable": True if margin > 0 else None, "n_classes": 2}
    return _dataset("plate", X, y, scale, params)


def make_disc(n_samples: int = 1000, *, radius: float = 0.2, margin: float = 0.01, scale: float = 1.0,
              seed: Seed = 0) -> Dataset:
    """Inside vs outside a circle, with a removed ring ("disc", the non-linear demo; item 8).

    Distribution: uniform on the unit square conditioned on the distance ``r`` to (0.5, 0.5)
    being ``<= radius - margin`` or ``>= radius + margin``. Exactly ``n_samples`` points are
    kept (the original's ``size=1000`` draws gave 96 inside + 877 outside).

    Label rule: **1** inside the disc (``r <= radius - margin``), **0** outside. About 11.6 %
    of the points are class 1 with the defaults.

    Separability: *not* linearly separable — class 1 is surrounded by class 0 — for any sample
    with class-0 points on all sides of the disc, which holds with overwhelming probability
    for ``n_samples`` beyond a few dozen (``params["linearly_separable"]`` is None because a
    tiny sample could fail it). A linear SVM predicts class 0 everywhere; a network learns
    the disc.

    Parameters
    ----------
    n_samples : int, default=1000
    radius : float, default=0.2
        Unit-scale radius of the separating circle.
    margin : float, default=0.01
        Half-width of the removed ring; ``0 <= margin < radius`` and ``radius + margin <= 0.5``.
    scale : float, default=1.0
    seed : int or numpy.random.Generator, default=0

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, 2) in [0, scale]², ``y`` in {0, 1}, ``name="disc"``.
    """
    n = _check_positive_int(n_samples, "n_samples")
    scale = _check_scale(scale)
    if not (0.0 <= margin < radius and radius + margin <= 0.5):
        raise ValueError(f"Need 0 <= margin < radius and radius + margin <= 0.5 so both classes fit in the "
                         f"unit square; got radius={radius!r}, margin={margin!r}.")

    def label_of(X: np.ndarray) -> np.ndarray:
        r = np.linalg.norm(X - 0.5, axis=1)                               # (m,)
        return np.where(r <= radius - margin, 1, np.where(r >= radius + margin, 0, -1))

    accept = math.pi * (radius - margin) ** 2 + 1.0 - math.pi * (radius + margin) ** 2
    rng = np.random.default_rng(seed)
    X, y = _rejection_uniform(rng, n, label_of, accept_rate=accept)
    params = {"generator": "make_disc", "n_samples": n, "radius": float(radius), "margin": float(margin),
              "center": [0.5, 0.5], "scale": scale, "seed": _seed_param(seed), "linearly_separable": None,
              "n_classes": 2}
    return _dataset("disc", X, y, scale, params)


# --------------------------------------------------------------------------- sectors

def _quarter_annulus(rng: np.random.Generator, n: int, inner: float, outer: float) -> np.ndarray:
    """``n`` points uniform (by area) on {x >= 0, inner <= ||x|| <= outer}; shape (n, 2)."""
    r = np.sqrt(rng.uniform(inner ** 2, outer ** 2, size=n))              # area-uniform radius
    theta = rng.uniform(0.0, 0.5 * math.pi, size=n)
    return np.column_stack([r * np.cos(theta), r * np.sin(theta)])


def _check_radii(radii: Sequence[float], name: str) -> tuple[float, float]:
    try:
        inner, outer = (float(v) for v in radii)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (inner, outer), got {radii!r}.") from None
    if not 0.0 <= inner < outer:
        raise ValueError(f"{name} must satisfy 0 <= inner < outer, got {radii!r}.")
    return inner, outer


def _original_sector_weights(r0: tuple[float, float], r1: tuple[float, float]) -> list[float]:
    """Expected class proportions of the original sampler.

    It drew ``n`` uniform points in the square [0, outer0]² for class 0 and ``3n`` in
    [0, outer1]² for class 1, keeping those inside each annulus; the kept fraction of a square
    is (pi/4) (1 - (inner/outer)²).
    """
    return [1.0 - (r0[0] / r0[1]) ** 2, 3.0 * (1.0 - (r1[0] / r1[1]) ** 2)]


def _sectors(name: str, generator: str, n_samples: int, class0_radii: Sequence[float],
             class1_radii: Sequence[float], class_weights: Sequence[float] | None, scale: float,
             seed: Seed) -> Dataset:
    n = _check_positive_int(n_samples, "n_samples", minimum=2)
    scale = _check_scale(scale)
    r0, r1 = _check_radii(class0_radii, "class0_radii"), _check_radii(class1_radii, "class1_radii")
    if class_weights is None:
        weights = _original_sector_weights(r0, r1)
    else:
        weights = [float(w) for w in class_weights]
        if len(weights) != 2 or min(weights) <= 0:
            raise ValueError(f"class_weights must be two positive numbers, got {class_weights!r}.")
    n0, n1 = _split_counts(n, weights)
    rng = np.random.default_rng(seed)
    X, y = _stack([_quarter_annulus(rng, n0, *r0), _quarter_annulus(rng, n1, *r1)], rng)
    # Class 0 lies in {x1 + x2 <= sqrt(2) * outer0}; class 1 in {x1 + x2 >= ||x|| >= inner1}.
    separable = True if r1[0] > math.sqrt(2.0) * r0[1] else None
    params = {"generator": generator, "n_samples": n, "class0_radii": list(r0), "class1_radii": list(r1),
              "class_weights": [w / sum(weights) for w in weights], "scale": scale, "seed": _seed_param(seed),
              "linearly_separable": separable, "n_classes": 2}
    return _dataset(name, X, y, scale, params)


def make_difficult_sectors(n_samples: int = 2000, *, class0_radii: Sequence[float] = (0.1, 0.2),
                           class1_radii: Sequence[float] = (0.283, 0.4),
                           class_weights: Sequence[float] | None = None, scale: float = 1.0,
                           seed: Seed = 0) -> Dataset:
    """Two first-quadrant annuli, separable with a tiny margin ("difficult_sectors"; items 9–11, 16, 19, 21).

    Distribution: class 0 uniform (by area) on ``{x1, x2 >= 0, 0.1 <= ||x|| <= 0.2}``,
    class 1 uniform on ``{x1, x2 >= 0, 0.283 <= ||x|| <= 0.4}``. ``n_samples`` is the total;
    by default it is split in the proportions the original's rejection sampler produced
    (about 1 : 2; its "n=2000" gave 1162 + 2400 = 3562 points and "n=5000" gave 8801, so pass
    those totals to match its sizes).

    Label rule: 0 for the inner annulus, 1 for the outer one.

    Separability: separable by construction whenever ``inner1 > sqrt(2) * outer0``: class 0
    satisfies ``x1 + x2 <= 0.2 sqrt(2) = 0.28284`` and class 1 ``x1 + x2 >= 0.283``. The margin
    is tiny: the inner annulus' corner (0.141, 0.141) nearly touches the line through the
    outer annulus' axis points (0.283, 0) and (0, 0.283), so the distributions are only 5.6e-5
    apart, and a sample of a few thousand points has a hard-margin SVM margin of about 1e-3
    (0.3 % of the data scale 0.4), tens of times smaller relative to scale than the blobs'
    (0.05–0.16 at scale 1). That SVM has 3 support vectors and a normal close to (1, 1).

    Parameters
    ----------
    n_samples : int, default=2000
        Total number of points.
    class0_radii, class1_radii : (inner, outer), default=(0.1, 0.2) and (0.283, 0.4)
        Unit-scale radii of the two annuli.
    class_weights : (w0, w1) or None, default=None
        Class proportions; None uses the original sampler's expected proportions.
    scale : float, default=1.0
        Multiplies all coordinates. The original's ×1000 set did *not* scale the radii
        uniformly (0.1–200 vs 300–400); the registry name ``"difficult_sectors_large"`` gives it.
    seed : int or numpy.random.Generator, default=0

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, 2), ``y`` in {0, 1}, ``name="difficult_sectors"``.
    """
    return _sectors("difficult_sectors", "make_difficult_sectors", n_samples, class0_radii, class1_radii,
                    class_weights, scale, seed)


def make_sectors_not_separable(n_samples: int = 2000, *, class0_radii: Sequence[float] = (0.1, 0.2),
                               class1_radii: Sequence[float] = (0.25, 0.4),
                               class_weights: Sequence[float] | None = None, scale: float = 1.0,
                               seed: Seed = 0) -> Dataset:
    """Two first-quadrant annuli that no line separates ("sectors_not_sep"; items 13, 17).

    Distribution: as :func:`make_difficult_sectors` but class 1 starts at radius 0.25, below
    ``0.2 sqrt(2) = 0.283``. By default the total is split in the original sampler's
    proportions (its "n=5000" gave 2925 + 7149 points).

    Label rule: 0 for the inner annulus, 1 for the outer one.

    Separability: *not* linearly separable for any sample of practical size: class-1 points
    near both axes (e.g. (0.26, 0.02) and (0.02, 0.26)) span a segment through the middle of
    the class-0 annulus. Separable by a circle (radius 0.2–0.25), but not by any line.
    ``params["linearly_separable"]`` is None because a sample of a few points could miss it.

    Parameters
    ----------
    n_samples : int, default=2000
    class0_radii, class1_radii : (inner, outer), default=(0.1, 0.2) and (0.25, 0.4)
    class_weights : (w0, w1) or None, default=None
    scale : float, default=1.0
        ``"sectors_not_sep_large"`` in the registry gives the original's ×1000 set
        (0.1–200 vs 240–400).
    seed : int or numpy.random.Generator, default=0

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, 2), ``y`` in {0, 1}, ``name="sectors_not_sep"``.
    """
    return _sectors("sectors_not_sep", "make_sectors_not_separable", n_samples, class0_radii, class1_radii,
                    class_weights, scale, seed)


# --------------------------------------------------------------------------- moons and iris

def make_moons(n_samples: int = 2000, *, noise: float | None = None, scale: float = 1.0,
               seed: Seed = 0) -> Dataset:
    """Two interleaved half circles ("moons"; items 12, 18), as ``sklearn.datasets.make_moons``.

    Distribution: class 0 (``n // 2`` points) at ``(cos t, sin t)``, class 1 (the rest) at
    ``(1 - cos t, 0.5 - sin t)``, ``t`` evenly spaced on [0, pi]. Without noise (the original's
    setting) the points are deterministic and ``seed`` only shuffles the rows; with
    ``noise=s`` each coordinate gets N(0, s²) noise (unit scale).

    Label rule: 0 upper arc (centre (0, 0), radius 1), 1 lower arc (centre (1, 0.5)).

    Separability: without noise and with ``n_samples >= 6``, *not* linearly separable by
    construction: class 1's point (0, 0.5) lies strictly inside the convex hull of class 0's
    arc. A linear SVM reaches about 88 % training accuracy.

    Parameters
    ----------
    n_samples : int, default=2000
    noise : float or None, default=None
        Standard deviation of Gaussian noise; None or 0 for the noise-free arcs.
    scale : float, default=1.0
    seed : int or numpy.random.Generator, default=0

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, 2), ``y`` in {0, 1}, ``name="moons"``.
    """
    n = _check_positive_int(n_samples, "n_samples", minimum=2)
    scale = _check_scale(scale)
    if noise is not None and not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be None or a finite number >= 0, got {noise!r}.")
    n0 = n // 2
    t0, t1 = np.linspace(0.0, math.pi, n0), np.linspace(0.0, math.pi, n - n0)
    upper = np.column_stack([np.cos(t0), np.sin(t0)])                     # (n0, 2)
    lower = np.column_stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)])         # (n - n0, 2)
    rng = np.random.default_rng(seed)
    X, y = _stack([upper, lower], rng)
    noisy = bool(noise)
    if noisy:
        X = X + rng.normal(0.0, noise, size=X.shape)
    params = {"generator": "make_moons", "n_samples": n, "noise": float(noise) if noisy else None,
              "scale": scale, "seed": _seed_param(seed),
              "linearly_separable": False if (not noisy and n >= 6) else None, "n_classes": 2}
    return _dataset("moons", X, y, scale, params)


_IRIS_FEATURES = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")


def make_iris_setosa(n_samples: int | None = None, *, features: Sequence[int] | None = None,
                     scale: float = 1.0, seed: Seed = 0) -> Dataset:
    """Iris, setosa vs the other two species ("iris"; item 1). Bundled with scikit-learn.

    Distribution: the 150 Iris flowers (50 per species), rows shuffled with ``seed``;
    ``n_samples < 150`` keeps a random subset. Features are the four measurements in cm
    (sepal length, sepal width, petal length, petal width), or the columns in ``features``.

    Label rule: 0 for *Iris setosa*, 1 for *versicolor* and *virginica* (the original merged
    label 2 into 1).

    Separability: linearly separable whenever a petal feature (index 2 or 3) is used — setosa
    petals are shorter than 2 cm and narrower than 0.7 cm, the others at least 3 cm and 1 cm.

    Parameters
    ----------
    n_samples : int or None, default=None
        None keeps all 150 flowers.
    features : sequence of int or None, default=None
        Column indices into the four measurements; None keeps all four.
    scale : float, default=1.0
    seed : int or numpy.random.Generator, default=0

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, n_features), ``y`` in {0, 1}, ``name="iris"``.
    """
    from sklearn.datasets import load_iris    # bundled with scikit-learn; no download

    scale = _check_scale(scale)
    bunch = load_iris()
    X_all, species = np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)
    cols = list(range(4)) if features is None else [int(f) for f in features]
    if not cols or any(not 0 <= c < 4 for c in cols) or len(set(cols)) != len(cols):
        raise ValueError(f"features must be distinct column indices in 0..3 ({', '.join(_IRIS_FEATURES)}), "
                         f"got {features!r}.")
    n = len(X_all) if n_samples is None else _check_positive_int(n_samples, "n_samples", minimum=2)
    if n > len(X_all):
        raise ValueError(f"Iris has {len(X_all)} samples; n_samples={n} is too many. Pass n_samples=None for all.")
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(X_all))[:n]
    y = (species[rows] != 0).astype(np.int64)
    params = {"generator": "make_iris_setosa", "n_samples": n, "features": [_IRIS_FEATURES[c] for c in cols],
              "scale": scale, "seed": _seed_param(seed),
              "linearly_separable": True if {2, 3} & set(cols) else None, "n_classes": 2}
    return _dataset("iris", X_all[rows][:, cols], y, scale, params)


# --------------------------------------------------------------------------- registry

def _preset(base: Callable[..., Dataset], name: str, summary: str, **defaults: Any) -> Callable[..., Dataset]:
    """A registry entry: ``base`` with other defaults, returning a Dataset named ``name``."""
    sig = inspect.signature(base)

    def generator(*args: Any, **kwargs: Any) -> Dataset:
        bound = sig.bind(*args, **kwargs)
        return dataclasses.replace(base(**{**defaults, **bound.arguments}), name=name)

    generator.__signature__ = sig.replace(parameters=[   # type: ignore[attr-defined]
        p.replace(default=defaults[p.name]) if p.name in defaults else p for p in sig.parameters.values()])
    generator.__name__ = generator.__qualname__ = f"make_{name}"
    generator.__doc__ = (f"{summary}\n\nSame as :func:`{base.__name__}` with defaults "
                         f"{', '.join(f'{k}={v!r}' for k, v in defaults.items())}.")
    return generator


SIMULATED: dict[str, Callable[..., Dataset]] = {
    "blobs": make_two_blobs,
    "three_blobs": make_three_blobs,
    "cs_ovr_blobs": make_cs_ovr_blobs,
    "cs_ovr_blobs_16d": _preset(make_cs_ovr_blobs, "cs_ovr_blobs_16d",
                                "The four cs_ovr_blobs in 16 dimensions (the D >= 16 geometry).", dim=16),
    "plate": make_plate,
    "disc": make_disc,
    "difficult_sectors": make_difficult_sectors,
    "sectors_not_sep": make_sectors_not_separable,
    "moons": make_moons,
    "iris": make_iris_setosa,
    "blobs_large": _preset(make_two_blobs, "blobs_large",
                           "Two blobs ×100: centres (20, 20), (80, 80), std 10 (item 14).", scale=100.0),
    "plate_large": _preset(make_plate, "plate_large",
                           "Plate ×100: square [0, 100]², band half-width 10 (item 15).", scale=100.0),
    "difficult_sectors_large": _preset(
        make_difficult_sectors, "difficult_sectors_large",
        "The original's ×1000 separable sectors: radii 0.1–200 vs 300–400 (items 16, 21).",
        scale=1000.0, class0_radii=(1e-4, 0.2), class1_radii=(0.3, 0.4)),
    "sectors_not_sep_large": _preset(
        make_sectors_not_separable, "sectors_not_sep_large",
        "The original's ×1000 non-separable sectors: radii 0.1–200 vs 240–400 (item 17).",
        scale=1000.0, class0_radii=(1e-4, 0.2), class1_radii=(0.24, 0.4)),
}
"""Registry of simulated data sets: name → generator returning a :class:`Dataset`."""


def make_simulated(name: str, n_samples: int | None = None, scale: float | None = None, seed: Seed = 0,
                   **kwargs: Any) -> Dataset:
    """Generate a registered simulated data set by name.

    Parameters
    ----------
    name : str
        A key of :data:`SIMULATED`, e.g. ``"moons"`` or ``"difficult_sectors_large"``.
    n_samples : int or None, default=None
        None keeps the generator's default size.
    scale : float or None, default=None
        None keeps the generator's default scale (1, or 100 / 1000 for the ``*_large`` names).
    seed : int or numpy.random.Generator, default=0
    **kwargs
        Further keyword arguments of the generator (e.g. ``margin=0.2`` for ``"plate"``).

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        Unknown ``name`` (the message suggests close names).
    TypeError
        A keyword the generator does not take (the message lists those it does).

    Examples
    --------
    >>> make_simulated("plate", n_samples=200, margin=0.2, seed=1).X.shape
    (200, 2)
    """
    if name not in SIMULATED:
        close = difflib.get_close_matches(str(name), SIMULATED, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"Unknown simulated data set {name!r}.{hint} Available: {', '.join(SIMULATED)}.")
    generator = SIMULATED[name]
    accepted = inspect.signature(generator).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"Data set {name!r} does not take {', '.join(unknown)}; "
                        f"it takes {', '.join(accepted)}.")
    if n_samples is not None:
        kwargs["n_samples"] = n_samples
    if scale is not None:
        kwargs["scale"] = scale
    return generator(seed=seed, **kwargs)
