"""The analysis of features that are sharded over ranks or larger than memory (see
:func:`nnboundary.analysis.analyze_features`).

Under torchrun each rank holds a contiguous shard of the rows (the global order is the shards in rank order), and a
features file may be larger than memory. The analysis is then a few passes over chunks of the local rows whose
per-rank results are small (sums, minima, counts, the class scatter, one row per point of a few scalars) and are
combined with ``reducer.allgather`` in rank order. Every rank ends with the same numbers; they equal the in-memory
analysis of the concatenated shards up to the rounding of sums taken in another order (about 1e-15 relative).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nnboundary import metrics as M
from nnboundary.analysis.core import Analysis, _check_all_classes, _check_labels, _est_settings, _svm_meta, _version
from nnboundary.analysis.fitting import _ACTIVE_TOL, _regularized_like, _svm_rule, default_svm, fit_svms
from nnboundary.analysis.tables import _aggregate_offsets, _details_frame
from nnboundary.analysis.verdict import claim_status, closeness

#: Bytes of features read per chunk in the streamed passes (the chunk is converted to float64 in memory).
CHUNK_BYTES = 64 * 2 ** 20

#: User errors that every rank re-raises when one rank meets them (see :func:`_on_all_ranks`).
_RANK_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, RuntimeError, OSError, MemoryError)


def _on_all_ranks(fn: Any, reducer: Any = None) -> Any:
    """Run ``fn()`` on every rank; if it raises a user error on some rank, raise it on every rank.

    A rank that fails alone would leave the others waiting in their next collective until the process group times
    out; here every rank learns of the failure at once and raises the same error (the first failing rank's type and
    message), so a CLI exits on every rank with the same one line. Without a reducer, or with one rank, this is
    ``fn()``. The analysis's version of ``nnboundary.distributed.run_on_all``, for any reducer (the solver's
    contract: threads in tests, torch under torchrun), keeping the error's type (a ValueError stays one).

    Parameters
    ----------
    fn : callable() -> object
    reducer : object with ``rank``, ``world_size``, ``allgather``, default=None
    """
    if reducer is None or int(reducer.world_size) <= 1:
        return fn()
    out, err = None, None
    try:
        out = fn()
    except _RANK_ERRORS as exc:
        err = exc
    errors = reducer.allgather(None if err is None else (type(err), " ".join(str(err).split())))
    if err is not None:
        raise err
    for r, e in enumerate(errors):
        if e is not None:
            cls, msg = e
            try:
                raised = cls(f"{msg} (on rank {r})")
            except Exception:  # noqa: BLE001 - an exception class with another signature
                raised = ValueError(f"{msg} (on rank {r})")
            raise raised
    return out


def _chunk_rows(D: int) -> int:
    return max(1, CHUNK_BYTES // (8 * max(D, 1)))


def _chunks(n: int, D: int) -> range:
    return range(0, n, _chunk_rows(D))


def _f64(a: Any, i: int, j: int) -> np.ndarray:
    """Rows i:j of an array or memmap as an in-memory float64 array."""
    return np.asarray(a[i:j], dtype=np.float64)


def _allsum(red: Any, x: Any) -> Any:
    """The sum over ranks (taken in rank order, so every rank gets the same bits)."""
    parts = red.allgather(x)
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def _allmin(red: Any, x: np.ndarray) -> np.ndarray:
    return np.min(np.stack(red.allgather(np.asarray(x, dtype=np.float64))), axis=0)


def _allmax(red: Any, x: np.ndarray) -> np.ndarray:
    return np.max(np.stack(red.allgather(np.asarray(x, dtype=np.float64))), axis=0)


def _allcat(red: Any, x: np.ndarray) -> np.ndarray:
    return np.concatenate(red.allgather(np.asarray(x)))


def _n_correct(Z: np.ndarray, y: np.ndarray) -> int:
    """Samples whose largest logit is the label (single logit: z > 0), as :func:`~nnboundary.metrics.accuracy`."""
    pred = (Z[:, 0] > 0).astype(np.int64) if Z.shape[1] == 1 else Z.argmax(axis=1)
    return int((pred == y).sum())


def _check_shard(H: Any, y: Any, W: np.ndarray, b: np.ndarray, Z: Any, what: str, start: int = 0) -> np.ndarray:
    """The checks of :func:`_check_inputs` on one rank's shard, chunk by chunk (no full float64 copy of H)."""
    if H.ndim != 2:
        raise ValueError(f"{what} features must have shape (N, D), got {H.shape}.")
    if H.shape[1] != W.shape[1]:
        raise ValueError(f"{what} features have {H.shape[1]} columns, but the head expects {W.shape[1]}. Extract "
                         "features with the same head.")
    if not (np.isfinite(W).all() and np.isfinite(b).all()):
        raise ValueError("The head's weights contain NaN/inf; the network diverged. Lower the learning rate.")
    n = H.shape[0]
    for i in _chunks(n, H.shape[1]):
        bad = ~np.isfinite(_f64(H, i, i + _chunk_rows(H.shape[1]))).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad) + i + start
            raise ValueError(f"{what} features contain NaN/inf (first rows: {rows[:5].tolist()}). Check the inputs "
                             "and the model for overflow.")
    if Z is not None and tuple(Z.shape) != (n, W.shape[0]):
        raise ValueError(f"logits have shape {tuple(Z.shape)}, expected {(n, W.shape[0])}.")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    return _check_labels(y, n, W.shape[0], what)


@dataclass
class _Shard:
    """One rank's rows: features H (n, D) (array or memmap), labels y (n,), logits Z (n, K) or None, and where the
    rows start in the global order."""

    H: Any
    y: np.ndarray
    Z: Any
    start: int
    n_total: int


def _shard(red: Any, H: Any, y: Any, W: np.ndarray, b: np.ndarray, Z: Any, what: str) -> _Shard:
    sizes = red.allgather(int(H.shape[0]) if getattr(H, "ndim", 0) >= 1 else 0)
    start = int(sum(sizes[: red.rank]))
    y = _on_all_ranks(lambda: _check_shard(H, y, W, b, Z, what, start), red)
    if sum(sizes) == 0:
        raise ValueError(f"The {what} data is empty (0 samples); pass at least one sample per class.")
    return _Shard(H=H, y=y, Z=Z, start=start, n_total=int(sum(sizes)))


def _logits_chunk(sh: _Shard, Hc: np.ndarray, i: int, j: int, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    return Hc @ W.T + b if sh.Z is None else _f64(sh.Z, i, j)


def _nc_shift(red: Any, H: Any) -> np.ndarray:
    """The centre of the NC sums: the mean of the first chunk of the global data (as the in-memory analysis)."""
    first = np.asarray(H[: min(8192, H.shape[0])], dtype=np.float64).mean(axis=0) if H.shape[0] else None
    return next(s for s in red.allgather(first) if s is not None)


def _pass_head(red: Any, sh: _Shard, W: np.ndarray, b: np.ndarray, K: int) -> dict[str, Any]:
    """First pass (the head only): per point NN margin, prediction and loss; the NC sums; loss and accuracy.

    Time O(n·D·(K + D)) per rank (the D×D scatter dominates), memory O(K·D + D² + chunk·D) plus 3 numbers per point.
    """
    n, D = sh.H.shape
    acc = M.NeuralCollapseAccumulator(K, D)
    acc.shift = _nc_shift(red, sh.H)
    m_nn, pred, loss = np.empty(n), np.empty(n, dtype=np.int64), np.empty(n)
    correct = 0
    step = _chunk_rows(D)
    for i in range(0, n, step):
        j = min(i + step, n)
        Hc, yc = _f64(sh.H, i, j), sh.y[i:j]
        Zc = _logits_chunk(sh, Hc, i, j, W, b)
        acc.update(Hc, yc)
        m_nn[i:j] = M.functional_margins(Hc, yc, W, b)
        pred[i:j] = M.predict_classes(Hc, W, b)
        loss[i:j] = M.cross_entropy(Zc, yc)
        correct += _n_correct(Zc, yc)
    acc.counts = _allsum(red, acc.counts)
    acc.sums = _allsum(red, acc.sums)
    acc.scatter = _allsum(red, acc.scatter)
    return {"acc": acc, "m_nn": m_nn, "pred": pred, "loss": loss, "correct": _allsum(red, correct)}


def _rows_by_class(y: np.ndarray, K: int) -> list[np.ndarray]:
    """Row indices of each class in y, in order: O(n log n) once instead of a mask per class pair."""
    order = np.argsort(y, kind="stable")
    return np.split(order, np.searchsorted(y[order], np.arange(1, K)))


def _pair_keys(rows: np.ndarray) -> list[bytes]:
    import hashlib

    return [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in rows]


class _PairStats:
    """Per class pair (j, k), what ``_details`` needs from the data, over this rank's rows.

    ``nn_min``/``svm_min``: the smallest signed pair score under the head and under the SVM (functional pair
    margins); ``lo_j``/``hi_k``: the largest class-j and smallest class-k position along the SVM pair normal (the
    gap); ``on_sum``/``on_keys``: the sum and the row digests of the distinct points on the SVM's pair margin (the
    anchor; a point repeated counts once, as in the in-memory ``np.unique``).
    """

    def __init__(self, pairs: list[tuple[int, int]], D: int) -> None:
        P = len(pairs)
        self.pairs = pairs
        self.nn_min, self.svm_min = np.full(P, np.inf), np.full(P, np.inf)
        self.hi_j, self.lo_k = np.full(P, -np.inf), np.full(P, np.inf)
        self.on_sum = np.zeros((P, D))
        self.on_keys: list[dict[bytes, None]] = [{} for _ in pairs]

    def update(self, Hc: np.ndarray, yc: np.ndarray, Ws: np.ndarray, bs: np.ndarray, Vs: np.ndarray,
               cs: np.ndarray) -> None:
        rows = _rows_by_class(yc, Vs.shape[0])
        for p, (j, k) in enumerate(self.pairs):
            sel = np.concatenate([rows[j], rows[k]])
            if not sel.size:
                continue
            Hp, sgn = Hc[sel], np.where(yc[sel] == k, 1.0, -1.0)
            self.nn_min[p] = min(self.nn_min[p], float((sgn * (Hp @ (Ws[k] - Ws[j]) + bs[k] - bs[j])).min()))
            v = Vs[k] - Vs[j]
            g = sgn * (Hp @ v + cs[k] - cs[j])
            self.svm_min[p] = min(self.svm_min[p], float(g.min()))
            nv = np.linalg.norm(v)
            if nv > 0:
                pos = Hp @ (v / nv)
                if (sgn < 0).any():
                    self.hi_j[p] = max(self.hi_j[p], float(pos[sgn < 0].max()))
                if (sgn > 0).any():
                    self.lo_k[p] = min(self.lo_k[p], float(pos[sgn > 0].min()))
            on = Hp[g <= 1 + _ACTIVE_TOL]
            seen = self.on_keys[p]
            for key, row in zip(_pair_keys(on), on):
                if key not in seen:
                    seen[key] = None
                    self.on_sum[p] += row

    def reduce(self, red: Any, sh: _Shard, Vs: np.ndarray, cs: np.ndarray) -> None:
        """Combine over ranks; a point on a pair's margin that also lies on an earlier rank counts there only."""
        self.nn_min, self.svm_min = _allmin(red, self.nn_min), _allmin(red, self.svm_min)
        self.hi_j, self.lo_k = _allmax(red, self.hi_j), _allmin(red, self.lo_k)
        keys = red.allgather([list(k) for k in self.on_keys])
        earlier = [set().union(*(keys[r][p] for r in range(red.rank))) for p in range(len(self.pairs))]
        dup = [set(self.on_keys[p]) & earlier[p] for p in range(len(self.pairs))]
        if any(dup):  # rare (a point repeated across shards on a margin): take those rows out again
            self._remove(sh, Vs, cs, dup)
        self.on_count = np.array([len(set().union(*(keys[r][p] for r in range(red.world_size))))
                                  for p in range(len(self.pairs))])
        self.on_sum = _allsum(red, self.on_sum)

    def _remove(self, sh: _Shard, Vs: np.ndarray, cs: np.ndarray, dup: list[set[bytes]]) -> None:
        n, D = sh.H.shape
        step = _chunk_rows(D)
        for i in range(0, n, step):
            Hc, yc = _f64(sh.H, i, min(i + step, n)), sh.y[i : i + step]
            rows = _rows_by_class(yc, Vs.shape[0])
            for p, (j, k) in enumerate(self.pairs):
                if not dup[p]:
                    continue
                sel = np.concatenate([rows[j], rows[k]])
                Hp, sgn = Hc[sel], np.where(yc[sel] == k, 1.0, -1.0)
                on = Hp[sgn * (Hp @ (Vs[k] - Vs[j]) + cs[k] - cs[j]) <= 1 + _ACTIVE_TOL]
                for key, row in zip(_pair_keys(on), on):
                    if key in dup[p]:
                        dup[p].discard(key)
                        self.on_sum[p] -= row


def _pass_svm(red: Any, sh: _Shard, W: np.ndarray, b: np.ndarray, V: np.ndarray, c: np.ndarray,
              Vr: np.ndarray | None, cr: np.ndarray | None, means: np.ndarray, pred_nn: np.ndarray,
              K: int) -> dict[str, Any]:
    """Second pass (after the SVM fit): SVM margins and predictions, the pair statistics, NC4, the regularised SVM.

    Time O(n·D·K²) per rank for the K(K−1)/2 pairs (O(n·D) for K = 2); memory O(K²·D + chunk·D) plus 2 numbers per
    point and 16 bytes per point on a pair's SVM margin.
    """
    n, D = sh.H.shape
    Ws, bs = M.class_scores(W, b)
    Vs, cs = M.class_scores(V, c)
    stats = _PairStats(M.class_pairs(K), D)
    m_svm, pred_svm = np.empty(n), np.empty(n, dtype=np.int64)
    reg_min, reg_agree, ncc_miss = np.inf, 0, 0
    lo, hi = np.full(D, np.inf), np.full(D, -np.inf)
    step = _chunk_rows(D)
    for i in range(0, n, step):
        j = min(i + step, n)
        Hc, yc = _f64(sh.H, i, j), sh.y[i:j]
        m_svm[i:j] = M.functional_margins(Hc, yc, V, c)
        pred_svm[i:j] = M.predict_classes(Hc, V, c)
        stats.update(Hc, yc, Ws, bs, Vs, cs)
        ncc_miss += int((M.ncc_predict(Hc, means) != pred_nn[i:j]).sum())
        lo, hi = np.minimum(lo, Hc.min(axis=0)), np.maximum(hi, Hc.max(axis=0))
        if Vr is not None:
            reg_min = min(reg_min, float(M.functional_margins(Hc, yc, Vr, cr).min()))
            reg_agree += int((M.predict_classes(Hc, Vr, cr) == pred_nn[i:j]).sum())
    stats.reduce(red, sh, Vs, cs)
    return {"m_svm": m_svm, "pred_svm": pred_svm, "pairs": stats, "ncc_miss": _allsum(red, ncc_miss),
            "reg_min": float(_allmin(red, np.array([reg_min]))[0]), "reg_agree": _allsum(red, reg_agree),
            "lo": _allmin(red, lo), "hi": _allmax(red, hi)}


def _margin_over_norm(m_min: float, W: np.ndarray) -> float:
    nrm = M.margin_norm(W)
    return float(m_min / nrm) if nrm > 0 and np.isfinite(m_min) else float("nan")


def _details_streamed(W, b, V, c, est_reg, acc, st: _PairStats, nn_margin: float, svm_margin: float,
                      K: int) -> pd.DataFrame:
    """The frame of :func:`_details` from the pair statistics and the class sums of the streamed passes."""
    Vr = cr = None
    if est_reg is not None:
        Vr, cr = _svm_rule(est_reg, K)
    Ws, bs = M.class_scores(W, b)
    Vs, cs = M.class_scores(V, c)
    means, counts = acc.class_means(), acc.counts
    rows = [{"scope": "overall", "classes": "all", "cosine": M.direction_cosine(W, V),
             "angle_deg": M.direction_angle(W, V), "margin_nn": nn_margin, "margin_svm": svm_margin}]
    if K > 2:
        for k, cos in enumerate(M.class_cosines(W, V)):
            rows.append({"scope": "class", "classes": str(k), "cosine": cos,
                         "angle_deg": float(np.degrees(np.arccos(cos)))})
    for p, (pair, cos) in enumerate(zip(st.pairs, M.pair_cosines(W, V))):
        j, k = pair
        if st.on_count[p]:
            a = st.on_sum[p] / st.on_count[p]
        else:
            a = (counts[j] * means[j] + counts[k] * means[k]) / (counts[j] + counts[k])
        w, beta, v, cc = Ws[k] - Ws[j], bs[k] - bs[j], Vs[k] - Vs[j], cs[k] - cs[j]
        nw, nv = np.linalg.norm(w), np.linalg.norm(v)
        gap = means_off = float("nan")
        if nv > 0:
            s_nn = -cc / nv + M.boundary_shift(w, beta, v, cc, a)
            gj, gk = st.hi_j[p], st.lo_k[p]
            if np.isfinite(gj) and np.isfinite(gk) and gk > gj:
                gap = float((s_nn - (gj + gk) / 2) / ((gk - gj) / 2))
            mj, mk = means[j] @ (v / nv), means[k] @ (v / nv)
            if mk != mj:
                means_off = float((s_nn - (mj + mk) / 2) / ((mk - mj) / 2))
        rows.append({
            "scope": "pair", "classes": f"{j}-{k}", "cosine": cos, "angle_deg": float(np.degrees(np.arccos(cos))),
            "margin_nn": float(st.nn_min[p] / nw) if nw > 0 and np.isfinite(st.nn_min[p]) else float("nan"),
            "margin_svm": float(st.svm_min[p] / nv) if nv > 0 and np.isfinite(st.svm_min[p]) else float("nan"),
            "bias_offset": M.bias_offset(W, b, V, c, a, pair), "bias_offset_gap": gap, "bias_offset_means": means_off,
            "bias_offset_reg": np.nan if Vr is None else M.bias_offset(W, b, Vr, cr, a, pair),
            "active": bool(st.svm_min[p] <= 1 + _ACTIVE_TOL),
        })
    return _details_frame(rows)


def _test_streamed(red: Any, H_test: Any, y_test: Any, W, b, V, c, logits_test: Any) -> dict[str, Any]:
    """agreement_test, test_loss, test_accuracy over every rank's test shard, chunk by chunk."""
    sh = _shard(red, H_test, y_test, W, b, logits_test, "test")
    n, D = sh.H.shape
    agree, loss, correct = 0, 0.0, 0
    step = _chunk_rows(D)
    for i in range(0, n, step):
        j = min(i + step, n)
        Hc, yc = _f64(sh.H, i, j), sh.y[i:j]
        Zc = _logits_chunk(sh, Hc, i, j, W, b)
        agree += int((M.predict_classes(Hc, W, b) == M.predict_classes(Hc, V, c)).sum())
        loss += float(M.cross_entropy(Zc, yc).sum())
        correct += _n_correct(Zc, yc)
    agree, loss, correct = _allsum(red, np.array([agree, loss, correct], dtype=np.float64))
    N = sh.n_total
    return {"n_test": N, "agreement_test": agree / N, "test_loss": loss / N, "test_accuracy": correct / N}


def _check_streamed_memory(N: int, D: int, K: int, world: int) -> None:
    """Refuse before the passes when what the streamed analysis keeps cannot fit: about ten float64 numbers per
    point (the gathered per-point table and its sorts), the per-rank class sums and scatters ((world + 1) copies of
    D² + K·D) and two chunks of rows (:data:`CHUNK_BYTES`). The SVM solver checks its own needs."""
    from nnboundary.svm import check_memory

    needed = 8.0 * (10 * N + (world + 1) * (D * D + K * D)) + 2 * CHUNK_BYTES
    check_memory(needed, f"The streamed analysis of {N} points x {D} features ({K} classes)",
                 "Analyse a subset of the points (the per-point table grows with N), or run on a machine with more "
                 "memory.")


def _analyze_streamed(H, y, W, b, *, logits, svm, svm_regularized, H_test, y_test, logits_test, soft_C,
                      grid_resolution, init_support, init_support_regularized, head_name, progress, svm_fitted,
                      reducer) -> Analysis:
    """:func:`analyze_features` over this rank's shard (``reducer``) and/or a memory-mapped H, in chunks.

    Three passes over the local rows (head, SVM fit, SVM) read H chunk by chunk (:data:`CHUNK_BYTES`); nothing of
    size N·D is ever held in memory beyond what the SVM solver itself needs. Per point, 6 numbers are kept and
    gathered (the ``points`` table, the support-vector overlaps); everything else is a per-rank sum, minimum or
    maximum combined over the ranks.
    """
    from nnboundary.svm import LocalReducer

    red = LocalReducer() if reducer is None else reducer
    has_bias = b is not None
    W = np.atleast_2d(np.asarray(W, dtype=np.float64))
    b = np.zeros(W.shape[0]) if b is None else np.atleast_1d(np.asarray(b, dtype=np.float64))
    K = max(2, W.shape[0])
    sh = _shard(red, H, y, W, b, logits, "training")
    _check_streamed_memory(sh.n_total, sh.H.shape[1], K, red.world_size)
    head = _pass_head(red, sh, W, b, K)
    acc = head["acc"]
    _check_all_classes(np.flatnonzero(acc.counts), K)  # global counts: the same answer on every rank
    if svm is None:
        svm = default_svm(bias="free" if has_bias else "none")
    if svm_regularized is None:
        svm_regularized = _regularized_like(svm) if has_bias else False
    show = progress and red.rank == 0
    est, separable, est_reg = fit_svms(sh.H, sh.y, svm, svm_regularized, soft_C=soft_C, init_support=init_support,
                                       init_support_regularized=init_support_regularized, progress=show,
                                       fitted=svm_fitted, reducer=reducer, n_total=sh.n_total)
    V, c = _svm_rule(est, K)
    Vr = cr = None
    if est_reg is not None:
        Vr, cr = _svm_rule(est_reg, K)
    sv = _pass_svm(red, sh, W, b, V, c, Vr, cr, acc.class_means(), head["pred"], K)
    m_nn, m_svm = _allcat(red, head["m_nn"]), _allcat(red, sv["m_svm"])  # (N,) each, in the global order
    loss_i, labels = _allcat(red, head["loss"]), _allcat(red, sh.y)
    pred_nn, pred_svm = _allcat(red, head["pred"]), _allcat(red, sv["pred_svm"])
    N = sh.n_total
    sup = getattr(est, "support_", None)
    support = (np.unique(np.asarray(sup, dtype=np.int64)) if sup is not None
               else np.flatnonzero(m_svm <= 1 + _ACTIVE_TOL))
    nn_margin, svm_margin = _margin_over_norm(m_nn.min(), W), _margin_over_norm(m_svm.min(), V)
    if separable is None:
        separable = True if (nn_margin > 0 or svm_margin > 0) else None

    s: dict[str, Any] = {"n_samples": int(N), "n_features": int(sh.H.shape[1]), "n_classes": int(K),
                         "head": head_name, "separable": separable}
    s.update(_svm_meta(est))
    s["cosine"], s["angle_deg"] = M.direction_cosine(W, V), M.direction_angle(W, V)
    s["nn_margin"], s["svm_margin"] = nn_margin, svm_margin
    s["margin_ratio"] = M.margin_ratio(nn_margin, svm_margin)
    details = _details_streamed(W, b, V, c, est_reg, acc, sv["pairs"], nn_margin, svm_margin, K)
    offsets = _aggregate_offsets(details[details["scope"] == "pair"], K)
    s.update(offsets)
    for col, val in offsets.items():
        details.loc[details["scope"] == "overall", col] = val
    details.loc[details["scope"] == "overall", "margin_ratio"] = s["margin_ratio"]
    s["agreement_train"] = M.agreement(pred_nn, pred_svm)
    if sh.H.shape[1] == 2:
        s["agreement_grid"] = M.grid_agreement(np.stack([sv["lo"], sv["hi"]]), W, b, V, c,
                                               resolution=grid_resolution)
    s["n_support"] = int(support.size)
    s["sv_overlap_precision"], s["sv_overlap_jaccard"] = M.sv_overlap(support, m_nn)
    s["sv_overlap_precision_loss"], s["sv_overlap_jaccard_loss"] = M.sv_overlap(support, -loss_i)
    s["loss"], s["accuracy"] = float(loss_i.mean()), float(head["correct"] / N)
    s["weight_norm"], s["bias_norm"] = M.weight_norm(W), float(np.linalg.norm(b))
    s.update(acc.compute(W, b))
    s["nc4_ncc_mismatch"] = float(sv["ncc_miss"] / N)
    if est_reg is not None:
        s["cosine_reg"], s["angle_deg_reg"] = M.direction_cosine(W, Vr), M.direction_angle(W, Vr)
        s["margin_ratio_reg"] = M.margin_ratio(nn_margin, _margin_over_norm(sv["reg_min"], Vr))
        s["agreement_train_reg"] = float(sv["reg_agree"] / N)
    if H_test is not None:
        s.update(_test_streamed(red, H_test, y_test, W, b, V, c, logits_test))
    s["status"], s["closeness"] = claim_status(s), closeness(s)

    is_sup = np.zeros(N, dtype=bool)
    is_sup[support] = True
    nW, nV = M.margin_norm(W), M.margin_norm(V)
    points = pd.DataFrame({"label": labels, "nn_pred": pred_nn, "svm_pred": pred_svm,
                           "margin_nn": m_nn / (nW if nW > 0 else np.nan),
                           "margin_svm": m_svm / (nV if nV > 0 else np.nan), "loss": loss_i, "is_support": is_sup})
    one = red.world_size == 1
    settings = {
        "format": 1, "head": head_name, "soft_C": soft_C, "grid_resolution": grid_resolution,
        "svm": _est_settings(svm), "svm_regularized": None if est_reg is None else _est_settings(svm_regularized),
        "nnboundary_version": _version(), "world_size": int(red.world_size), "streamed": True,
    }
    if isinstance(H, np.memmap) and H.filename:
        settings["features_file"] = str(H.filename) if one else None
    return Analysis(summary=s, details=details, points=points, svm=est, svm_regularized=est_reg,
                    features=sh.H if one else None, labels=labels, logits=(sh.Z if one else None), nn_coef=W,
                    nn_intercept=b, settings=settings,
                    features_test=H_test if one else None, labels_test=None if (H_test is None or not one) else
                    np.asarray(y_test), logits_test=logits_test if one else None, rank=int(red.rank))
