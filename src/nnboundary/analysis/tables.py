"""The two tables of an :class:`~nnboundary.analysis.core.Analysis`: ``details`` (one row per scope: overall, each
class, each class pair, with the pair's anchor, offsets and activity) and ``points`` (one row per training point).

Kept apart from the summary's numbers: the in-memory analysis builds the tables on first access, and the streamed
analysis reuses the frame builders and the aggregate of the pair offsets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from nnboundary import metrics as M
from nnboundary.analysis.fitting import _ACTIVE_TOL, _svm_rule


def _pair_margins(H: np.ndarray, y: np.ndarray, V: np.ndarray, c: np.ndarray,
                  pair: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the points of classes j and k, their functional margins under the SVM's j-vs-k rule)."""
    Vs, cs = M.class_scores(V, c)
    j, k = pair
    idx = np.flatnonzero((y == j) | (y == k))
    d = H[idx] @ (Vs[k] - Vs[j]) + cs[k] - cs[j]
    return idx, np.where(y[idx] == k, d, -d)


def _pair_anchor(H: np.ndarray, y: np.ndarray, V: np.ndarray, c: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
    """Where to measure the offset of pair (j, k): the mean of the distinct points on the SVM's j-vs-k margin.

    Those points are fixed by the SVM's (unique) hyperplanes; its support set is not when points tie (e.g. a class
    collapsed to one point), so an anchor built from ``support_`` would depend on the solver. Repeated points count
    once, as they do for the SVM. A pair with no point on its margin (an inactive Crammer–Singer pair) is anchored
    at the mean of its points (every point, so that the sharded analysis gets it from the class sums).
    """
    idx, g = _pair_margins(H, y, V, c, pair)
    on_margin = idx[g <= 1 + _ACTIVE_TOL]
    if on_margin.size:
        return np.unique(H[on_margin], axis=0).mean(axis=0)
    return H[idx].mean(axis=0)


def _pair_active(H: np.ndarray, y: np.ndarray, V: np.ndarray, c: np.ndarray, pair: tuple[int, int]) -> bool:
    """Does some point of class j (k) meet the SVM's j-vs-k (k-vs-j) constraint with equality?"""
    _, g = _pair_margins(H, y, V, c, pair)
    return bool(g.size and g.min() <= 1 + _ACTIVE_TOL)


def _details_rows(H, y, W, b, V, c, est_reg, overall: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """The rows of the ``details`` table (:func:`_details_frame`): the overall row first, then each class (K > 2)
    and each class pair. ``overall``: the overall row's cosine, angle_deg, margin_nn and margin_svm when the caller
    has computed them already (the summary's)."""
    K = max(2, W.shape[0])
    Vr = cr = None
    if est_reg is not None:
        Vr, cr = _svm_rule(est_reg, K)
    if overall is None:
        overall = {"cosine": M.direction_cosine(W, V), "angle_deg": M.direction_angle(W, V),
                   "margin_nn": M.normalized_margin(H, y, W, b), "margin_svm": M.normalized_margin(H, y, V, c)}
    rows = [{"scope": "overall", "classes": "all", **{k: overall[k] for k in ("cosine", "angle_deg", "margin_nn",
                                                                             "margin_svm")}}]
    if K > 2:
        for k, cos in enumerate(M.class_cosines(W, V)):
            rows.append({"scope": "class", "classes": str(k), "cosine": cos,
                         "angle_deg": float(np.degrees(np.arccos(cos)))})
    for pair, cos in zip(M.class_pairs(K), M.pair_cosines(W, V)):
        a = _pair_anchor(H, y, V, c, pair)
        mn, ms = M.pair_margin(H, y, W, b, pair), M.pair_margin(H, y, V, c, pair)
        rows.append({
            "scope": "pair", "classes": f"{pair[0]}-{pair[1]}", "cosine": cos,
            "angle_deg": float(np.degrees(np.arccos(cos))), "margin_nn": mn, "margin_svm": ms,
            "bias_offset": M.bias_offset(W, b, V, c, a, pair),
            "bias_offset_gap": M.gap_offset(H, y, W, b, V, c, a, pair),
            "bias_offset_means": M.means_offset(H, y, W, b, V, c, a, pair),
            "bias_offset_reg": np.nan if Vr is None else M.bias_offset(W, b, Vr, cr, a, pair),
            "active": _pair_active(H, y, V, c, pair),
        })
    return rows


def _details_frame(rows: list[dict[str, Any]], overall_margin_ratio: float | None = None) -> pd.DataFrame:
    """The ``details`` table (one row per scope: overall and each class pair), margin ratios filled in;
    ``overall_margin_ratio``, if given, is the first (overall) row's."""
    def number(r: dict[str, Any], key: str) -> float:
        v = r.get(key)
        return np.nan if v is None else float(v)

    ratios = []
    for r in rows:
        nn, svm = number(r, "margin_nn"), number(r, "margin_svm")
        ratios.append(M.margin_ratio(nn, svm) if np.isfinite(nn) else np.nan)
    if overall_margin_ratio is not None:
        ratios[0] = overall_margin_ratio
    return pd.DataFrame([{**r, "margin_ratio": ratio} for r, ratio in zip(rows, ratios)],
                        columns=["scope", "classes", "cosine", "angle_deg", "margin_nn", "margin_svm",
                                 "margin_ratio", "bias_offset", "bias_offset_gap", "bias_offset_means",
                                 "bias_offset_reg", "active"])


def _aggregate_offsets(pairs: pd.DataFrame | list[dict[str, Any]], K: int) -> dict[str, float]:
    """The summary's offsets from the pair rows of ``details`` (a frame, or its rows as dicts): the pair's own for
    K = 2, else the mean absolute value over the active pairs (all pairs if none is active)."""
    cols = ("bias_offset", "bias_offset_gap", "bias_offset_means", "bias_offset_reg")
    if isinstance(pairs, pd.DataFrame):
        pairs = pairs.to_dict("records")
    if K == 2:
        return {col: float(pairs[0][col]) for col in cols}
    use = [r for r in pairs if bool(r["active"])]
    use = use if len(use) else pairs
    out = {}
    for col in cols:
        v = np.array([r[col] for r in use], dtype=float)
        v = v[np.isfinite(v)]
        out[col] = float(np.abs(v).mean()) if v.size else float("nan")
    return out


def _points_frame(H, y, W, b, V, c, loss, is_support, *, pred_nn=None, pred_svm=None,
                  margins_nn=None) -> pd.DataFrame:
    """The ``points`` table; ``pred_nn``, ``pred_svm``, ``margins_nn``: the predictions and the NN's functional
    margins when the caller has them already (computed here otherwise)."""
    nW, nV = M.margin_norm(W), M.margin_norm(V)
    m_nn = M.functional_margins(H, y, W, b) if margins_nn is None else margins_nn
    return pd.DataFrame({
        "label": y,
        "nn_pred": M.predict_classes(H, W, b) if pred_nn is None else pred_nn,
        "svm_pred": M.predict_classes(H, V, c) if pred_svm is None else pred_svm,
        "margin_nn": m_nn / (nW if nW > 0 else np.nan),
        "margin_svm": M.functional_margins(H, y, V, c) / (nV if nV > 0 else np.nan),
        "loss": loss,
        "is_support": is_support,
    })
