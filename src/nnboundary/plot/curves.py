"""Alignment curves: how the NN's last layer approaches the SVM during training, on a log step axis.

Soudry et al. show that on separable data gradient descent on the logistic/cross-entropy loss turns the weight
direction toward the max-margin solution only like ``1 / log(t)``. Each panel with a known limit (angle → 0, margin
ratio → 1, bias offset → 0) carries the reference ``limit + c / log t`` fitted by
:func:`nnboundary.metrics.fit_inverse_log` to the later half of the separable points, drawn over the fitted step
range only and only where the fit holds (:func:`nnboundary.metrics.inverse_log_fit_holds`: R² ≥ 0.9 on ≥ 5 points
spanning ≥ 1 decade of steps, :data:`nnboundary.metrics.INVERSE_LOG_RULE`); the legend reports c, R², the number of
points and the step range either way.

Figure conventions: the step axis is logarithmic from step 1; step 0 (the initialisation) is drawn in a narrow panel
of its own at the left; evaluations whose features were not separable (``separable`` is False: the SVM was a
soft-margin one) are drawn as red crosses and left out of the curve and the fit; the y-limits follow the bulk of the
points (an outlier such as a margin ratio of −136 is drawn at the panel's edge as a triangle, with its value).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nnboundary.metrics import INVERSE_LOG_RULE, fit_inverse_log, inverse_log_fit_holds
from nnboundary.plot._grid import new_figure, save_figure

__all__ = ["MIN_R2", "alignment_figure", "fit_inverse_log", "plot_alignment_curves"]

#: The c/log t reference is drawn only when its fit explains at least this share of the variance (and the other
#: conditions of :data:`nnboundary.metrics.INVERSE_LOG_RULE` hold).
MIN_R2 = INVERSE_LOG_RULE["min_r2"]

_LABELS = {
    "angle_deg": ("angle NN vs SVM (deg)", 0.0),
    "margin_ratio": ("margin ratio NN / SVM", 1.0),
    "bias_offset": ("bias offset", 0.0),
}


def _columns(curves: Any) -> dict[str, np.ndarray]:
    """Column arrays from a DataFrame, a mapping of arrays, or a sequence of records (metrics.jsonl rows)."""
    if hasattr(curves, "columns") and hasattr(curves, "__getitem__"):  # pandas DataFrame
        return {str(c): np.asarray(curves[c]) for c in curves.columns}
    if isinstance(curves, Mapping):
        return {str(k): np.asarray(v) for k, v in curves.items()}
    if isinstance(curves, Sequence) and all(isinstance(r, Mapping) for r in curves):
        keys = sorted({k for r in curves for k in r})
        return {k: np.asarray([r.get(k, np.nan) for r in curves], dtype=object) for k in keys}
    raise TypeError(f"curves must be a DataFrame, a dict of arrays, or a list of dicts; got {type(curves).__name__}.")


def _float_column(cols: dict[str, np.ndarray], name: str, n: int) -> np.ndarray:
    try:
        v = np.asarray(cols[name], dtype=np.float64).ravel()  # None -> nan
    except (TypeError, ValueError):
        raise ValueError(f"Column {name!r} must be numeric.") from None
    if v.shape != (n,):
        raise ValueError(f"Column {name!r} has {v.size} values but 'step' has {n}; all columns need one value "
                         "per step.")
    return v


def _is_false(v: Any) -> bool:
    """A recorded ``separable`` that is False (None / NaN: unknown, treated as separable)."""
    if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
        return False
    return not bool(v)


def _robust_limits(v: np.ndarray, ref: float | None) -> tuple[float, float] | None:
    """y-limits that hold the bulk of the points (and the reference): 10–90 % range padded by its width."""
    f = v[np.isfinite(v)]
    if f.size == 0:
        return None
    lo, hi = float(f.min()), float(f.max())
    if f.size >= 5:
        q10, q90 = np.percentile(f, [10, 90])
        pad = max(q90 - q10, 1e-12)
        lo, hi = max(lo, q10 - 1.5 * pad), min(hi, q90 + 1.5 * pad)
    if ref is not None:
        lo, hi = min(lo, ref), max(hi, ref)
    span = hi - lo or max(abs(hi), 1.0) * 0.1
    return lo - 0.06 * span, hi + 0.06 * span


def alignment_figure(curves: Any, *, metrics: Sequence[str] = ("angle_deg", "margin_ratio", "bias_offset"),
                     fit_fraction: float = 0.5, title: str | None = None,
                     figsize: tuple[float, float] | None = None) -> Any:
    """The alignment figure (a matplotlib Figure on an Agg canvas); see :func:`plot_alignment_curves`."""
    cols = _columns(curves)
    missing = [c for c in ("step", *metrics) if c not in cols]
    if missing:
        raise ValueError(f"curves lacks column(s) {missing}; available: {sorted(cols)}. Pass metrics=[...] "
                         "to choose which panels to draw.")
    if len(metrics) == 0:
        raise ValueError("metrics is empty; name at least one column to plot.")
    step = np.asarray(cols["step"], dtype=np.float64).ravel()  # (T,)
    if step.size == 0 or not np.all(np.isfinite(step)):
        raise ValueError("'step' must be a non-empty column of finite numbers.")
    order = np.argsort(step, kind="stable")
    step = step[order]
    sep = np.ones(step.size, dtype=bool)
    if "separable" in cols:
        sep = ~np.array([_is_false(v) for v in np.asarray(cols["separable"], dtype=object)[order]], dtype=bool)
    init = step <= 0  # the initialisation: its own narrow panel (no log of 0)
    size = figsize or (6.8, 2.4 * len(metrics))
    if init.any():
        fig, axes = new_figure(len(metrics), 2, size, sharey="row", width_ratios=[1, 11])
        init_axes, axes = axes[:, 0], axes[:, 1]
    else:
        fig, axes = new_figure(len(metrics), 1, size, sharex=True)
        init_axes, axes = [None] * len(metrics), axes[:, 0]
    later = ~init
    for ax, ax0, name in zip(axes, init_axes, metrics):
        value = _float_column(cols, name, step.size)[order]  # (T,)
        ylabel, ref = _LABELS.get(name, (name, None))
        good = later & sep
        lim = _robust_limits(value[later | init], ref)
        shown = value.copy()
        if lim is not None:  # outliers are marked at the edge, not drawn as a line leaving the panel
            shown[(value < lim[0]) | (value > lim[1])] = np.nan
        ax.plot(step[good], shown[good], marker="o", markersize=3, linewidth=1.5, color="tab:blue", label=name)
        bad = later & ~sep & np.isfinite(value)
        if bad.any():
            ax.plot(step[bad], value[bad], "x", color="tab:red", markersize=6, mew=1.5,
                    label="not separable (soft-margin SVM)")
        if ref is not None:
            ax.axhline(ref, color="0.5", linewidth=1.0, linestyle=":", label=f"limit {ref:g}")
            _draw_inverse_log_fit(ax, step[good], value[good], ref, fit_fraction)
        if lim is not None:
            ax.set_ylim(*lim)
            _mark_outside(ax, step, value, lim, later)
        (ax if ax0 is None else ax0).set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best", fontsize="x-small")
        if later.any():
            ax.set_xscale("log")
            ax.set_xlim(max(0.8, step[later].min() / 1.3), step[later].max() * 1.3)
        if ax0 is not None:
            ok0 = init & sep
            ax0.plot(np.zeros(ok0.sum()), value[ok0], "s", color="tab:blue", markersize=4)
            ax0.plot(np.zeros((init & ~sep).sum()), value[init & ~sep], "x", color="tab:red", markersize=6, mew=1.5)
            if lim is not None:
                _mark_outside(ax0, np.zeros(init.sum()), value[init], lim, np.ones(init.sum(), dtype=bool))
            ax0.set_xticks([0])
            ax0.set_xlim(-1, 1)
            ax0.grid(True, alpha=0.3)
            ax.tick_params(labelleft=False)
    axes[-1].set_xlabel("training step (log scale)")
    if init_axes[-1] is not None:
        init_axes[-1].set_xticklabels(["init"])
        for a in init_axes[:-1]:
            a.set_xticklabels([])
    if title:
        fig.suptitle(title)
    return fig


def _mark_outside(ax: Any, step: np.ndarray, value: np.ndarray, lim: tuple[float, float], later: np.ndarray) -> None:
    """Points beyond the robust limits: a triangle at the edge with the value beside it."""
    lo, hi = lim
    for t, v in zip(step[later], value[later]):
        if np.isfinite(v) and (v < lo or v > hi):
            y = lo if v < lo else hi
            ax.plot([t], [y], "v" if v < lo else "^", color="tab:purple", markersize=6, clip_on=False)
            ax.annotate(f"{v:.3g}", (t, y), textcoords="offset points", xytext=(-8, -12 if v > hi else 5),
                        fontsize=7, color="tab:purple", annotation_clip=False)


def plot_alignment_curves(curves: Any, path: str | os.PathLike, *,
                          metrics: Sequence[str] = ("angle_deg", "margin_ratio", "bias_offset"),
                          fit_fraction: float = 0.5, title: str | None = None, dpi: float = 120,
                          figsize: tuple[float, float] | None = None) -> Path:
    """Stacked panels of alignment metrics against the training step, saved atomically.

    Parameters
    ----------
    curves : DataFrame, dict of ndarray of shape (T,), or list of dicts
        Needs a ``step`` column and every column in ``metrics`` (e.g. the tracker's history or the rows
        of ``metrics.jsonl``); an optional ``separable`` column marks the soft-margin evaluations. Missing values
        (NaN/None) leave gaps.
    path : str or PathLike
        Output image (PNG unless the suffix says otherwise).
    metrics : sequence of str, default=("angle_deg", "margin_ratio", "bias_offset")
        One panel each, top to bottom. Those with a known limit get the fitted ``limit + c / log t`` reference.
    fit_fraction : float in (0, 1], default=0.5
        Later share of the separable points used to fit ``c`` (see :func:`nnboundary.metrics.fit_inverse_log`).
    title : str or None, default=None
    dpi : float, default=120
    figsize : (width, height) in inches or None, default=None (6.8 wide, 2.4 per panel)

    Returns
    -------
    path : Path

    Notes
    -----
    See the module docstring for the conventions (step 0 apart, non-separable steps, the fit, robust limits).
    """
    fig = alignment_figure(curves, metrics=metrics, fit_fraction=fit_fraction, title=title, figsize=figsize)
    return save_figure(fig, path, dpi)


def _draw_inverse_log_fit(ax: Any, step: np.ndarray, value: np.ndarray, target: float, fraction: float) -> dict:
    """``target + c / log t`` over the fitted step range where the fit holds; the legend reports it either way."""
    fit = fit_inverse_log(step, value, target=target, fraction=fraction)
    if not np.isfinite(fit["c"]):
        return fit
    where = f"{fit['n_used']} points, steps {fit['step_min']:.0f}–{fit['step_max']:.0f}"
    base = f"{target:g} + c/log t" if target else "c/log t"
    if inverse_log_fit_holds(fit):
        t = np.geomspace(fit["step_min"], fit["step_max"], 100)  # (100,)
        ax.plot(t, target + fit["c"] / np.log(t), color="tab:red", linestyle="--", linewidth=1.2,
                label=f"fit {base}: c = {fit['c']:.3g}, R² = {fit['r2']:.2f} ({where})")
    else:
        ax.plot([], [], " ", label=f"{base} does not hold: R² = {fit['r2']:.2f} ({where}), not drawn")
    return fit
