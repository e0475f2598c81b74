"""The figures of one run, drawn with :mod:`nnboundary.plot` from arrays the runner computed.

Each ``draw_*`` function writes one PNG (or a few) under ``fig_dir`` and returns :class:`FigureInfo`
records (path relative to the run directory, caption) for the report. Nothing here imports
matplotlib: :mod:`nnboundary.plot` does, lazily.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnboundary import metrics as M
from nnboundary import plot as P
from nnboundary.experiments._hooks import analysis_view, load_snapshot, snapshot_steps
from nnboundary.plot.regions import plot_nn_vs_svms

__all__ = ["FigureInfo", "InputSVM", "nn_predictor", "input_agreement", "draw_training_data", "draw_input_space",
           "draw_transformed", "draw_transformed_svms", "draw_alignment", "draw_snapshots", "draw_sv_vs_loss"]

_DPI = 100


@dataclass(frozen=True)
class FigureInfo:
    """A figure written for the report: ``path`` relative to the run directory, a caption, its kind."""

    kind: str
    path: str
    caption: str


@dataclass(frozen=True)
class InputSVM:
    """A linear SVM fitted on the raw inputs: ``coef (1, d) or (K, d)``, ``intercept``, support indices."""

    coef: np.ndarray
    intercept: np.ndarray
    support: np.ndarray
    hard: bool  # False: the inputs were not separable and a soft margin (C = soft_C) was used
    C: float | None


def nn_predictor(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """``f(points (M, d)) -> logits (M, K)`` of the whole network, in eval mode without gradients."""
    param = next(model.parameters())

    def f(points: np.ndarray) -> np.ndarray:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                x = torch.as_tensor(np.asarray(points), dtype=param.dtype, device=param.device)
                return model(x).double().cpu().numpy()  # (M, K)
        finally:
            model.train(was_training)

    return f


def input_agreement(model: nn.Module, svm: InputSVM, X: np.ndarray, window: Sequence[float] | None,
                    resolution: int) -> float:
    """Fraction of a ``resolution``² grid over ``window`` (None: around X) where NN and input SVM agree."""
    _, _, G = P.make_grid(window if window is not None else P.auto_window(X), resolution)  # (R*R, 2)
    nn_pred = nn_predictor(model)(G).argmax(axis=1)  # (R*R,)
    return M.agreement(nn_pred, M.predict_classes(G, svm.coef, svm.intercept))


def _svm_title(svm: InputSVM) -> str:
    return "Linear SVM on inputs (hard margin)" if svm.hard else f"Linear SVM on inputs (soft, C={svm.C:g}: not separable)"


def draw_training_data(X: np.ndarray, y: np.ndarray, svm: InputSVM | None, fig_dir: Path, prefix: str,
                       run_dir: Path) -> list[FigureInfo]:
    support = svm.support if svm is not None and svm.hard else None
    path = P.plot_training_data(X, y, fig_dir / f"{prefix}training_data.png", support=support,
                                title=f"Training data ({len(y)} points)", dpi=_DPI)
    note = f"; rings: the {len(support)} support vectors of the hard-margin SVM on the inputs" if support is not None else ""
    return [FigureInfo("training_data", _rel(path, run_dir), f"Training data{note}.")]


def draw_input_space(model: nn.Module, svm: InputSVM, X: np.ndarray, y: np.ndarray,
                     windows: Sequence[Any], resolution: int, fig_dir: Path, prefix: str,
                     run_dir: Path) -> list[FigureInfo]:
    out = []
    f = nn_predictor(model)
    for i, window in enumerate(windows):
        suffix = "" if i == 0 else f"_w{i}"
        path = P.plot_input_space(f, (svm.coef, svm.intercept), X, y, fig_dir / f"{prefix}input_space{suffix}.png",
                                  support=svm.support if svm.hard else None, window=window,
                                  resolution=resolution, titles=("NN (whole network)", _svm_title(svm)), dpi=_DPI)
        where = "around the data" if window is None else f"window {tuple(window)}"
        out.append(FigureInfo("input_space", _rel(path, run_dir),
                              f"Input space, {where}: NN regions vs the linear SVM on the inputs."))
    return out


def draw_transformed(analysis: Any, label: str, resolution: int, fig_dir: Path, prefix: str,
                     run_dir: Path) -> list[FigureInfo]:
    """SVM | NN | overlay in the 2-D transformed space (skipped when D != 2)."""
    H = analysis.features
    if H.shape[1] != 2:
        return []
    s = analysis.summary
    overlay = f"Overlay: angle {s['angle_deg']:.2f}°, agreement {s['agreement_train']:.3f}"
    kind = "hard" if s.get("separable") else f"soft C={s.get('svm_C')}"
    mc = f", {s['svm_multiclass']}" if s.get("n_classes", 2) > 2 else ""
    path = P.plot_nn_vs_svm(analysis.nn_coef, analysis.nn_intercept, analysis.svm_coef, analysis.svm_intercept, H,
                            analysis.labels, analysis.support, fig_dir / f"{prefix}transformed{label}.png",
                            resolution=resolution, titles=(f"SVM on h ({kind}{mc})", "NN last layer", overlay),
                            dpi=_DPI)
    return [FigureInfo("transformed", _rel(path, run_dir),
                       f"Transformed space (last hidden layer, 2 units){mc}: SVM | NN | both boundaries.")]


_SVM_NAMES = {"crammer_singer": "Crammer-Singer", "ovr": "one-vs-rest"}


def draw_transformed_svms(analyses: dict[str, Any], resolution: int, fig_dir: Path, prefix: str,
                          run_dir: Path) -> list[FigureInfo]:
    """Every multi-class SVM of the same 2-D features against the one last layer (skipped for one SVM or D != 2).

    ``analyses`` maps ``"crammer_singer"`` / ``"ovr"`` to the analyses of the same network (same features, same
    head); the figure shows each SVM's regions and an overlay of the NN's and all SVMs' boundaries, titled with
    the layer's angle to each SVM and the angle between the SVMs.
    """
    if len(analyses) < 2:
        return []
    first = next(iter(analyses.values()))
    if first.features.shape[1] != 2:
        return []
    svms = [(_SVM_NAMES.get(mc, mc), a.svm_coef, a.svm_intercept) for mc, a in analyses.items()]
    angles = ", ".join(f"{_SVM_NAMES.get(mc, mc)} {a.summary['angle_deg']:.1f}°" for mc, a in analyses.items())
    (_, V1, _), (_, V2, _) = svms[:2]
    between = M.direction_angle(np.atleast_2d(V1), np.atleast_2d(V2))
    path = plot_nn_vs_svms(first.nn_coef, first.nn_intercept, svms, first.features, first.labels, first.support,
                           fig_dir / f"{prefix}transformed_svms.png", resolution=resolution,
                           title=f"NN to {angles}\n(SVMs {between:.1f}° apart)", dpi=_DPI)
    return [FigureInfo("transformed", _rel(path, run_dir),
                       f"Transformed space (2 units): {' | '.join(s[0] for s in svms)} SVM regions, and all "
                       f"boundaries with the NN's; last layer's angle to {angles}; the SVMs are {between:.1f}° "
                       "apart.")]


def draw_alignment(records: list[dict[str, Any]], title: str, fig_dir: Path, prefix: str,
                   run_dir: Path) -> list[FigureInfo]:
    rows = [r for r in records if r.get("angle_deg") is not None]
    if len(rows) < 2:
        return []
    path = P.plot_alignment_curves(rows, fig_dir / f"{prefix}alignment.png", title=title, dpi=_DPI)
    return [FigureInfo("alignment", _rel(path, run_dir),
                       "Angle, margin ratio and bias offset of the last layer vs the SVM during training.")]


def draw_snapshots(model: nn.Module, snap_dir: Path, X: np.ndarray, y: np.ndarray, space: str,
                   windows: Sequence[Any], resolution: int, fig_dir: Path, prefix: str,
                   run_dir: Path) -> list[FigureInfo]:
    """Boundary at the saved steps: the whole network in input space, or the head on h (D = 2)."""
    steps = snapshot_steps(snap_dir)
    if not steps:
        return []
    copy_ = copy.deepcopy(model).to("cpu")
    out = []
    if space == "transformed":
        items = []
        for s in steps:
            m = load_snapshot(copy_, snap_dir, s)
            view, head = analysis_view(m)
            if not hasattr(view, "features"):
                return []
            with torch.no_grad():
                H = view.features(torch.as_tensor(X, dtype=next(m.parameters()).dtype)).double().numpy()
            if H.shape[1] != 2:
                return []
            items.append((s, m.head.weight.detach().double().numpy(), m.head.bias.detach().double().numpy(), H))
        path = P.plot_snapshots(items, y, fig_dir / f"{prefix}snapshots.png", resolution=resolution, dpi=_DPI)
        return [FigureInfo("snapshots", _rel(path, run_dir),
                           f"Transformed space at steps {', '.join(map(str, steps))} (features move too).")]
    models = [copy.deepcopy(load_snapshot(copy_, snap_dir, s)) for s in steps]
    for i, window in enumerate(windows):
        suffix = "" if i == 0 else f"_w{i}"
        items = [(s, nn_predictor(m), X) for s, m in zip(steps, models)]
        path = P.plot_snapshots(items, y, fig_dir / f"{prefix}snapshots{suffix}.png",
                                window=window if window is not None else "shared", resolution=resolution,
                                xlabel="$x_1$", ylabel="$x_2$", dpi=_DPI)
        where = "around the data" if window is None else f"window {tuple(window)}"
        out.append(FigureInfo("snapshots", _rel(path, run_dir),
                              f"Input-space NN boundary at steps {', '.join(map(str, steps))}, {where}."))
    return out


def draw_sv_vs_loss(analysis: Any, X: np.ndarray, fig_dir: Path, prefix: str, run_dir: Path) -> list[FigureInfo]:
    """Training points with the SVM's support vectors ringed | with the k highest-loss points ringed."""
    support = np.asarray(analysis.support)
    k = len(support)
    if k == 0:
        return []
    loss = analysis.points["loss"].to_numpy()
    top = np.argsort(-loss, kind="stable")[:k]
    pts, xl, yl, where = ((analysis.features, "$h_1$", "$h_2$", "transformed space") if analysis.features.shape[1] == 2
                          else (X, "$x_1$", "$x_2$", "input space"))
    if pts.shape[1] != 2:
        return []
    a = P.plot_training_data(pts, analysis.labels, fig_dir / f"{prefix}support_vectors.png", support=support,
                             title=f"{k} support vectors (SVM on h)", xlabel=xl, ylabel=yl, dpi=_DPI)
    b = P.plot_training_data(pts, analysis.labels, fig_dir / f"{prefix}highest_loss.png", support=top,
                             title=f"{k} highest-loss points (NN)", xlabel=xl, ylabel=yl, dpi=_DPI)
    return [FigureInfo("sv_vs_loss", _rel(a, run_dir), f"Support vectors of the SVM on h, shown in the {where}."),
            FigureInfo("sv_vs_loss", _rel(b, run_dir), f"The same number of highest-loss points, in the {where}.")]


def _rel(path: Path, run_dir: Path) -> str:
    return Path(path).relative_to(run_dir).as_posix()
