"""The report of ``analyze``: ``report.md`` and its figures, written beside the saved analysis.

Figures (each from an :class:`~nnboundary.analysis.Analysis`, saved atomically under ``figures/``):

* ``pair_cosines.png`` (K > 2): cos(w_k − w_j, v_k − v_j) for every class pair, as a heatmap;
* ``margins.png``: the distributions of the training points' geometric margins under the NN head and the SVM;
* ``svm_nn_plane.png``: the features projected on the plane spanned by the SVM normal and the NN normal (the
  paper's picture of the transformed space, for any D), both boundaries drawn, support vectors marked. Both normals
  lie in that plane, so the two boundaries are exact lines there and every point sits on its true side of each. For
  K > 2 one panel per class pair, for the (up to three) pairs furthest from the SVM.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from nnboundary import metrics as M
from nnboundary.analysis import CLOSENESS, claim_status, verdict
from nnboundary.plot._grid import class_colors, display_subset, marker_size, new_figure, save_figure

__all__ = ["plane_projection", "plot_margin_distributions", "plot_pair_cosines", "plot_svm_nn_plane",
           "write_analysis_report"]


def _pair_vectors(W: np.ndarray, b: np.ndarray, pair: tuple[int, int]) -> tuple[np.ndarray, float]:
    S, s = M.class_scores(W, b)
    j, k = pair
    return S[k] - S[j], float(s[k] - s[j])  # (D,), scalar: class k is the positive side


def plane_projection(H: np.ndarray, v: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of H (N, D) in the orthonormal basis (u1, u2) of span(v, w): u1 = v/‖v‖, u2 ⟂ u1 in the plane.

    When w is parallel to v (the NN has converged to the SVM direction) u2 is the features' main direction orthogonal
    to u1, so the picture still shows the spread. Returns ``(P (N, 2), U (2, D))``.
    """
    u1 = v / np.linalg.norm(v)
    r = w - (w @ u1) * u1
    if np.linalg.norm(r) <= 1e-9 * np.linalg.norm(w):
        Hc = H - H.mean(axis=0)
        Hc = Hc - np.outer(Hc @ u1, u1)
        _, _, Vt = np.linalg.svd(Hc, full_matrices=False)
        r = Vt[0] if Vt.size else np.eye(H.shape[1])[int(np.argmin(np.abs(u1)))]
        r = r - (r @ u1) * u1
    u2 = r / np.linalg.norm(r)
    U = np.vstack([u1, u2])  # (2, D)
    return H @ U.T, U


def plot_pair_cosines(result: Any, path: str | os.PathLike, *, dpi: float = 120) -> Path:
    """Heatmap of the pair cosines cos(w_k − w_j, v_k − v_j) (K > 2); upper triangle = the pairs, the rest blank."""
    K = int(result.summary["n_classes"])
    if K < 3:
        raise ValueError(f"A pair-cosine heatmap needs K > 2 classes, got K = {K} (one pair: see summary['cosine']).")
    pairs = result.details[result.details["scope"] == "pair"]
    C = np.full((K, K), np.nan)
    for cls, cos in zip(pairs["classes"], pairs["cosine"].astype(float)):
        j, k = map(int, str(cls).split("-"))
        C[j, k] = C[k, j] = cos
    fig, axes = new_figure(1, 1, (0.55 * K + 3.2, 0.5 * K + 2.4))
    ax = axes[0, 0]
    lo = float(np.nanmin(C)) if np.isfinite(C).any() else 0.0
    im = ax.imshow(C, vmin=min(lo, 0.9), vmax=1.0, cmap="viridis")
    if K <= 12:
        for j in range(K):
            for k in range(K):
                if np.isfinite(C[j, k]):
                    ax.text(k, j, f"{C[j, k]:.3f}", ha="center", va="center", fontsize=7,
                            color="white" if C[j, k] < (min(lo, 0.9) + 1) / 2 else "black")
    ax.set_xticks(range(K))
    ax.set_yticks(range(K))
    ax.set_xlabel("class k")
    ax.set_ylabel("class j")
    ax.set_title("cos(w_k − w_j, v_k − v_j): NN vs SVM per class pair", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8, label="cosine (1 = same direction)")
    return save_figure(fig, path, dpi)


def plot_margin_distributions(result: Any, path: str | os.PathLike, *, dpi: float = 120) -> Path:
    """Histograms of every training point's geometric margin under the NN head and under the SVM."""
    pts = result.points
    m_nn = pts["margin_nn"].to_numpy(dtype=float)
    m_svm = pts["margin_svm"].to_numpy(dtype=float)
    both = np.concatenate([m_nn[np.isfinite(m_nn)], m_svm[np.isfinite(m_svm)]])
    lo, hi = (np.percentile(both, [0.5, 99.5]) if both.size else (0.0, 1.0))
    s = result.summary
    mins = [v for v in (s.get("nn_margin"), s.get("svm_margin")) if v is not None and np.isfinite(v)]
    lo = min([float(lo), *mins])  # robust limits that still show both margins; one outlier cannot squash the panel
    if hi <= lo:
        hi = lo + max(abs(lo), 1.0) * 0.1
    pad = 0.03 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    bins = np.linspace(lo, hi, 41)
    fig, axes = new_figure(1, 1, (6.4, 3.2))
    ax = axes[0, 0]
    ax.hist(np.clip(m_svm, lo, hi), bins=bins, alpha=0.55, color="tab:orange", label="SVM")
    ax.hist(np.clip(m_nn, lo, hi), bins=bins, alpha=0.55, color="tab:blue", label="NN head")
    for val, color, name in ((s.get("svm_margin"), "tab:orange", "SVM margin"),
                             (s.get("nn_margin"), "tab:blue", "NN margin")):
        if val is not None and np.isfinite(val):
            ax.axvline(val, color=color, ls="--", lw=1.2, label=f"{name} {val:.3g}")
    if lo < 0 < hi:
        ax.axvline(0.0, color="0.3", lw=0.8)
    ax.set_xlabel("geometric margin of a training point (clipped to the 0.5–99.5 % range)")
    ax.set_ylabel("points")
    ax.set_title(f"margins of the {len(m_nn)} training points; margin ratio {s.get('margin_ratio', float('nan')):.3g}",
                 fontsize=9)
    ax.legend(fontsize="small")
    return save_figure(fig, path, dpi)


def _worst_pairs(result: Any, n: int = 3) -> list[tuple[int, int]]:
    pairs = result.details[result.details["scope"] == "pair"]
    order = np.argsort(-pairs["angle_deg"].to_numpy(dtype=float), kind="stable")[:n]
    return [tuple(map(int, str(pairs["classes"].iloc[i]).split("-"))) for i in order]  # type: ignore[misc]


def plot_svm_nn_plane(result: Any, path: str | os.PathLike, *, dpi: float = 120) -> Path:
    """Features projected on the plane of the SVM normal and the NN normal; boundaries exact; support vectors marked."""
    H, y = result.features, result.labels
    K = int(result.summary["n_classes"])
    pairs = [(0, 1)] if K == 2 else _worst_pairs(result)
    fig, axes = new_figure(1, len(pairs), (max(5.6, 4.6 * len(pairs)), 4.4))
    colors = class_colors(K)
    support = np.zeros(len(y), dtype=bool)
    support[result.support] = True
    for ax, pair in zip(axes[0], pairs):
        v, c = _pair_vectors(result.svm_coef, result.svm_intercept, pair)
        w, beta = _pair_vectors(result.nn_coef, result.nn_intercept, pair)
        idx = np.flatnonzero(np.isin(y, pair))
        P, U = plane_projection(H[idx], v, w)
        show = display_subset(idx.size)
        ms = marker_size(show.size)
        for cls in pair:
            sel = show[y[idx][show] == cls]
            ax.scatter(P[sel, 0], P[sel, 1], s=ms, color=colors[cls], label=f"class {cls}", alpha=0.7, lw=0)
        sv = show[support[idx][show]]
        ax.scatter(P[sv, 0], P[sv, 1], s=ms * 3 + 10, facecolors="none", edgecolors="k", lw=0.8,
                   label=f"support vectors ({int(support[idx].sum())})")
        lo, hi = P.min(axis=0), P.max(axis=0)  # a square window: equal scales keep the true angle between the lines
        half = 0.55 * max(float((hi - lo).max()), 1e-12)
        mid = (lo + hi) / 2
        xs = np.array([mid[0] - half, mid[0] + half])
        ys = np.array([mid[1] - half, mid[1] + half])
        a_v = U @ v  # (2,): v in plane coordinates, (‖v‖, 0)
        a_w = U @ w  # (2,): w lies in the plane
        _line(ax, a_v, c, xs, ys, dict(color="k", lw=1.6), "SVM boundary")
        for off in (-1.0, 1.0):
            _line(ax, a_v, c - off, xs, ys, dict(color="0.4", lw=0.8, ls=":"), None)
        _line(ax, a_w, beta, xs, ys, dict(color="tab:red", lw=1.6, ls="--"), "NN boundary")
        ax.set_xlim(*xs)
        ax.set_ylim(*ys)
        ax.set_aspect("equal")
        row = result.details[(result.details["scope"] == "pair") & (result.details["classes"] == f"{pair[0]}-{pair[1]}")]
        ang = float(row["angle_deg"].iloc[0]) if len(row) else float("nan")
        ax.set_title(f"classes {pair[0]} vs {pair[1]}: NN {ang:.3g}° from the SVM", fontsize=9)
        ax.set_xlabel("along the SVM normal")
        ax.set_ylabel("NN normal, part orth. to the SVM normal")
        ax.legend(fontsize="x-small", loc="best")
    fig.suptitle("features on the plane of the SVM and NN normals\n(SVM margins dotted)", fontsize=9)
    return save_figure(fig, path, dpi)


def _line(ax: Any, a: np.ndarray, c: float, xs: np.ndarray, ys: np.ndarray, style: dict, label: str | None) -> None:
    """Draw a·p + c = 0 in plane coordinates p = (x, y) across the window."""
    if abs(a[1]) > abs(a[0]):
        ax.plot(xs, -(c + a[0] * xs) / a[1], label=label, **style)
    elif abs(a[0]) > 0:
        ax.plot(-(c + a[1] * ys) / a[0], ys, label=label, **style)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    try:
        return f"{float(v):.4g}"
    except (TypeError, ValueError):
        return str(v)


_REPORT_KEYS = (
    ("status", "does the claim apply (separable / not fitted / not separable)"),
    ("closeness", "how close the head is (converged / approaching / far)"),
    ("angle_deg", "angle between the NN head and the SVM (degrees)"),
    ("cosine", "cosine of that angle"),
    ("margin_ratio", "NN margin / SVM margin (1 = the max margin)"),
    ("nn_margin", "NN normalised margin"), ("svm_margin", "SVM margin"),
    ("bias_offset", "bias offset (SVM margin units)"),
    ("agreement_train", "share of training points classified alike"),
    ("agreement_test", "share of test points classified alike"),
    ("accuracy", "training accuracy of the network"), ("test_accuracy", "test accuracy"),
    ("n_support", "SVM support vectors"), ("sv_overlap_jaccard", "support vs smallest NN margins (Jaccard)"),
    ("nc1", "NC1 Tr(Σ_W Σ_B⁺)/K (→ 0)"), ("nc2_equinorm", "NC2 equinorm (→ 0)"),
    ("nc2_equiangular", "NC2 equiangularity (→ 0)"), ("nc3_self_duality", "NC3 self-duality (→ 0)"),
    ("nc4_ncc_mismatch", "NC4 NN vs nearest class mean disagreement (→ 0)"),
    ("svm_max_violation", "SVM certificate: largest constraint violation"),
)


def write_analysis_report(result: Any, out_dir: str | os.PathLike, *, title: str = "nnboundary analysis",
                          dpi: float = 120) -> Path:
    """Write ``report.md`` and ``figures/*.png`` for an analysis into ``out_dir``; returns the report's path.

    The report opens with the verdict (the words of ``reproduce``'s status and the closeness thresholds of
    :data:`nnboundary.analysis.CLOSENESS`), then the numbers and the figures. Files are written atomically.
    """
    from nnboundary._jsonio import atomic_write

    out = Path(out_dir)
    figs = out / "figures"
    s = result.summary
    drawn: list[tuple[str, str]] = []
    if int(s["n_classes"]) > 2:
        drawn.append((plot_pair_cosines(result, figs / "pair_cosines.png", dpi=dpi).name,
                      "Per class pair: cosine between the NN's and the SVM's pair normals."))
    drawn.append((plot_margin_distributions(result, figs / "margins.png", dpi=dpi).name,
                  "Geometric margins of every training point under the NN head and under the SVM."))
    drawn.append((plot_svm_nn_plane(result, figs / "svm_nn_plane.png", dpi=dpi).name,
                  "Features projected on the plane spanned by the SVM normal and the NN normal (exact boundaries)."))
    lines = [f"# {title}", "", f"**Verdict: {verdict(s)}**", ""]
    if claim_status(s) != "separable":
        lines += ["> The numbers below compare the head with the SVM, but they do not test the claim that the head "
                  "converges to the max-margin SVM: that claim is about separable features with every training point "
                  "fitted.", ""]
    lines += [f"Model head `{s.get('head')}`: N = {s.get('n_samples')} training points, D = {s.get('n_features')} "
              f"features, K = {s.get('n_classes')} classes. SVM: {s.get('svm')} (C = {s.get('svm_C')}, bias = "
              f"{s.get('svm_bias')}, multi-class = {s.get('svm_multiclass')}).", "",
              "| metric | value | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | {_fmt(s[k])} | {what} |" for k, what in _REPORT_KEYS if k in s]
    lines += ["", "Closeness thresholds (applied only when the claim applies): "
              + "; ".join(f"**{w}**: angle ≤ {a:g}° and margin ratio ≥ {r:g}" for w, a, r in CLOSENESS)
              + "; **far**: otherwise.", "", "## Figures", ""]
    for name, caption in drawn:
        lines += [f"![{caption}](figures/{name})", "", f"*{caption}*", ""]
    path = out / "report.md"
    atomic_write(path, lambda f: f.write("\n".join(lines).encode()), binary=True)
    return path
