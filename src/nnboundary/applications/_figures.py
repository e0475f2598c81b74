"""Figures of the applications, drawn from tables (pandas) on a pyplot-free Agg canvas.

matplotlib is imported inside the functions only, so importing :mod:`nnboundary.applications`
stays light. Every figure is written atomically (temp file + ``os.replace``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nnboundary.applications._common import atomic_write


def _figure(nrows: int, ncols: int, size: tuple[float, float]) -> tuple[Any, np.ndarray]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _save(fig: Any, path: Path, dpi: float = 120) -> Path:
    return atomic_write(path, lambda fh: fig.savefig(fh, format=path.suffix[1:] or "png", dpi=dpi), binary=True)


def _integer_ticks() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _band(ax: Any, x: np.ndarray, mean: np.ndarray, std: np.ndarray, label: str) -> None:
    (line,) = ax.plot(x, mean, marker="o", ms=3, label=label)
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)


def plot_forgetting(per_task: Any, path: Path, title: str) -> Path:
    """Average accuracy, forgetting and NN-SVM angle per task, one line per strategy (mean ± std over seeds).

    ``per_task`` has columns strategy, seed, task, avg_acc, forgetting, angle_all.
    """
    panels = (("avg_acc", "average accuracy (seen classes)"), ("forgetting", "forgetting (drop from best)"),
              ("angle_all", "NN-SVM angle (deg), seen classes"))
    fig, axes = _figure(1, 3, (13.5, 3.8))
    for ax, (col, label) in zip(axes[0], panels):
        for strategy, g in per_task.groupby("strategy", sort=False):
            stats = g.groupby("task")[col].agg(["mean", "std"]).reset_index()
            _band(ax, stats["task"].to_numpy(), stats["mean"].to_numpy(),
                  np.nan_to_num(stats["std"].to_numpy()), strategy)
        ax.set_xlabel("task")
        ax.xaxis.set_major_locator(_integer_ticks())
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def plot_robustness(curves: Any, by_quantile: Any, path: Path, title: str) -> Path:
    """Robust accuracy vs budget (L∞ and L2 panels) and minimal perturbation by margin quantile.

    ``curves``: columns attack, norm, eps, robust_acc_mean, robust_acc_std.
    ``by_quantile``: columns quantile, attack, value_mean, value_std (minimal L2 perturbation).
    """
    fig, axes = _figure(1, 3, (14, 3.8))
    for ax, norm in zip(axes[0][:2], ("linf", "l2")):
        sub = curves[curves["norm"] == norm]
        for attack, g in sub.groupby("attack", sort=False):
            g = g.sort_values("eps")
            _band(ax, g["eps"].to_numpy(), g["robust_acc_mean"].to_numpy(),
                  np.nan_to_num(g["robust_acc_std"].to_numpy()), attack)
        ax.set_xlabel(f"budget ε ({'L∞' if norm == 'linf' else 'L2'})")
        ax.set_ylabel("robust accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes[0][2]
    for attack, g in by_quantile.groupby("attack", sort=False):
        g = g.sort_values("quantile")
        _band(ax, g["quantile"].to_numpy() + 1, g["value_mean"].to_numpy(),
              np.nan_to_num(g["value_std"].to_numpy()), attack)
    ax.set_xlabel("SVM feature-margin quantile (1 = smallest)")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_ylabel("median minimal L2 perturbation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)
