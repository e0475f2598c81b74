"""Decision regions and boundaries in a 2-D space (the transformed space or a 2-D input space).

Displays follow scikit-learn's pattern: ``from_*`` classmethods validate and compute everything on a grid
(no matplotlib involved), ``plot(ax=None)`` draws and returns ``self``. The ``plot_*`` functions lay out
whole figures from displays and save them atomically as image files.

Conventions
-----------
A linear classifier is ``(W, b)`` with ``W (K, D)``, ``b (K,)`` (predicted class = argmax of the scores
``H @ W.T + b``), or ``W (1, D)``, ``b (1,)`` for a binary one, whose decision value ``w . h + b > 0``
predicts class index 1. A general predictor is a callable ``f(points (M, 2)) -> (M,) or (M, K)``; see
:meth:`BoundaryDisplay.from_predictor` for how its output is read. Labels ``y`` are integers ``0..K-1``.

Class boundaries are stored as *boundary fields*: arrays of shape (R, R), possibly masked, whose zero
level set is the boundary. Binary decision values are their own field; with K scores the field of the
pair (i, j) is ``s_i - s_j`` masked wherever {i, j} are not the two highest scores, so only the parts of
the equal-score lines that really separate two regions are drawn.
"""

from __future__ import annotations

import os
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from nnboundary.plot._grid import (
    MAX_DISPLAY_POINTS,
    Window,
    auto_window,
    check_labels,
    check_linear,
    check_points_2d,
    check_support,
    check_window,
    class_colors,
    display_subset,
    make_grid,
    marker_size,
    new_figure,
    save_figure,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes

__all__ = [
    "BoundaryDisplay",
    "OverlayDisplay",
    "plot_input_space",
    "plot_nn_vs_svm",
    "plot_nn_vs_svms",
    "plot_snapshots",
    "plot_three_panel_bias",
    "plot_training_data",
    "snapshot_displays",
]

Predictor = Callable[[np.ndarray], Any]
#: A classifier for the figure helpers: ``(W, b)``, an object with ``coef_``/``intercept_``, or a callable.
Model = Any

_PANEL = (4.8, 5.0)  # inches per panel, legend below included
_REGION_ALPHA = 0.28
_NN_STYLE = {"colors": "k", "linestyles": "solid", "linewidths": 2.0}
_SVM_STYLE = {"colors": "tab:red", "linestyles": "dashed", "linewidths": 2.0}
_MARGIN_STYLE = {"colors": "tab:red", "linestyles": "dotted", "linewidths": 1.2}
#: Line styles of the second, third, ... SVM in :func:`plot_nn_vs_svms` (the first is ``_SVM_STYLE``).
_OTHER_SVM_STYLES = ({"colors": "tab:blue", "linestyles": "dashdot", "linewidths": 2.0},
                     {"colors": "tab:green", "linestyles": (0, (1, 1)), "linewidths": 2.0})


# ======================================================================================= computation
def _linear_scores(G: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Scores ``(M, K)`` for a K-row head, or decision values ``(M,)`` for a binary ``(1, D)`` one."""
    S = G @ W.T + b  # (M, K)
    return S[:, 0] if W.shape[0] == 1 else S


def _pairwise_fields(S: np.ndarray, shape: tuple[int, int]) -> list[np.ndarray]:
    """Masked ``s_i - s_j`` fields (R, R) for every pair (i, j) that is the top-2 somewhere on the grid."""
    if S.shape[1] == 2:
        return [(S[:, 1] - S[:, 0]).reshape(shape)]
    top2 = np.argsort(-S, axis=1, kind="stable")[:, :2]  # (M, 2)
    lo, hi = top2.min(axis=1), top2.max(axis=1)  # (M,) each
    fields = []
    for i, j in combinations(range(S.shape[1]), 2):
        here = (lo == i) & (hi == j)  # (M,)
        if here.any():
            diff = (S[:, i] - S[:, j]).reshape(shape)
            fields.append(np.ma.array(diff, mask=~here.reshape(shape)))
    return fields


def _indicator_fields(Z: np.ndarray) -> list[np.ndarray]:
    """For labels only: one field per class, ``(Z == k) - 0.5``, whose zero level outlines the region."""
    present = np.unique(Z)
    if present.size <= 1:
        return []
    classes = present[1:] if present.size == 2 else present  # binary: one outline suffices
    return [(Z == k).astype(np.float64) - 0.5 for k in classes]


def _region_and_fields(out: np.ndarray, kind: str, shape: tuple[int, int]) -> tuple[np.ndarray, list]:
    """Predicted class region (R, R) and boundary fields from decision values, scores or labels."""
    if kind == "decision":  # (M,)
        return (out > 0).astype(np.int64).reshape(shape), [out.reshape(shape)]
    if kind == "scores":  # (M, K)
        return out.argmax(axis=1).reshape(shape), _pairwise_fields(out, shape)
    Z = out.astype(np.int64).reshape(shape)  # labels (M,)
    return Z, _indicator_fields(Z)


def _to_numpy(out: Any) -> np.ndarray:
    """Accept numpy arrays, lists and (CPU or GPU, grad or not) tensors without importing torch."""
    if hasattr(out, "detach"):
        out = out.detach()
    if hasattr(out, "cpu"):
        out = out.cpu()
    return np.asarray(out)


def _evaluate_predictor(f: Predictor, G: np.ndarray, response: str, chunk_size: int) -> tuple[np.ndarray, str]:
    """Call ``f`` on the grid in chunks and classify its output as 'labels', 'decision' or 'scores'."""
    if response not in ("auto", "labels", "decision", "scores"):
        raise ValueError(f"response must be 'auto', 'labels', 'decision' or 'scores', got {response!r}.")
    M = G.shape[0]
    parts = [_to_numpy(f(G[i:i + chunk_size])) for i in range(0, M, chunk_size)]
    out = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]  # (M, 1) -> (M,)
    if out.shape[:1] != (M,) or out.ndim not in (1, 2):
        raise ValueError(f"The predictor returned shape {out.shape} for {M} points; expected (M,) labels or "
                         "decision values, or (M, K) scores.")
    if response == "auto":
        response = "scores" if out.ndim == 2 else ("labels" if out.dtype.kind in "biu" else "decision")
    if (response == "scores") != (out.ndim == 2):
        raise ValueError(f"response={response!r} does not fit the predictor's output of shape {out.shape}.")
    as_float = out.astype(np.float64)
    if not np.all(np.isfinite(as_float)):
        raise ValueError("The predictor returned NaN or inf on the grid; check the model (or the window).")
    if response == "labels" and (np.any(np.mod(as_float, 1) != 0) or as_float.min() < 0):
        raise ValueError("response='labels' needs integer labels 0..K-1 from the predictor; for scores or "
                         "decision values pass response='decision' (binary) or return (M, K) scores.")
    return (as_float if response != "labels" else out.astype(np.int64)), response


def _window_for(H: np.ndarray, window: Sequence[float] | None) -> Window:
    return auto_window(H) if window is None else check_window(window)


def _check_label_range(y: np.ndarray, K: int, what: str) -> None:
    if y.size and y.max() >= K:
        raise ValueError(f"y has label {y.max()}, but {what} has only K={K} classes (labels 0..{K - 1}). "
                         "Pass the classifier trained on these labels, or re-encode y.")


# ======================================================================================= drawing
def _draw_regions(ax: "Axes", xx: np.ndarray, yy: np.ndarray, region: np.ndarray, colors: list):
    from matplotlib.colors import ListedColormap

    K = len(colors)
    cs = ax.contourf(xx, yy, region, levels=np.arange(K + 1) - 0.5, cmap=ListedColormap(colors),
                     alpha=_REGION_ALPHA, antialiased=True, zorder=0)
    cs.set_rasterized(True)
    return cs


def _crosses_zero(field: np.ndarray) -> bool:
    lo, hi = np.ma.min(field), np.ma.max(field)
    return lo is not np.ma.masked and bool(lo <= 0 <= hi) and bool(lo < hi)


def _draw_fields(ax: "Axes", xx: np.ndarray, yy: np.ndarray, fields: Sequence[np.ndarray],
                 style: dict, zorder: float = 2.0) -> list:
    """Zero level set of every field that changes sign in the window; returns the contour sets."""
    return [ax.contour(xx, yy, f, levels=[0.0], zorder=zorder, **style) for f in fields if _crosses_zero(f)]


def _line_handle(style: dict, label: str):
    from matplotlib.lines import Line2D

    return Line2D([], [], color=style["colors"], linestyle=style["linestyles"],
                  linewidth=style["linewidths"], label=label)


def _draw_points(ax: "Axes", H: np.ndarray, y: np.ndarray, colors: list, support: np.ndarray | None,
                 max_points: int | None, seed: int) -> tuple[list, str | None]:
    """Scatter the points (a seeded subset above ``max_points``), ring the support vectors.

    Returns legend handles (one per class present, plus support vectors) and a note when subsampled.
    """
    from matplotlib.lines import Line2D

    idx = display_subset(H.shape[0], max_points, seed)  # (n_shown,)
    point_colors = np.asarray(colors)[y[idx]]  # (n_shown, 4)
    s = marker_size(idx.size)
    ax.scatter(H[idx, 0], H[idx, 1], c=point_colors, s=s, edgecolors="0.15",
               linewidths=0.4 if s >= 8 else 0.0, rasterized=True, zorder=3)
    handles = [Line2D([], [], marker="o", linestyle="", markerfacecolor=colors[k], markeredgecolor="0.15",
                      markersize=6, label=f"class {k}") for k in np.unique(y)]
    if support is not None and support.size:
        sv = support if (max_points is None or support.size <= max_points) else \
            support[display_subset(support.size, max_points, seed)]
        ax.scatter(H[sv, 0], H[sv, 1], s=max(4 * s, 40), facecolors="none", edgecolors="k", linewidths=1.3,
                   rasterized=True, zorder=4)
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="k",
                              markeredgewidth=1.3, markersize=9, label=f"support vectors ({support.size})"))
    note = None if idx.size == H.shape[0] else \
        f"showing a random {idx.size:,} of {H.shape[0]:,} points (seed {seed})"
    return handles, note


def _finish_axes(ax: "Axes", window: Window, title: str, xlabel: str, ylabel: str, handles: list,
                 legend: bool, note: str | None = None) -> None:
    """Limits, labels, title, and a legend *below* the axes so that it never covers data."""
    from matplotlib.transforms import offset_copy

    ax.set_xlim(window[0], window[1])
    ax.set_ylim(window[2], window[3])
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend and handles:
        below = offset_copy(ax.transAxes, fig=ax.figure, y=-36, units="points")  # under ticks + label
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below,
                  ncol=min(3, len(handles)), fontsize="small", title=note, title_fontsize="x-small",
                  frameon=False, handlelength=2.2, columnspacing=1.2)


def _get_ax(ax: "Axes | None") -> "Axes":
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=_PANEL, layout="constrained")
    return ax


# ======================================================================================= displays
class BoundaryDisplay:
    """Decision regions, class boundaries and training points of one classifier in a 2-D space.

    Build it with :meth:`from_linear` or :meth:`from_predictor` (which compute, and draw nothing), then
    call :meth:`plot`. ``__init__`` only stores precomputed arrays.

    Parameters
    ----------
    xx, yy : ndarray of shape (R, R)
        Grid coordinates (meshgrid, ``"xy"`` indexing).
    region : ndarray of shape (R, R), int
        Predicted class index at every grid point.
    boundary_fields : list of ndarray of shape (R, R)
        Arrays (possibly masked) whose zero level set is a class boundary (see the module docstring).
    H : ndarray of shape (N, 2)
        The points to draw (features or inputs).
    y : ndarray of shape (N,)
        Their labels, 0..K-1.
    n_classes : int
        K, which fixes the colours (tab10 up to 10 classes).
    support : ndarray of shape (n_support,) or None, default=None
        Indices into ``H`` of the support vectors, drawn as rings.
    title, xlabel, ylabel : str
        Axes text.
    boundary_label : str, default="boundary"
        Legend entry of the boundary line.

    Attributes
    ----------
    window : tuple (xmin, xmax, ymin, ymax)
    ax_, figure_ : matplotlib Axes and Figure, set by :meth:`plot`.
    surface_ : QuadContourSet or None
        The filled regions, set by :meth:`plot`.
    lines_ : list of QuadContourSet
        The boundary lines, set by :meth:`plot`.

    Examples
    --------
    >>> import numpy as np
    >>> H = np.array([[0.0, 0.0], [1.0, 1.0]]); y = np.array([0, 1])
    >>> disp = BoundaryDisplay.from_linear(np.array([[1.0, 1.0]]), np.array([-1.0]), H, y, resolution=20)
    >>> disp.region.shape
    (20, 20)
    """

    def __init__(self, *, xx: np.ndarray, yy: np.ndarray, region: np.ndarray, boundary_fields: list,
                 H: np.ndarray, y: np.ndarray, n_classes: int, support: np.ndarray | None = None,
                 title: str = "", xlabel: str = "$h_1$", ylabel: str = "$h_2$",
                 boundary_label: str = "boundary") -> None:
        self.xx = xx
        self.yy = yy
        self.region = region
        self.boundary_fields = boundary_fields
        self.H = H
        self.y = y
        self.n_classes = n_classes
        self.support = support
        self.title = title
        self.xlabel = xlabel
        self.ylabel = ylabel
        self.boundary_label = boundary_label

    @property
    def window(self) -> Window:
        """(xmin, xmax, ymin, ymax) of the grid."""
        return (float(self.xx[0, 0]), float(self.xx[0, -1]), float(self.yy[0, 0]), float(self.yy[-1, 0]))

    @classmethod
    def from_linear(cls, W: np.ndarray, b: np.ndarray, H: np.ndarray, y: np.ndarray, *,
                    support: np.ndarray | None = None, window: Sequence[float] | None = None,
                    resolution: int = 300, title: str = "Linear classifier", xlabel: str = "$h_1$",
                    ylabel: str = "$h_2$", boundary_label: str = "boundary") -> "BoundaryDisplay":
        """Regions of the linear classifier ``(W, b)`` on a grid around ``H``.

        Parameters
        ----------
        W : ndarray of shape (K, 2), or (1, 2) for binary
            Weights; a binary ``(1, 2)`` head predicts class 1 where ``W @ h + b > 0``.
        b : ndarray of shape (K,), or (1,) for binary
        H : ndarray of shape (N, 2)
            Points in the same 2-D space as ``W``. D != 2 raises ValueError: project first.
        y : ndarray of shape (N,)
            Labels 0..K-1.
        support : ndarray of shape (n_support,) of indices, or a boolean mask of shape (N,), default=None
        window : (xmin, xmax, ymin, ymax) or None, default=None
            None chooses the window from ``H`` (:func:`auto_window`).
        resolution : int, default=300
            Grid points per axis.
        title, xlabel, ylabel, boundary_label : str

        Returns
        -------
        display : BoundaryDisplay
            Nothing is drawn yet; call :meth:`plot`.
        """
        H_ = check_points_2d(H, "H")  # (N, 2)
        y_ = check_labels(y, H_.shape[0])
        W_, b_ = check_linear(W, b, 2)
        K = 2 if W_.shape[0] == 1 else W_.shape[0]
        _check_label_range(y_, K, "the linear classifier")
        xx, yy, G = make_grid(_window_for(H_, window), resolution)  # G (R*R, 2)
        S = _linear_scores(G, W_, b_)  # (R*R,) binary or (R*R, K)
        region, fields = _region_and_fields(S, "decision" if S.ndim == 1 else "scores", xx.shape)
        return cls(xx=xx, yy=yy, region=region, boundary_fields=fields, H=H_, y=y_, n_classes=K,
                   support=check_support(support, H_.shape[0]), title=title, xlabel=xlabel, ylabel=ylabel,
                   boundary_label=boundary_label)

    @classmethod
    def from_predictor(cls, f: Predictor, H: np.ndarray, y: np.ndarray, *, support: np.ndarray | None = None,
                       window: Sequence[float] | None = None, resolution: int = 300, response: str = "auto",
                       n_classes: int | None = None, chunk_size: int = 65_536, title: str = "Classifier",
                       xlabel: str = "$h_1$", ylabel: str = "$h_2$",
                       boundary_label: str = "boundary") -> "BoundaryDisplay":
        """Regions of any classifier ``f`` of 2-D points, e.g. a whole network in its 2-D input space.

        Parameters
        ----------
        f : callable, ``f(points: ndarray of shape (M, 2)) -> ndarray``
            Called on the grid in chunks of ``chunk_size`` rows. Tensors are accepted as output.
        H : ndarray of shape (N, 2)
        y : ndarray of shape (N,)
        response : {"auto", "labels", "decision", "scores"}, default="auto"
            How to read the output. ``"auto"``: shape (M, K) is scores (argmax; boundaries where the top
            two scores are equal), integer (M,) is labels, float (M,) is a binary decision value (> 0 is
            class 1). Labels-only boundaries follow the grid cells, so they are as fine as ``resolution``.
        n_classes : int or None, default=None
            K for the colours; None infers it from ``y`` and the predictions.
        chunk_size : int, default=65536
            Grid rows per call of ``f`` (bounds memory for large models).
        support, window, resolution, title, xlabel, ylabel, boundary_label
            As in :meth:`from_linear`.

        Returns
        -------
        display : BoundaryDisplay
        """
        if not callable(f):
            raise TypeError(f"f must be callable (points (M, 2) -> labels or scores), got {type(f).__name__}. "
                            "For a linear classifier use BoundaryDisplay.from_linear(W, b, ...).")
        H_ = check_points_2d(H, "H")
        y_ = check_labels(y, H_.shape[0])
        if not (isinstance(chunk_size, (int, np.integer)) and chunk_size > 0):
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
        xx, yy, G = make_grid(_window_for(H_, window), resolution)
        out, kind = _evaluate_predictor(f, G, response, int(chunk_size))
        region, fields = _region_and_fields(out, kind, xx.shape)
        K = max(int(y_.max()) + 1, int(region.max()) + 1, out.shape[1] if kind == "scores" else 2)
        if n_classes is not None:
            if n_classes < K:
                raise ValueError(f"n_classes={n_classes}, but labels up to {K - 1} occur in y or the "
                                 f"predictions; pass n_classes >= {K} or None.")
            K = int(n_classes)
        return cls(xx=xx, yy=yy, region=region, boundary_fields=fields, H=H_, y=y_, n_classes=K,
                   support=check_support(support, H_.shape[0]), title=title, xlabel=xlabel, ylabel=ylabel,
                   boundary_label=boundary_label)

    def plot(self, ax: "Axes | None" = None, *, show_points: bool = True, show_regions: bool = True,
             legend: bool = True, max_points: int | None = MAX_DISPLAY_POINTS, seed: int = 0,
             boundary_style: dict | None = None) -> "BoundaryDisplay":
        """Draw regions (filled contours), boundary lines, points, support-vector rings, text and legend.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            None creates a new pyplot figure.
        show_points : bool, default=True
        show_regions : bool, default=True
        legend : bool, default=True
            The legend goes below the axes, so it never hides data.
        max_points : int or None, default=20000
            Draw at most this many points: a seeded random subset above it (noted in the legend title),
            which keeps 60k-point feature clouds fast. None draws all. Support vectors are always drawn
            (up to the same cap).
        seed : int, default=0
            Seed of the subset.
        boundary_style : dict or None, default=None
            ``contour`` keywords for the boundary (``colors``, ``linestyles``, ``linewidths``); default
            solid black.

        Returns
        -------
        self
        """
        ax = _get_ax(ax)
        colors = class_colors(self.n_classes)
        style = {**_NN_STYLE, **(boundary_style or {})}
        self.surface_ = _draw_regions(ax, self.xx, self.yy, self.region, colors) if show_regions else None
        self.lines_ = _draw_fields(ax, self.xx, self.yy, self.boundary_fields, style)
        handles, note = [], None
        if show_points:
            handles, note = _draw_points(ax, self.H, self.y, colors, self.support, max_points, seed)
        if self.lines_:
            handles.insert(0, _line_handle(style, self.boundary_label))
        _finish_axes(ax, self.window, self.title, self.xlabel, self.ylabel, handles, legend, note)
        self.ax_, self.figure_ = ax, ax.figure
        return self


class OverlayDisplay:
    """The NN's and the SVM's boundaries as lines on one axes (NN solid, SVM dashed, SVM margins dotted).

    Build it with :meth:`from_linear_pair`, then call :meth:`plot`.

    Parameters
    ----------
    xx, yy : ndarray of shape (R, R)
    nn_region, svm_region : ndarray of shape (R, R), int
        Predicted class of each classifier on the grid.
    nn_fields, svm_fields : list of ndarray of shape (R, R)
        Boundary fields (zero level = boundary).
    margin_fields : list of ndarray of shape (R, R)
        For a binary SVM ``(1, D)``: ``w . h + c - 1`` and ``w . h + c + 1`` (the margin lines); else empty.
    H, y, n_classes, support, title, xlabel, ylabel
        As in :class:`BoundaryDisplay`.
    labels : tuple of 2 str, default=("NN", "SVM")
        Names in the legend.

    Attributes
    ----------
    grid_agreement : float
        Fraction of grid points where both classifiers predict the same class (in [0, 1]).
    ax_, figure_, lines_ : set by :meth:`plot`.
    """

    def __init__(self, *, xx: np.ndarray, yy: np.ndarray, nn_region: np.ndarray, svm_region: np.ndarray,
                 nn_fields: list, svm_fields: list, margin_fields: list, H: np.ndarray, y: np.ndarray,
                 n_classes: int, support: np.ndarray | None = None, title: str = "NN vs SVM",
                 xlabel: str = "$h_1$", ylabel: str = "$h_2$", labels: tuple[str, str] = ("NN", "SVM")) -> None:
        self.xx = xx
        self.yy = yy
        self.nn_region = nn_region
        self.svm_region = svm_region
        self.nn_fields = nn_fields
        self.svm_fields = svm_fields
        self.margin_fields = margin_fields
        self.H = H
        self.y = y
        self.n_classes = n_classes
        self.support = support
        self.title = title
        self.xlabel = xlabel
        self.ylabel = ylabel
        self.labels = labels

    @property
    def window(self) -> Window:
        """(xmin, xmax, ymin, ymax) of the grid."""
        return (float(self.xx[0, 0]), float(self.xx[0, -1]), float(self.yy[0, 0]), float(self.yy[-1, 0]))

    @property
    def grid_agreement(self) -> float:
        return float(np.mean(self.nn_region == self.svm_region))

    @classmethod
    def from_linear_pair(cls, W_nn: np.ndarray, b_nn: np.ndarray, W_svm: np.ndarray, b_svm: np.ndarray,
                         H: np.ndarray, y: np.ndarray, *, support: np.ndarray | None = None,
                         window: Sequence[float] | None = None, resolution: int = 300,
                         title: str = "NN vs SVM", xlabel: str = "$h_1$", ylabel: str = "$h_2$",
                         labels: tuple[str, str] = ("NN", "SVM")) -> "OverlayDisplay":
        """Both linear classifiers on one grid around ``H``.

        Parameters
        ----------
        W_nn : ndarray of shape (K, 2) or (1, 2)
        b_nn : ndarray of shape (K,) or (1,)
            The network's last layer, acting on the 2-D features.
        W_svm : ndarray of shape (K, 2) or (1, 2)
        b_svm : ndarray of shape (K,) or (1,)
            The SVM on the same features. A binary ``(1, 2)`` SVM also gets its margin lines ``= +-1``.
        H : ndarray of shape (N, 2)
        y : ndarray of shape (N,)
        support, window, resolution, title, xlabel, ylabel
            As in :meth:`BoundaryDisplay.from_linear`.
        labels : tuple of 2 str, default=("NN", "SVM")

        Returns
        -------
        display : OverlayDisplay
        """
        nn = BoundaryDisplay.from_linear(W_nn, b_nn, H, y, window=window, resolution=resolution)
        svm = BoundaryDisplay.from_linear(W_svm, b_svm, H, y, window=nn.window, resolution=resolution)
        if nn.n_classes != svm.n_classes:
            raise ValueError(f"The NN head has K={nn.n_classes} classes but the SVM has K={svm.n_classes}; "
                             "fit the SVM on the same labels as the network.")
        margin_fields = []
        if np.asarray(W_svm).reshape(-1, 2).shape[0] == 1:  # binary SVM: decision field is w.h + c
            d = svm.boundary_fields[0]
            margin_fields = [d - 1.0, d + 1.0]
        return cls(xx=nn.xx, yy=nn.yy, nn_region=nn.region, svm_region=svm.region, nn_fields=nn.boundary_fields,
                   svm_fields=svm.boundary_fields, margin_fields=margin_fields, H=nn.H, y=nn.y,
                   n_classes=nn.n_classes, support=check_support(support, nn.H.shape[0]), title=title,
                   xlabel=xlabel, ylabel=ylabel, labels=labels)

    def plot(self, ax: "Axes | None" = None, *, show_points: bool = True, show_margins: bool = True,
             show_regions: bool = False, legend: bool = True, max_points: int | None = MAX_DISPLAY_POINTS,
             seed: int = 0) -> "OverlayDisplay":
        """Draw the SVM (dashed, red) and NN (solid, black) boundaries, then the points on top.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
        show_points : bool, default=True
        show_margins : bool, default=True
            Dotted SVM margin lines (binary SVM only).
        show_regions : bool, default=False
            Also fill the SVM's regions faintly.
        legend : bool, default=True
        max_points : int or None, default=20000
        seed : int, default=0
            See :meth:`BoundaryDisplay.plot`.

        Returns
        -------
        self
        """
        ax = _get_ax(ax)
        colors = class_colors(self.n_classes)
        if show_regions:
            _draw_regions(ax, self.xx, self.yy, self.svm_region, colors)
        svm_lines = _draw_fields(ax, self.xx, self.yy, self.svm_fields, _SVM_STYLE, zorder=2.0)
        margin_lines = _draw_fields(ax, self.xx, self.yy, self.margin_fields, _MARGIN_STYLE, zorder=1.9) \
            if show_margins else []
        nn_lines = _draw_fields(ax, self.xx, self.yy, self.nn_fields, _NN_STYLE, zorder=2.1)
        self.lines_ = nn_lines + svm_lines + margin_lines
        handles = []
        if nn_lines:
            handles.append(_line_handle(_NN_STYLE, f"{self.labels[0]} boundary"))
        if svm_lines:
            handles.append(_line_handle(_SVM_STYLE, f"{self.labels[1]} boundary"))
        if margin_lines:
            handles.append(_line_handle(_MARGIN_STYLE, f"{self.labels[1]} margin (±1)"))
        note = None
        if show_points:
            point_handles, note = _draw_points(ax, self.H, self.y, colors, self.support, max_points, seed)
            handles += point_handles
        _finish_axes(ax, self.window, self.title, self.xlabel, self.ylabel, handles, legend, note)
        self.ax_, self.figure_ = ax, ax.figure
        return self


# ======================================================================================= figure helpers
def _as_display(model: Model, H: np.ndarray, y: np.ndarray, **kw) -> BoundaryDisplay:
    """A BoundaryDisplay from ``(W, b)``, an object with ``coef_``/``intercept_``, or a callable."""
    if hasattr(model, "coef_") and hasattr(model, "intercept_"):
        return BoundaryDisplay.from_linear(model.coef_, model.intercept_, H, y, **kw)
    if isinstance(model, (tuple, list)) and len(model) == 2:
        return BoundaryDisplay.from_linear(model[0], model[1], H, y, **kw)
    if callable(model):
        return BoundaryDisplay.from_predictor(model, H, y, **kw)
    raise TypeError(f"Expected a classifier as (W, b), an estimator with coef_/intercept_, or a callable "
                    f"points (M, 2) -> labels/scores; got {type(model).__name__}.")


def _figsize(ncols: int, nrows: int, figsize: tuple[float, float] | None) -> tuple[float, float]:
    return figsize if figsize is not None else (_PANEL[0] * ncols, _PANEL[1] * nrows)


def plot_training_data(X: np.ndarray, y: np.ndarray, path: str | os.PathLike, *,
                       support: np.ndarray | None = None, window: Sequence[float] | None = None,
                       title: str = "Training data", xlabel: str = "$x_1$", ylabel: str = "$x_2$",
                       max_points: int | None = MAX_DISPLAY_POINTS, seed: int = 0, dpi: float = 120,
                       figsize: tuple[float, float] | None = None) -> Path:
    """Scatter 2-D training data coloured by class and save it.

    Parameters
    ----------
    X : ndarray of shape (N, 2)
    y : ndarray of shape (N,)
        Labels 0..K-1.
    path : str or PathLike
        Output image (PNG unless the suffix says otherwise); written atomically.
    support : ndarray of shape (n_support,) or None, default=None
        Indices of points to ring (e.g. the SVM's support vectors).
    window : (xmin, xmax, ymin, ymax) or None, default=None
        None: from the data.
    title, xlabel, ylabel : str
    max_points : int or None, default=20000
        Cap on drawn points (seeded random subset above it).
    seed : int, default=0
    dpi : float, default=120
    figsize : (width, height) in inches or None, default=None (one panel, 4.8 x 5.0)

    Returns
    -------
    path : Path
    """
    X_ = check_points_2d(X, "X")
    y_ = check_labels(y, X_.shape[0])
    sv = check_support(support, X_.shape[0])
    fig, axes = new_figure(1, 1, _figsize(1, 1, figsize))
    ax = axes[0, 0]
    handles, note = _draw_points(ax, X_, y_, class_colors(int(y_.max()) + 1), sv, max_points, seed)
    _finish_axes(ax, _window_for(X_, window), title, xlabel, ylabel, handles, True, note)
    return save_figure(fig, path, dpi)


def plot_nn_vs_svm(W_nn: np.ndarray, b_nn: np.ndarray, W_svm: np.ndarray, b_svm: np.ndarray, H: np.ndarray,
                   y: np.ndarray, support: np.ndarray | None, path: str | os.PathLike, *,
                   window: Sequence[float] | None = None, resolution: int = 300,
                   titles: Sequence[str] = ("SVM", "NN (last layer)", "Overlay"),
                   xlabel: str = "$h_1$", ylabel: str = "$h_2$", max_points: int | None = MAX_DISPLAY_POINTS,
                   dpi: float = 120, figsize: tuple[float, float] | None = None) -> Path:
    """The paper's core figure in the transformed space: SVM regions | NN regions | both boundaries.

    Parameters
    ----------
    W_nn : ndarray of shape (K, 2) or (1, 2)
    b_nn : ndarray of shape (K,) or (1,)
    W_svm : ndarray of shape (K, 2) or (1, 2)
    b_svm : ndarray of shape (K,) or (1,)
    H : ndarray of shape (N, 2)
        Features of the last hidden layer (2 units, or projected to 2-D together with the weights).
    y : ndarray of shape (N,)
    support : ndarray of shape (n_support,), boolean mask (N,), or None
        The SVM's support vectors, ringed in the SVM and overlay panels.
    path : str or PathLike
    window : (xmin, xmax, ymin, ymax) or None, default=None
        Shared by all panels; None: from ``H``.
    resolution : int, default=300
    titles : 3 str, default=("SVM", "NN (last layer)", "Overlay")
    xlabel, ylabel : str
    max_points : int or None, default=20000
    dpi : float, default=120
    figsize : (width, height) or None, default=None (3 panels of 4.8 x 5.0 inches)

    Returns
    -------
    path : Path
    """
    if len(titles) != 3:
        raise ValueError(f"titles must have 3 entries (SVM, NN, overlay), got {len(titles)}.")
    common = dict(window=window, resolution=resolution, xlabel=xlabel, ylabel=ylabel)
    svm = BoundaryDisplay.from_linear(W_svm, b_svm, H, y, support=support, title=titles[0],
                                      boundary_label="SVM boundary", **common)
    common["window"] = svm.window
    nn = BoundaryDisplay.from_linear(W_nn, b_nn, H, y, title=titles[1], boundary_label="NN boundary", **common)
    over = OverlayDisplay.from_linear_pair(W_nn, b_nn, W_svm, b_svm, H, y, support=support, title=titles[2],
                                           **common)
    fig, axes = new_figure(1, 3, _figsize(3, 1, figsize))
    svm.plot(axes[0, 0], max_points=max_points, boundary_style=_SVM_STYLE)
    nn.plot(axes[0, 1], max_points=max_points)
    over.plot(axes[0, 2], max_points=max_points)
    return save_figure(fig, path, dpi)


def plot_nn_vs_svms(W_nn: np.ndarray, b_nn: np.ndarray, svms: Sequence[tuple[str, np.ndarray, np.ndarray]],
                    H: np.ndarray, y: np.ndarray, support: np.ndarray | None, path: str | os.PathLike, *,
                    window: Sequence[float] | None = None, resolution: int = 300, title: str = "Overlay",
                    xlabel: str = "$h_1$", ylabel: str = "$h_2$", max_points: int | None = MAX_DISPLAY_POINTS,
                    dpi: float = 120, figsize: tuple[float, float] | None = None) -> Path:
    """Several SVMs of the same 2-D features against one last layer: each SVM's regions, then all boundaries.

    Made for "which multi-class SVM?": the Crammer–Singer and the one-vs-rest SVMs (both read by argmax of their
    K scores) in panels of their own, and a last panel with the NN's boundary (solid black) and every SVM's
    (red dashed, blue dash-dot, green dotted), with a legend, so that one can see which one the layer follows.

    Parameters
    ----------
    W_nn : ndarray of shape (K, 2) or (1, 2)
    b_nn : ndarray of shape (K,) or (1,)
    svms : sequence of (label, W (K, 2), b (K,))
        One to three SVMs; the label names it in the titles and the legend (e.g. "Crammer-Singer", "OvR").
    H : ndarray of shape (N, 2)
    y : ndarray of shape (N,)
    support : ndarray or None
        Support vectors of the first SVM, ringed in its panel and the overlay.
    path : str or PathLike
    window, resolution, xlabel, ylabel, max_points, dpi
        As in :func:`plot_nn_vs_svm`; the window (None: from ``H``) is shared.
    title : str, default="Overlay"
        Title of the overlay panel.
    figsize : (width, height) or None, default=None (one 4.8 x 5.0 inch panel per SVM, plus the overlay)

    Returns
    -------
    path : Path

    Cost: one grid evaluation per classifier, O(resolution² K) time and memory each.
    """
    if not 1 <= len(svms) <= 1 + len(_OTHER_SVM_STYLES):
        raise ValueError(f"svms must hold 1 to {1 + len(_OTHER_SVM_STYLES)} (label, W, b) triples, got {len(svms)}.")
    styles = (_SVM_STYLE, *_OTHER_SVM_STYLES)
    common = dict(window=window, resolution=resolution, xlabel=xlabel, ylabel=ylabel)
    nn = BoundaryDisplay.from_linear(W_nn, b_nn, H, y, **common)
    common["window"] = nn.window
    panels = [BoundaryDisplay.from_linear(W, b, H, y, support=support if i == 0 else None, title=f"SVM: {label}",
                                          boundary_label=f"{label} boundary", **common)
              for i, (label, W, b) in enumerate(svms)]
    if any(d.n_classes != nn.n_classes for d in panels):
        raise ValueError(f"Every SVM must have the NN head's K={nn.n_classes} classes, got "
                         f"{[d.n_classes for d in panels]}; fit them on the same labels as the network.")
    fig, axes = new_figure(1, len(panels) + 1, _figsize(len(panels) + 1, 1, figsize))
    for i, (d, style) in enumerate(zip(panels, styles)):
        d.plot(axes[0, i], max_points=max_points, boundary_style=style)
    ax = axes[0, len(panels)]
    handles = []
    for (label, _, _), d, style in zip(svms, panels, styles):
        if _draw_fields(ax, nn.xx, nn.yy, d.boundary_fields, style, zorder=2.0):
            handles.append(_line_handle(style, f"{label} SVM"))
    if _draw_fields(ax, nn.xx, nn.yy, nn.boundary_fields, _NN_STYLE, zorder=2.1):
        handles.insert(0, _line_handle(_NN_STYLE, "NN last layer"))
    point_handles, note = _draw_points(ax, nn.H, nn.y, class_colors(nn.n_classes), check_support(support, nn.H.shape[0]),
                                       max_points, 0)
    _finish_axes(ax, nn.window, title, xlabel, ylabel, handles + point_handles, True, note)
    return save_figure(fig, path, dpi)


def plot_input_space(predict_nn: Model, predict_svm: Model, X: np.ndarray, y: np.ndarray,
                     path: str | os.PathLike, *, support: np.ndarray | None = None,
                     window: Sequence[float] | None = None, resolution: int = 300,
                     titles: Sequence[str] = ("NN", "Linear SVM"), xlabel: str = "$x_1$",
                     ylabel: str = "$x_2$", max_points: int | None = MAX_DISPLAY_POINTS, dpi: float = 120,
                     figsize: tuple[float, float] | None = None) -> Path:
    """NN regions | linear-SVM regions in a 2-D input space (the original's April figures).

    Parameters
    ----------
    predict_nn : callable or (W, b) or estimator
        The whole network as a function of the input: ``f(X (M, 2)) -> labels (M,) or scores (M, K)``
        (see :meth:`BoundaryDisplay.from_predictor`).
    predict_svm : callable or (W, b) or estimator with ``coef_``/``intercept_``
        The linear SVM fitted on the inputs.
    X : ndarray of shape (N, 2)
    y : ndarray of shape (N,)
    path : str or PathLike
    support : ndarray of shape (n_support,) or None, default=None
        Ringed on the SVM panel.
    window : (xmin, xmax, ymin, ymax) or None, default=None
        Shared; None: from ``X``. Zoom out (a large window) to see the far field.
    resolution : int, default=300
    titles : 2 str, default=("NN", "Linear SVM")
    xlabel, ylabel : str
    max_points : int or None, default=20000
    dpi : float, default=120
    figsize : (width, height) or None

    Returns
    -------
    path : Path
    """
    if len(titles) != 2:
        raise ValueError(f"titles must have 2 entries (NN, SVM), got {len(titles)}.")
    common = dict(window=window, resolution=resolution, xlabel=xlabel, ylabel=ylabel)
    nn = _as_display(predict_nn, X, y, title=titles[0], boundary_label="NN boundary", **common)
    common["window"] = nn.window
    svm = _as_display(predict_svm, X, y, support=support, title=titles[1], boundary_label="SVM boundary",
                      **common)
    fig, axes = new_figure(1, 2, _figsize(2, 1, figsize))
    nn.plot(axes[0, 0], max_points=max_points)
    svm.plot(axes[0, 1], max_points=max_points, boundary_style=_SVM_STYLE)
    return save_figure(fig, path, dpi)


def _snapshot_display(item: Sequence, y: np.ndarray, window: Window | None, **kw) -> BoundaryDisplay:
    if len(item) == 4:  # (step, W, b, H)
        step, W, b, H = item
        return BoundaryDisplay.from_linear(W, b, H, y, window=window, title=f"step {step:,}", **kw)
    if len(item) == 3:  # (step, predictor, H)
        step, f, H = item
        return _as_display(f, H, y, window=window, title=f"step {step:,}", **kw)
    raise ValueError(f"Each snapshot must be (step, W, b, H) or (step, predictor, H); got {len(item)} items.")


def snapshot_displays(snapshots: Sequence[Sequence], y: np.ndarray, *,
                      window: Sequence[float] | str | None = None, resolution: int = 200,
                      xlabel: str = "$h_1$", ylabel: str = "$h_2$") -> list[BoundaryDisplay]:
    """One :class:`BoundaryDisplay` per training snapshot (computed, not drawn); see :func:`plot_snapshots`."""
    if len(snapshots) == 0:
        raise ValueError("snapshots is empty; pass at least one (step, W, b, H) entry.")
    if isinstance(window, str):
        if window != "shared":
            raise ValueError(f"window must be None, 'shared' or (xmin, xmax, ymin, ymax), got {window!r}.")
        all_H = np.concatenate([check_points_2d(item[-1], "H") for item in snapshots])  # (sum N, 2)
        window = auto_window(all_H)
    return [_snapshot_display(item, y, window, resolution=resolution, xlabel=xlabel, ylabel=ylabel)
            for item in snapshots]


def plot_snapshots(snapshots: Sequence[Sequence], y: np.ndarray, path: str | os.PathLike, *,
                   window: Sequence[float] | str | None = None, resolution: int = 200, ncols: int | None = None,
                   xlabel: str = "$h_1$", ylabel: str = "$h_2$", max_points: int | None = MAX_DISPLAY_POINTS,
                   dpi: float = 120, figsize: tuple[float, float] | None = None) -> Path:
    """Panels of the boundary at several training steps (features move too: each step has its own H).

    Parameters
    ----------
    snapshots : sequence of (step, W, b, H) or (step, predictor, H)
        ``W (K, 2)`` / ``(1, 2)``, ``b (K,)`` / ``(1,)``, ``H (N, 2)`` at that step; a predictor is a
        callable, ``(W, b)`` or an estimator (as in :func:`plot_input_space`), e.g. the whole network in a
        2-D input space, where ``H`` is simply ``X`` at every step.
    y : ndarray of shape (N,)
        Labels, shared by all steps.
    path : str or PathLike
    window : None, "shared", or (xmin, xmax, ymin, ymax), default=None
        None: each panel from its own H (feature scales grow during training); "shared": one window
        around all steps' H; a tuple: that window everywhere.
    resolution : int, default=200
    ncols : int or None, default=None
        Panels per row; None puts up to 5 in a row.
    xlabel, ylabel : str
    max_points : int or None, default=20000
    dpi : float, default=120
    figsize : (width, height) or None

    Returns
    -------
    path : Path
    """
    displays = snapshot_displays(snapshots, y, window=window, resolution=resolution, xlabel=xlabel,
                                 ylabel=ylabel)
    n = len(displays)
    ncols = min(n, 5) if ncols is None else int(ncols)
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}.")
    nrows = -(-n // ncols)
    fig, axes = new_figure(nrows, ncols, _figsize(ncols, nrows, figsize))
    from matplotlib.ticker import MaxNLocator

    for k, disp in enumerate(displays):
        ax = axes.flat[k]
        disp.plot(ax, max_points=max_points, legend=(k == 0))
        for axis in (ax.xaxis, ax.yaxis):  # a tiny early cloud (spread 1e-4) must not crowd its tick labels
            axis.set_major_locator(MaxNLocator(nbins=4, min_n_ticks=2))
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return save_figure(fig, path, dpi)


def plot_three_panel_bias(svm: Model, nn_joint: Model, nn_reinit: Model, H: np.ndarray, y: np.ndarray,
                          path: str | os.PathLike, *, support: np.ndarray | None = None,
                          window: Sequence[float] | None = None, resolution: int = 300,
                          titles: Sequence[str] = ("SVM", "NN (trained jointly)", "NN (head re-initialised)"),
                          show_svm_reference: bool = True, xlabel: str = "$h_1$", ylabel: str = "$h_2$",
                          max_points: int | None = MAX_DISPLAY_POINTS, dpi: float = 120,
                          figsize: tuple[float, float] | None = None) -> Path:
    """The bias experiment: SVM | NN trained jointly | NN with the head re-initialised and retrained.

    With ``show_svm_reference`` the SVM boundary is repeated as a dashed red line on the two NN panels,
    so a head that keeps the direction but loses the bias shows up as a parallel, shifted line.

    Parameters
    ----------
    svm, nn_joint, nn_reinit : (W, b), estimator with ``coef_``/``intercept_``, or callable
        Classifiers on the same 2-D features ``H``; ``W (K, 2)`` or ``(1, 2)``.
    H : ndarray of shape (N, 2)
    y : ndarray of shape (N,)
    path : str or PathLike
    support : ndarray of shape (n_support,) or None, default=None
        The SVM's support vectors, ringed on the SVM panel.
    window : (xmin, xmax, ymin, ymax) or None, default=None
        Shared by the panels; None: from ``H``.
    resolution : int, default=300
    titles : 3 str
    show_svm_reference : bool, default=True
    xlabel, ylabel : str
    max_points : int or None, default=20000
    dpi : float, default=120
    figsize : (width, height) or None

    Returns
    -------
    path : Path
    """
    if len(titles) != 3:
        raise ValueError(f"titles must have 3 entries (SVM, NN joint, NN re-initialised), got {len(titles)}.")
    common = dict(window=window, resolution=resolution, xlabel=xlabel, ylabel=ylabel)
    d_svm = _as_display(svm, H, y, support=support, title=titles[0], boundary_label="SVM boundary", **common)
    common["window"] = d_svm.window
    d_joint = _as_display(nn_joint, H, y, title=titles[1], boundary_label="NN boundary", **common)
    d_reinit = _as_display(nn_reinit, H, y, title=titles[2], boundary_label="NN boundary", **common)
    fig, axes = new_figure(1, 3, _figsize(3, 1, figsize))
    d_svm.plot(axes[0, 0], max_points=max_points, boundary_style=_SVM_STYLE)
    for ax, disp in ((axes[0, 1], d_joint), (axes[0, 2], d_reinit)):
        disp.plot(ax, max_points=max_points, legend=False)
        handles = [_line_handle(_NN_STYLE, "NN boundary")] if disp.lines_ else []
        if show_svm_reference and _draw_fields(ax, d_svm.xx, d_svm.yy, d_svm.boundary_fields, _SVM_STYLE, 1.9):
            handles.append(_line_handle(_SVM_STYLE, "SVM boundary"))
        _finish_axes(ax, disp.window, disp.title, xlabel, ylabel, handles, True)
    return save_figure(fig, path, dpi)
