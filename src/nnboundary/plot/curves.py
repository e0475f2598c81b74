"""Alignment curves: how the NN's last layer approaches the SVM during training, on a log step axis.

Soudry et al. show that on separable data gradient descent on the logistic/cross-entropy loss turns the
weight direction toward the max-margin solution only like ``1 / log(t)``. The angle panel therefore carries
a reference curve ``c / log(t)`` fitted to the later half of the points, so a reader can judge whether the
measured angle follows that rate.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nnboundary.plot._grid import new_figure, save_figure

__all__ = ["fit_inverse_log", "plot_alignment_curves"]

_LABELS = {
    "angle_deg": ("angle NN vs SVM (deg)", 0.0),
    "margin_ratio": ("margin ratio NN / SVM", 1.0),
    "bias_offset": ("bias offset", 0.0),
}


def fit_inverse_log(step: np.ndarray, value: np.ndarray, fraction: float = 0.5) -> tuple[float, int]:
    """Least-squares ``c`` in ``value ~ c / log(step)``, fitted on the later points.

    Only points with ``step > 1`` and finite values are used (``log(1) = 0``); of these, the
    ``ceil(fraction * n)`` with the largest steps enter the fit. With ``u = 1 / log(step)`` the solution is
    ``c = sum(value * u) / sum(u ** 2)``.

    Parameters
    ----------
    step : ndarray of shape (T,)
        Training steps.
    value : ndarray of shape (T,)
        The measured quantity, e.g. the angle in degrees.
    fraction : float in (0, 1], default=0.5
        Share of the (usable) points, counted from the last step backwards, used for the fit.

    Returns
    -------
    c : float
        The fitted constant.
    n_used : int
        How many points entered the fit.

    Raises
    ------
    ValueError
        If no point has ``step > 1`` and a finite value, or ``fraction`` is out of range.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
    t = np.asarray(step, dtype=np.float64).ravel()
    a = np.asarray(value, dtype=np.float64).ravel()
    if t.shape != a.shape:
        raise ValueError(f"step and value must have the same length, got {t.shape} and {a.shape}.")
    ok = (t > 1) & np.isfinite(t) & np.isfinite(a)
    if not ok.any():
        raise ValueError("No point with step > 1 and a finite value: c / log(step) cannot be fitted. "
                         "Record the metric at later steps.")
    order = np.argsort(t[ok], kind="stable")
    t, a = t[ok][order], a[ok][order]  # (n,) each, by increasing step
    k = int(np.ceil(fraction * t.size))
    u = 1.0 / np.log(t[-k:])  # (k,)
    return float(np.sum(a[-k:] * u) / np.sum(u * u)), k


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


def plot_alignment_curves(curves: Any, path: str | os.PathLike, *,
                          metrics: Sequence[str] = ("angle_deg", "margin_ratio", "bias_offset"),
                          fit_fraction: float = 0.5, title: str | None = None, dpi: float = 120,
                          figsize: tuple[float, float] | None = None) -> Path:
    """Stacked panels of alignment metrics against the training step (log axis), saved atomically.

    Parameters
    ----------
    curves : DataFrame, dict of ndarray of shape (T,), or list of dicts
        Needs a ``step`` column and every column in ``metrics`` (e.g. the tracker's history or the rows
        of ``metrics.jsonl``). Missing values (NaN/None) leave gaps.
    path : str or PathLike
        Output image (PNG unless the suffix says otherwise).
    metrics : sequence of str, default=("angle_deg", "margin_ratio", "bias_offset")
        One panel each, top to bottom. ``angle_deg`` gets the fitted ``c / log(t)`` reference curve,
        ``margin_ratio`` a reference line at 1, ``bias_offset`` one at 0.
    fit_fraction : float in (0, 1], default=0.5
        Later share of the points used to fit ``c`` (see :func:`fit_inverse_log`).
    title : str or None, default=None
        Figure title.
    dpi : float, default=120
    figsize : (width, height) in inches or None, default=None (6.4 wide, 2.4 per panel)

    Returns
    -------
    path : Path

    Notes
    -----
    The step axis is logarithmic; if some step is <= 0 (e.g. the initialisation, step 0), it is
    symmetric-log with a linear part below 1 so that those points stay visible.
    """
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
    fig, axes = new_figure(len(metrics), 1, figsize or (6.4, 2.4 * len(metrics)), sharex=True)
    for ax, name in zip(axes[:, 0], metrics):
        value = _float_column(cols, name, step.size)[order]  # (T,)
        ylabel, ref = _LABELS.get(name, (name, None))
        ax.plot(step, value, marker="o", markersize=3, linewidth=1.5, color="tab:blue", label=name)
        if ref is not None and name != "angle_deg":
            ax.axhline(ref, color="0.5", linewidth=1.0, linestyle=":", label=f"reference {ref:g}")
        if name == "angle_deg":
            ylim = ax.get_ylim()  # the data's range; the fit's extrapolation to early steps may leave it
            _draw_inverse_log_fit(ax, step, value, fit_fraction)
            ax.set_ylim(ylim)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    ax_last = axes[-1, 0]
    if np.all(step > 0):
        ax_last.set_xscale("log")
    else:
        ax_last.set_xscale("symlog", linthresh=1.0)
    ax_last.set_xlabel("training step")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi)


def _draw_inverse_log_fit(ax, step: np.ndarray, value: np.ndarray, fraction: float) -> None:
    """Dashed ``c / log(t)`` over the steps > 1, labelled with ``c`` and the points used; skipped if < 2."""
    usable = (step > 1) & np.isfinite(value)
    if usable.sum() < 2:
        return
    c, k = fit_inverse_log(step, value, fraction)
    t = np.geomspace(step[usable].min(), step[usable].max(), 200)  # (200,)
    ax.plot(t, c / np.log(t), color="tab:red", linestyle="--", linewidth=1.3,
            label=f"fit $c/\\log t$, c = {c:.3g} (last {k} points)")
