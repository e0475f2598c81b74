"""How far a network's last layer is from the max-margin SVM: pure functions on numpy arrays.

Notation (every signature uses these letters)::

    N samples · D feature dim · K classes (K >= 2)
    H (N, D) penultimate features        y (N,) labels in 0..K-1
    W (K, D), b (K,)  NN head            V (K, D), c (K,)  SVM
    A single-logit head (1, D), (1,) and a binary SVM (1, D), (1,) score class 1 against class 0;
    every function accepts them and treats them as the class scores (0, w), (0, b).

Conventions:

* Class scores ``s_k(h) = w_k·h + b_k`` decide ``argmax_k s_k``. Adding one vector to every row of
  W (one number to every b_k) changes no decision, and gradient descent on softmax cross-entropy
  keeps the row mean of W at its initial value, so multi-class comparisons use the **row-centred**
  ``W̃ = W − mean_k w_k``.
* Pair (j, k), j < k, compares ``w_k − w_j`` with ``v_k − v_j`` (class k is the "positive" side).
  For K = 2 the only pair (0, 1) *is* the binary problem: ``w₁ − w₀`` against the SVM's ``v``.
* Margins use the norm the SVM minimises: ``‖w₁ − w₀‖`` for K = 2 and ``‖W̃‖_F`` for K > 2
  (the Crammer–Singer problem ``min ‖W‖_F² s.t. (w_y − w_k)·h + b_y − b_k ≥ 1``), so the SVM's
  own normalised margin equals its ``margin_`` and the NN's ratio to it is at most 1 when the SVM
  is a free-bias hard-margin one.

Everything is float64 numpy; nothing here imports torch.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

__all__ = [
    "class_scores",
    "center_rows",
    "direction_cosine",
    "direction_angle",
    "class_cosines",
    "pair_cosines",
    "class_pairs",
    "functional_margins",
    "margin_norm",
    "normalized_margin",
    "pair_margin",
    "margin_ratio",
    "boundary_shift",
    "bias_offset",
    "gap_offset",
    "means_offset",
    "predict_classes",
    "agreement",
    "feature_grid",
    "grid_agreement",
    "sv_overlap",
    "cross_entropy",
    "accuracy",
    "weight_norm",
    "NC_KEYS",
    "NeuralCollapseAccumulator",
    "ncc_predict",
    "neural_collapse",
    "fit_inverse_log",
    "INVERSE_LOG_RULE",
    "inverse_log_fit_holds",
]


# ----------------------------------------------------------------------------- shapes


def class_scores(W: np.ndarray, b: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A head as K >= 2 rows of class scores.

    Parameters
    ----------
    W : ndarray of shape (K, D) or (1, D)
        A (1, D) head (single logit, or a binary SVM's ``coef_``) scores class 1 against class 0.
    b : ndarray of shape (K,) or (1,), default=None (zeros)

    Returns
    -------
    W : ndarray of shape (max(K, 2), D)
        ``[[0…0], w]`` for a (1, D) input, else a float64 copy of W.
    b : ndarray of shape (max(K, 2),)
    """
    W = np.atleast_2d(np.asarray(W, dtype=np.float64))
    b = np.zeros(W.shape[0]) if b is None else np.atleast_1d(np.asarray(b, dtype=np.float64))
    if b.shape != (W.shape[0],):
        raise ValueError(f"b has shape {b.shape} but W has {W.shape[0]} rows; pass one bias per row of W.")
    if W.shape[0] == 1:
        return np.vstack([np.zeros_like(W), W]), np.array([0.0, b[0]])
    return W.copy(), b.copy()


def center_rows(W: np.ndarray) -> np.ndarray:
    """``W − mean of its rows``, shape (K, D) -> (K, D). Decisions of argmax W·h are unchanged."""
    W = np.asarray(W, dtype=np.float64)
    return W - W.mean(axis=0, keepdims=True)


def class_pairs(K: int) -> list[tuple[int, int]]:
    """All pairs (j, k) with 0 <= j < k < K, in lexicographic order."""
    return list(combinations(range(K), 2))


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return float("nan")
    return float(np.clip(a.ravel() @ b.ravel() / (na * nb), -1.0, 1.0))


def _same_k(W: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    W, _ = class_scores(W)
    V, _ = class_scores(V)
    if W.shape != V.shape:
        raise ValueError(
            f"The NN head has shape {W.shape} and the SVM {V.shape} (as class scores); fit the SVM "
            "on the same features and the same classes as the head."
        )
    return W, V


# ----------------------------------------------------------------------------- direction


def direction_cosine(W: np.ndarray, V: np.ndarray) -> float:
    """Cosine between the NN direction and the SVM direction, ignoring scale.

    K = 2: ``cos(w₁ − w₀, v₁ − v₀)`` (a (1, D) SVM supplies v directly).
    K > 2: ``⟨W̃, Ṽ⟩_F / (‖W̃‖_F ‖Ṽ‖_F)`` with row-centred W̃, Ṽ, flattened — invariant to adding a
    vector to every row of W.

    Parameters
    ----------
    W : ndarray of shape (K, D) or (1, D)
    V : ndarray of shape (K, D) or (1, D)

    Returns
    -------
    cosine : float in [-1, 1]
        1 means the head points along the max-margin solution; under gradient descent on
        separable data, 1 − cosine shrinks like 1 / log²(t). NaN if a direction is zero.
    """
    W, V = _same_k(W, V)
    if W.shape[0] == 2:
        return _cos(W[1] - W[0], V[1] - V[0])
    return _cos(center_rows(W), center_rows(V))


def direction_angle(W: np.ndarray, V: np.ndarray) -> float:
    """Angle in degrees, ``arccos(direction_cosine(W, V))``, in [0, 180].

    0 means the head points along the max-margin solution; under gradient descent on separable
    data it shrinks like 1 / log(t) (Soudry et al. 2018).
    """
    return float(np.degrees(np.arccos(direction_cosine(W, V))))


def class_cosines(W: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Per-class cosines ``cos(w̃_k, ṽ_k)`` of the row-centred heads, shape (K,).

    For K = 2 both entries equal the binary cosine (centred rows are ±(w₁ − w₀)/2).
    """
    W, V = _same_k(W, V)
    Wc, Vc = center_rows(W), center_rows(V)
    return np.array([_cos(Wc[k], Vc[k]) for k in range(W.shape[0])])


def pair_cosines(W: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Per-pair cosines ``cos(w_k − w_j, v_k − v_j)`` for the pairs of :func:`class_pairs`, shape (P,).

    The pairwise difference is what decides between classes j and k, so these do not depend on
    row centring.
    """
    W, V = _same_k(W, V)
    return np.array([_cos(W[k] - W[j], V[k] - V[j]) for j, k in class_pairs(W.shape[0])])


# ----------------------------------------------------------------------------- margins


def _check_hy(H: np.ndarray, y: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    H = np.asarray(H, dtype=np.float64)
    y = np.asarray(y)
    if H.ndim != 2 or H.shape[1] != W.shape[1]:
        raise ValueError(f"H has shape {H.shape}, but the head expects (N, {W.shape[1]}).")
    if y.shape != (H.shape[0],):
        raise ValueError(f"y has shape {y.shape}, expected ({H.shape[0]},), one label per row of H.")
    if y.size and (y.min() < 0 or y.max() >= W.shape[0]):
        raise ValueError(f"Labels must lie in 0..{W.shape[0] - 1}; got {y.min()}..{y.max()}.")
    return H, y.astype(np.int64)


def functional_margins(H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Per-point functional margin ``m_i = min_{k≠y_i} (w_{y_i} − w_k)·h_i + b_{y_i} − b_k``.

    Parameters
    ----------
    H : ndarray of shape (N, D)
    y : ndarray of shape (N,), labels in 0..K-1
    W : ndarray of shape (K, D) or (1, D)
    b : ndarray of shape (K,) or (1,), default=None

    Returns
    -------
    m : ndarray of shape (N,)
        Positive where point i is classified correctly; the SVM's constraint is ``m_i >= 1``.
    """
    W, b = class_scores(W, b)
    H, y = _check_hy(H, y, W)
    S = H @ W.T + b  # (N, K)
    own = S[np.arange(len(y)), y]  # (N,)
    S[np.arange(len(y)), y] = -np.inf
    return own - S.max(axis=1)


def margin_norm(W: np.ndarray) -> float:
    """The norm the SVM minimises: ``‖w₁ − w₀‖`` for K = 2, ``‖W̃‖_F`` (row-centred) for K > 2."""
    W, _ = class_scores(W)
    if W.shape[0] == 2:
        return float(np.linalg.norm(W[1] - W[0]))
    return float(np.linalg.norm(center_rows(W)))


def normalized_margin(H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray | None = None) -> float:
    """Geometric margin ``min_i m_i / margin_norm(W)`` (see :func:`functional_margins`).

    Scale-free. For the SVM itself this is its ``margin_``; a negative value means some point is
    misclassified. NaN if the head is zero.
    """
    m = functional_margins(H, y, W, b)
    nrm = margin_norm(W)
    return float(m.min() / nrm) if nrm > 0 and m.size else float("nan")


def pair_margin(
    H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray | None, pair: tuple[int, int]
) -> float:
    """Binary geometric margin of pair (j, k) on the points of classes j and k.

    ``min_{i: y_i ∈ {j,k}} s_i ((w_k − w_j)·h_i + b_k − b_j) / ‖w_k − w_j‖`` with s_i = +1 for
    class k and −1 for class j. NaN if the pair has no points or a zero direction.
    """
    W, b = class_scores(W, b)
    H, y = _check_hy(H, y, W)
    j, k = pair
    sel = (y == j) | (y == k)
    w, beta = W[k] - W[j], b[k] - b[j]
    nrm = np.linalg.norm(w)
    if not sel.any() or nrm == 0:
        return float("nan")
    s = np.where(y[sel] == k, 1.0, -1.0)
    return float((s * (H[sel] @ w + beta)).min() / nrm)


def margin_ratio(nn_margin: float, svm_margin: float) -> float:
    """``nn_margin / svm_margin``: 1.0 = max margin, below 1 = smaller, negative = misclassified points.

    NaN when the SVM margin is not positive (a soft-margin SVM on non-separable features), where
    the ratio has no meaning.
    """
    if not np.isfinite(svm_margin) or svm_margin <= 0:
        return float("nan")
    return float(nn_margin / svm_margin)


# ----------------------------------------------------------------------------- bias / offset


def boundary_shift(w: np.ndarray, beta: float, v: np.ndarray, c: float, anchor: np.ndarray) -> float:
    """Signed distance from the SVM hyperplane to the NN hyperplane along the SVM normal.

    Both boundaries are binary: NN ``w·h + β = 0``, SVM ``v·h + c = 0``, unit normal ``n = v/‖v‖``.
    The anchor is projected on the SVM hyperplane, ``p₀ = a − ((v·a + c)/‖v‖²) v``, and the NN
    boundary is met on the line ``p₀ + t n``::

        t = −(w·p₀ + β) / (w·n)

    If the directions agree (w ∥ v) t does not depend on the anchor; otherwise the boundaries
    cross and t is measured where the data is (the analysis uses the mean of the points on the SVM margin).

    Parameters
    ----------
    w : ndarray of shape (D,)
    beta : float
    v : ndarray of shape (D,)
    c : float
    anchor : ndarray of shape (D,)

    Returns
    -------
    t : float, in feature units
        > 0: the NN boundary lies on the positive side of the SVM boundary (towards the positive
        class). NaN if the NN boundary is parallel to the SVM normal (w·n = 0) or v = 0.
    """
    w, v, a = (np.asarray(x, dtype=np.float64) for x in (w, v, anchor))
    nv = np.linalg.norm(v)
    if nv == 0:
        return float("nan")
    n = v / nv  # (D,)
    p0 = a - ((v @ a + c) / nv**2) * v  # (D,) on the SVM hyperplane
    wn = w @ n
    if wn == 0:
        return float("nan")
    return float(-(w @ p0 + beta) / wn)


def _pair_vectors(W, b, V, c, pair):
    W, b = class_scores(W, b)
    V, c = class_scores(V, c)
    j, k = pair
    return W[k] - W[j], b[k] - b[j], V[k] - V[j], c[k] - c[j]


def bias_offset(
    W: np.ndarray,
    b: np.ndarray,
    V: np.ndarray,
    c: np.ndarray,
    anchor: np.ndarray,
    pair: tuple[int, int] = (0, 1),
) -> float:
    """Where the NN boundary sits relative to the SVM boundary, in units of the SVM margin.

    ``offset = boundary_shift(w_k − w_j, b_k − b_j, v_k − v_j, c_k − c_j, anchor) · ‖v_k − v_j‖``.
    The unit, ``1/‖v_k − v_j‖``, is the distance from the SVM hyperplane to its supporting
    hyperplanes ``(v_k − v_j)·h + c_k − c_j = ±1``, so:

    * 0: the NN boundary is the SVM boundary, which for a free-bias hard-margin SVM is the
      midpoint between the two supporting hyperplanes;
    * +1 / −1: the NN boundary lies on the supporting hyperplane of class k / class j;
    * if w ∥ v and ``w_k − w_j = α(v_k − v_j)``, ``b_k − b_j = α(c_k − c_j) + δ``: offset = −δ/α.

    Parameters
    ----------
    W, b : NN head, ndarray of shape (K, D), (K,) or (1, D), (1,)
    V, c : SVM, same conventions
    anchor : ndarray of shape (D,)
        Where along the boundary to measure when the directions differ.
    pair : (j, k), default=(0, 1)

    Returns
    -------
    offset : float, 0 = same place. Converges to 0 against the SVM that gradient descent targets.
    """
    w, beta, v, cc = _pair_vectors(W, b, V, c, pair)
    return boundary_shift(w, beta, v, cc, anchor) * float(np.linalg.norm(v))


def _positions(H, y, W, b, V, c, anchor, pair):
    """Positions along the SVM unit normal n: NN crossing, and the class j / class k points."""
    w, beta, v, cc = _pair_vectors(W, b, V, c, pair)
    nv = np.linalg.norm(v)
    if nv == 0:
        return float("nan"), np.empty(0), np.empty(0)
    n = v / nv
    s_nn = -cc / nv + boundary_shift(w, beta, v, cc, anchor)  # n·p0 = −c/‖v‖ on the SVM plane
    H = np.asarray(H, dtype=np.float64)
    y = np.asarray(y)
    j, k = pair
    return s_nn, H[y == j] @ n, H[y == k] @ n


def gap_offset(
    H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray, V: np.ndarray, c: np.ndarray,
    anchor: np.ndarray, pair: tuple[int, int] = (0, 1),
) -> float:
    """NN boundary position relative to the midpoint of the empty gap between the classes.

    Project every point on the SVM unit normal n. The gap between classes j and k along n runs
    from ``g_j = max_{y_i=j} n·h_i`` (the closest class-j point) to ``g_k = min_{y_i=k} n·h_i``.
    With ``s`` the NN boundary's position along n (see :func:`boundary_shift`)::

        gap_offset = (s − (g_j + g_k)/2) / ((g_k − g_j)/2)

    0 = the midpoint between the closest points of the two classes, +1 = touching class k's
    closest point, −1 = class j's. For a free-bias hard-margin binary SVM the gap midpoint is the
    SVM hyperplane and the half-gap its margin, so this equals :func:`bias_offset`; against the
    regularised-bias SVM they differ. NaN if the classes overlap along n (no gap).
    """
    s, pj, pk = _positions(H, y, W, b, V, c, anchor, pair)
    if pj.size == 0 or pk.size == 0:
        return float("nan")
    gj, gk = pj.max(), pk.min()
    if gk <= gj:
        return float("nan")
    return float((s - (gj + gk) / 2) / ((gk - gj) / 2))


def means_offset(
    H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray, V: np.ndarray, c: np.ndarray,
    anchor: np.ndarray, pair: tuple[int, int] = (0, 1),
) -> float:
    """NN boundary position relative to the midpoint of the two class means, along the SVM normal.

    ``(s − (μ_j + μ_k)/2) / ((μ_k − μ_j)/2)`` with ``μ = mean of n·h_i`` over each class:
    0 = halfway between the class means, +1 = at class k's mean, −1 = at class j's mean.
    NaN if a class is empty or the means coincide along n.
    """
    s, pj, pk = _positions(H, y, W, b, V, c, anchor, pair)
    if pj.size == 0 or pk.size == 0:
        return float("nan")
    mj, mk = pj.mean(), pk.mean()
    if mk == mj:
        return float("nan")
    return float((s - (mj + mk) / 2) / ((mk - mj) / 2))


# ----------------------------------------------------------------------------- agreement


def predict_classes(H: np.ndarray, W: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Predicted class indices ``argmax_k (w_k·h + b_k)``, shape (N,). A (1, D) head: 1 iff score > 0."""
    W, b = class_scores(W, b)
    H = np.asarray(H, dtype=np.float64)
    S = H @ W.T  # (N, K)
    if S.shape[1] == 2:  # two columns: one comparison, each bias added to its column (argmax and a broadcast add
        s0, s1 = S[:, 0] + b[0], S[:, 1] + b[1]  # over rows of 2 are 3x slower); NaN is the largest, as in argmax
        return ((s1 > s0) | (np.isnan(s1) & ~np.isnan(s0))).astype(np.intp)
    return np.argmax(S + b, axis=1)  # ties: the lower index (class 0 for score == 0)


def agreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Fraction of points where two classifiers predict the same class, in [0, 1] (1 = identical)."""
    pred_a, pred_b = np.asarray(pred_a), np.asarray(pred_b)
    if pred_a.shape != pred_b.shape:
        raise ValueError(f"Predictions have shapes {pred_a.shape} and {pred_b.shape}; they must match.")
    return float((pred_a == pred_b).mean()) if pred_a.size else float("nan")


def feature_grid(H: np.ndarray, resolution: int = 200, pad: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """A dense grid over the window of 2-D features.

    The window is the bounding box of H widened by ``pad`` times its extent on every side (an
    extent of 0 counts as 1).

    Returns
    -------
    xx0, xx1 : ndarray of shape (resolution, resolution)
    """
    H = np.asarray(H, dtype=np.float64)
    if H.ndim != 2 or H.shape[1] != 2:
        raise ValueError(f"feature_grid needs 2-D features, got shape {H.shape}.")
    lo, hi = H.min(axis=0), H.max(axis=0)
    ext = np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - pad * ext, hi + pad * ext
    return np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))


def grid_agreement(
    H: np.ndarray, W: np.ndarray, b: np.ndarray, V: np.ndarray, c: np.ndarray,
    resolution: int = 200, pad: float = 0.1,
) -> float:
    """Agreement of NN and SVM on the ``resolution²`` points of :func:`feature_grid` (D = 2 only).

    Measures how much of the plotted transformed space the two boundaries classify alike.
    """
    xx0, xx1 = feature_grid(H, resolution, pad)
    G = np.c_[xx0.ravel(), xx1.ravel()]  # (R*R, 2)
    return agreement(predict_classes(G, W, b), predict_classes(G, V, c))


# ----------------------------------------------------------------------------- support vectors


def sv_overlap(support: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """Overlap of the SVM's support vectors with the k points of lowest ``score``, k = |support|.

    Pass the NN's functional margins as ``score`` (the k least-confident points), or ``-loss``
    for the k highest-loss points. Ties are broken by index (stable sort).

    Parameters
    ----------
    support : ndarray of shape (k,), indices into score
    score : ndarray of shape (N,)

    Returns
    -------
    precision_at_k : float in [0, 1]
        ``|S ∩ A| / k`` (equals recall since |A| = |S| = k).
    jaccard : float in [0, 1]
        ``|S ∩ A| / |S ∪ A|``. 1 when the NN's least-confident points are exactly the support
        vectors, which is what max-margin convergence predicts. NaN for an empty support.
    """
    S = set(np.asarray(support, dtype=np.int64).tolist())
    k = len(S)
    if k == 0:
        return float("nan"), float("nan")
    A = set(np.argsort(np.asarray(score, dtype=np.float64), kind="stable")[:k].tolist())
    inter = len(S & A)
    return inter / k, inter / len(S | A)


# ----------------------------------------------------------------------------- context


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample softmax cross-entropy ``logsumexp(z) − z_y``, computed stably, shape (N,).

    Written with ``log1p`` so that the tiny losses of a long-trained network (1e-12 and below)
    keep their relative precision instead of rounding to 0.

    A (N, 1) single-logit input is the binary logistic loss ``softplus(−(2y−1) z)``.
    """
    Z = np.asarray(logits, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"logits must have shape (N, K), got {Z.shape}.")
    if Z.shape[1] == 1:
        Z = np.hstack([np.zeros_like(Z), Z])  # (N, 2): softmax over (0, z) is the sigmoid
    y = np.asarray(y, dtype=np.int64)
    rows = np.arange(len(y))
    top = Z.argmax(axis=1)  # (N,)
    zmax = Z[rows, top]
    E = np.exp(Z - zmax[:, None])  # (N, K), 1 at the argmax
    E[rows, top] = 0.0
    # log Σ exp(z) − z_y = log1p(Σ_{k≠top} e^{z_k − z_max}) + (z_max − z_y): keeps losses ~1e-300
    return np.log1p(E.sum(axis=1)) + (zmax - Z[rows, y])


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Fraction of samples whose largest logit is the label (single logit: 1 iff z > 0)."""
    Z = np.asarray(logits, dtype=np.float64)
    pred = (Z[:, 0] > 0).astype(np.int64) if Z.shape[1] == 1 else Z.argmax(axis=1)
    return float((pred == np.asarray(y)).mean()) if len(pred) else float("nan")


def weight_norm(W: np.ndarray) -> float:
    """Frobenius norm ``‖W‖_F`` of the raw head (not centred); grows like log t under GD."""
    return float(np.linalg.norm(np.asarray(W, dtype=np.float64)))


# ----------------------------------------------------------------------------- neural collapse

#: Keys of :func:`neural_collapse` (and of ``analyze``'s summary), in this order.
NC_KEYS = ("nc1", "nc2_equinorm", "nc2_equiangular", "nc3_self_duality", "nc4_ncc_mismatch")


class NeuralCollapseAccumulator:
    """Streaming sums for the neural-collapse metrics (Papyan, Han & Donoho 2020).

    One pass of :meth:`update` over batches ``(H_b, y_b)`` keeps the class counts (K,), the class sums (K, D) and
    one scatter matrix (D, D), so memory is ``K·D + D²`` whatever N is (50 000 × 2048 features: 33 MB of sums) and
    the cost is one ``B·D²`` product per batch. The sums are taken about the first batch's mean, which changes no
    covariance but avoids the cancellation of ``E[hhᵀ] − μμᵀ`` for features far from the origin.

    With μ_G the global mean, μ_k the class means and M the (K, D) matrix of rows ``μ_k − μ_G``::

        Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ          Σ_B = MᵀM / K
        nc1 = Tr(Σ_W Σ_B⁺) / K  = Tr(M⁺ᵀ Σ_W M⁺)        (M⁺ the pseudo-inverse of M, shape (D, K))

    Parameters
    ----------
    n_classes : int
        K (>= 2).
    n_features : int
        D.
    """

    def __init__(self, n_classes: int, n_features: int) -> None:
        self.n_classes, self.n_features = int(n_classes), int(n_features)
        self.counts = np.zeros(self.n_classes, dtype=np.int64)  # (K,)
        self.sums = np.zeros((self.n_classes, self.n_features))  # (K, D), about `shift`
        self.scatter = np.zeros((self.n_features, self.n_features))  # (D, D), about `shift`
        self.shift: np.ndarray | None = None  # (D,)

    def update(self, H: np.ndarray, y: np.ndarray) -> None:
        """Add a batch: H of shape (B, D), y of shape (B,) with labels in 0..K-1."""
        H = np.asarray(H, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        if H.ndim != 2 or H.shape[1] != self.n_features or y.shape != (H.shape[0],):
            raise ValueError(f"H must have shape (B, {self.n_features}) and y shape (B,), got {H.shape} and {y.shape}.")
        if y.size and (y.min() < 0 or y.max() >= self.n_classes):
            raise ValueError(f"Labels must lie in 0..{self.n_classes - 1}, got {y.min()}..{y.max()}.")
        if self.shift is None:
            self.shift = H.mean(axis=0) if H.shape[0] else np.zeros(self.n_features)
        Hc = H - self.shift  # (B, D)
        onehot = np.zeros((H.shape[0], self.n_classes))  # (B, K)
        onehot[np.arange(H.shape[0]), y] = 1.0
        self.counts += onehot.sum(axis=0).astype(np.int64)
        self.sums += onehot.T @ Hc  # (K, D)
        self.scatter += Hc.T @ Hc  # (D, D)

    def class_means(self) -> np.ndarray:
        """μ_k, shape (K, D). Raises if a class has no sample."""
        empty = np.flatnonzero(self.counts == 0)
        if empty.size:
            raise ValueError(f"Classes {empty.tolist()} have no samples; neural collapse needs every class.")
        return self.sums / self.counts[:, None] + self.shift  # (K, D)

    def global_mean(self) -> np.ndarray:
        """μ_G, the mean of all features, shape (D,)."""
        return self.sums.sum(axis=0) / self.counts.sum() + self.shift

    def within_covariance(self) -> np.ndarray:
        """Σ_W, shape (D, D)."""
        self.class_means()  # every class present
        between = self.sums.T @ (self.sums / self.counts[:, None])  # (D, D) = Σ_k n_k m_k m_kᵀ (shifted)
        return (self.scatter - between) / self.counts.sum()

    def compute(self, W: np.ndarray, b: np.ndarray | None = None) -> dict[str, float]:
        """nc1, nc2_equinorm, nc2_equiangular and nc3_self_duality for the head (W, b); see :func:`neural_collapse`."""
        self.class_means()  # every class present
        Mc = self.sums / self.counts[:, None] - self.sums.sum(axis=0) / self.counts.sum()  # (K, D) = M; shift cancels
        K = self.n_classes
        Sw = self.within_covariance()  # (D, D)
        # M has rank <= K-1 (its rows, weighted by n_k, sum to 0): singular values below 1e-10 of the largest are
        # that structural null space plus rounding, and are cut.
        P = np.linalg.pinv(Mc, rcond=1e-10)  # (D, K)
        norms = np.linalg.norm(Mc, axis=1)  # (K,)
        with np.errstate(invalid="ignore", divide="ignore"):
            U = Mc / norms[:, None]  # (K, D) unit rows
            cos = U @ U.T  # (K, K)
            off = ~np.eye(K, dtype=bool)
            Wt = center_rows(class_scores(W, b)[0])  # (K, D) row-centred head
            if Wt.shape != Mc.shape:
                raise ValueError(f"The head has {Wt.shape[0]} class rows and {Wt.shape[1]} features, the class means "
                                 f"{Mc.shape}; pass the head of these features.")
            nW, nM = np.linalg.norm(Wt), np.linalg.norm(Mc)
            return {
                "nc1": float(np.trace(P.T @ Sw @ P)),  # = Tr(Σ_W Σ_B⁺) / K
                "nc2_equinorm": float(norms.std() / norms.mean()),
                "nc2_equiangular": float(np.abs(cos[off] + 1.0 / (K - 1)).mean()),
                "nc3_self_duality": float(np.sum((Wt / nW - Mc / nM) ** 2)),
            }


def ncc_predict(H: np.ndarray, means: np.ndarray, *, chunk_size: int = 8192) -> np.ndarray:
    """Nearest-class-mean classifier: ``argmin_k ‖h − μ_k‖`` for every row of H (N, D), chunk by chunk. (N,) int."""
    H = np.asarray(H, dtype=np.float64)
    mu = np.asarray(means, dtype=np.float64)  # (K, D)
    sq = (mu**2).sum(axis=1)  # (K,)
    out = np.empty(H.shape[0], dtype=np.int64)
    for i in range(0, H.shape[0], chunk_size):
        Hb = H[i : i + chunk_size]  # (B, D)
        out[i : i + chunk_size] = (sq[None, :] - 2.0 * Hb @ mu.T).argmin(axis=1)  # ‖h‖² is the same for every k
    return out


def neural_collapse(H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray | None = None, *,
                    pred: np.ndarray | None = None, chunk_size: int = 8192) -> dict[str, float]:
    """The neural-collapse metrics of features H and a head (W, b), as in Papyan, Han & Donoho (2020).

    With μ_G the global mean, μ_k the class means, M the (K, D) matrix of ``μ_k − μ_G``,
    ``Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ`` and ``Σ_B = MᵀM / K``:

    * ``nc1 = Tr(Σ_W Σ_B⁺) / K`` — within-class variability against between-class spread; ≥ 0, → 0 at collapse.
    * ``nc2_equinorm = std_k ‖M_k‖ / mean_k ‖M_k‖`` (population std) — ≥ 0, → 0 when the centred class means have
      equal norms.
    * ``nc2_equiangular = mean_{k≠l} |cos(M_k, M_l) + 1/(K−1)|`` — in [0, 2], → 0 for a simplex ETF. (For K = 2
      the two centred means are opposite, so this is 0 by construction, and so is ``nc2_equinorm`` when the two
      classes are equally large.)
    * ``nc3_self_duality = ‖W̃/‖W̃‖_F − M/‖M‖_F‖²_F`` with W̃ the row-centred head (a single-logit head is the pair
      of rows (0, w) first) — in [0, 4], → 0 when the head is the centred class means up to scale.
    * ``nc4_ncc_mismatch`` — share of the points where the network's prediction (``pred``, default the head's
      argmax) differs from the nearest class mean's; in [0, 1], → 0 at collapse.

    Computed in chunks by :class:`NeuralCollapseAccumulator`: memory ``K·D + D²`` beyond H itself.

    Parameters
    ----------
    H : ndarray of shape (N, D)
    y : ndarray of shape (N,), labels in 0..K-1 (every class present)
    W : ndarray of shape (K, D) or (1, D)
    b : ndarray of shape (K,) or (1,), default=None
    pred : ndarray of shape (N,), default=None
        The network's predicted classes; default ``predict_classes(H, W, b)``.
    chunk_size : int, default=8192

    Returns
    -------
    dict with the keys of :data:`NC_KEYS`
    """
    H = np.asarray(H, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    Ws, _ = class_scores(W, b)
    acc = NeuralCollapseAccumulator(Ws.shape[0], H.shape[1])
    for i in range(0, H.shape[0], chunk_size):
        acc.update(H[i : i + chunk_size], y[i : i + chunk_size])
    out = acc.compute(W, b)
    pred = predict_classes(H, W, b) if pred is None else np.asarray(pred)
    out["nc4_ncc_mismatch"] = float((ncc_predict(H, acc.class_means(), chunk_size=chunk_size) != pred).mean())
    return out


# ----------------------------------------------------------------------------- fit of the 1/log t rate


#: When a fitted ``c / log t`` is taken to describe the data (:func:`inverse_log_fit_holds`): it explains at least
#: 90 % of the variance (R² about the mean of the fitted points), on at least 5 points, whose clock (t, or 1/L for
#: the loss clock) spans at least one decade. Fewer points or a shorter span cannot tell 1/log t from a straight
#: line or a slow power law; below R² 0.9 the curve has some other shape (a plateau, an exponential, a bounce).
INVERSE_LOG_RULE = {"min_r2": 0.9, "min_points": 5, "min_decades": 1.0}


def fit_inverse_log(step: np.ndarray, value: np.ndarray, *, target: float = 0.0, fraction: float = 0.5,
                    min_points: int = 3, loss: np.ndarray | None = None) -> dict[str, Any]:
    """Least-squares ``c`` in ``value ≈ target + c / log(clock)`` on the later points, and how well it fits.

    Gradient descent on separable data turns the head toward the max-margin direction only like ``1 / log t``
    (Soudry et al. 2018), so this is the reference drawn beside alignment curves. Two clocks:

    * the step (``loss=None``): ``u = 1 / log(step)``, on the points with ``step > 1`` (``log 1 = 0``);
    * the loss (``loss`` given, one value per step): ``u = 1 / log(1 / L)``, on the points with ``0 < L < 1``.
      Under gradient descent ``L ~ 1/t`` once the data are fitted, so both clocks agree there; an optimizer with
      a loss-based step size (``L`` falling much faster than ``1/t``) separates them, and the loss clock is the
      one the margin theory runs on (Lyu & Li 2020).

    Of the usable points (finite step, value and clock) the ``ceil(fraction · n)`` with the largest *steps* enter
    the fit. With ``u`` as above: ``c = Σ (value − target) u / Σ u²`` (a line through the origin in u: the limit is
    fixed at ``target``). O(T).

    Parameters
    ----------
    step, value : ndarray of shape (T,)
    target : float, default=0.0
        The limit (0 for an angle or a bias offset, 1 for a margin ratio).
    fraction : float in (0, 1], default=0.5
    min_points : int, default=3
        Fewer usable points: no fit (``c`` is NaN).
    loss : ndarray of shape (T,) or None, default=None
        Fit against the loss clock ``1 / log(1/L)`` instead of ``1 / log t``.

    Returns
    -------
    fit : dict
        ``c``; ``r2`` (coefficient of determination of the fitted points about their mean; ≤ 1, 1 = exact, ≤ 0 =
        no better than a constant); ``rel_rms`` (root-mean-square residual over the mean ``|value − target|`` of
        the fitted points); ``n_used``; ``step_min`` and ``step_max`` (the fitted step range); ``span_decades``
        (``log10`` of the ratio of the largest to the smallest clock value used: steps, or ``1/L``); ``clock``
        (``"step"`` or ``"loss"``); ``target``; with the loss clock also ``loss_min`` and ``loss_max``. NaN values
        when there are fewer than ``min_points`` usable points. :func:`inverse_log_fit_holds` says whether to
        believe it.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
    t = np.asarray(step, dtype=np.float64).ravel()
    a = np.asarray(value, dtype=np.float64).ravel()
    if t.shape != a.shape:
        raise ValueError(f"step and value must have the same length, got {t.shape} and {a.shape}.")
    clock = "step" if loss is None else "loss"
    if loss is None:
        x = t  # (T,) the clock, log x > 0 wanted
        ok = (t > 1) & np.isfinite(t) & np.isfinite(a)
    else:
        L = np.asarray(loss, dtype=np.float64).ravel()
        if L.shape != t.shape:
            raise ValueError(f"loss must have one value per step, got {L.shape} for {t.shape} steps.")
        ok = np.isfinite(t) & np.isfinite(a) & np.isfinite(L) & (L > 0) & (L < 1)
        x = np.where(ok, L, 0.5)  # log(1/x) below; 0.5 only fills the unused slots
    nan = float("nan")
    n_ok = int(ok.sum())
    k = int(np.ceil(fraction * n_ok))
    out: dict[str, Any] = {"c": nan, "r2": nan, "rel_rms": nan, "n_used": k, "step_min": nan, "step_max": nan,
                           "span_decades": nan, "clock": clock, "target": float(target)}
    if loss is not None:
        out.update(loss_min=nan, loss_max=nan)
    if k < min_points:
        return out
    order = np.argsort(t[ok], kind="stable")
    t, a, x = t[ok][order][-k:], a[ok][order][-k:] - target, x[ok][order][-k:]  # (k,) each, the latest points
    logx = np.log(x) if loss is None else -np.log(x)  # log t, or log(1/L) (no overflow of 1/L)
    u = 1.0 / logx
    c = float(a @ u / (u @ u))
    res = a - c * u
    ss_res, ss_tot = float(res @ res), float(np.sum((a - a.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else nan)
    scale = float(np.mean(np.abs(a)))
    out.update(c=c, r2=float(r2), rel_rms=float(np.sqrt(ss_res / k) / scale) if scale > 0 else nan,
               step_min=float(t.min()), step_max=float(t.max()),
               span_decades=float((logx.max() - logx.min()) / np.log(10)) if loss is not None
               else float(np.log10(t.max() / t.min())))
    if loss is not None:
        out.update(loss_min=float(x.min()), loss_max=float(x.max()))
    return out


def inverse_log_fit_holds(fit: dict[str, Any] | None, rule: dict[str, float] | None = None) -> bool:
    """Does a :func:`fit_inverse_log` result describe its data? The rule is :data:`INVERSE_LOG_RULE`.

    True iff ``c`` is finite, ``r2 >= min_r2``, ``n_used >= min_points`` and ``span_decades >= min_decades``
    (``rule`` overrides any of the three). A missing fit (None) or NaN numbers: False.
    """
    if not fit:
        return False
    r = {**INVERSE_LOG_RULE, **(rule or {})}
    c, r2, span = (float(fit.get(k, np.nan)) if fit.get(k) is not None else np.nan
                   for k in ("c", "r2", "span_decades"))
    n = fit.get("n_used") or 0
    return bool(np.isfinite(c) and np.isfinite(r2) and r2 >= r["min_r2"] and n >= r["min_points"]
                and np.isfinite(span) and span >= r["min_decades"])
