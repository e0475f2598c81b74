"""Classification losses on logits, all taking integer labels.

Every loss here maps ``logits`` of shape ``(N, K)`` and integer labels ``y`` of shape ``(N,)`` (values in
``0..K-1``) to a per-sample loss ``l_n`` of shape ``(N,)``, then reduces it: ``"mean"`` (default) averages
over the ``N`` samples, ``"sum"`` adds them up, ``"none"`` returns the ``(N,)`` vector (for example to find
the highest-loss points and compare them with the support vectors).

Names accepted by :func:`make_loss`:

================================  =========================================================================
``"cross_entropy"`` (``"ce"``)     softmax cross-entropy in float64, logit-gap form (:func:`stable_cross_entropy`)
``"plain_cross_entropy"``          ``torch.nn.functional.cross_entropy`` in the logits' own dtype
``"hinge"``                        multi-class hinge; ``multiclass="crammer_singer"`` (default) or
                                   ``"weston_watkins"`` (equals ``torch.nn.MultiMarginLoss``)
``"hinge_ovr"``                    the original's ``tf.losses.hinge_loss``: one binary hinge per output unit
``"mse"``                          mean squared error between logits and one-hot labels (original ``mse``)
``"l1"`` (``"abd"``)               mean absolute error between logits and one-hot labels (original ``abd``)
``"log_loss"``                     binary log loss of each softmax probability against the one-hot label
``"mpse"``                         mean pairwise squared error between logit and label differences
================================  =========================================================================

Why a float64 logit-gap cross-entropy: on separable data the loss goes to zero and the direction of the
weights converges only like ``1 / log t`` (Soudry et al. 2018), so long runs spend most of their time at
losses of ``1e-10`` to ``1e-40``. In float32, ``F.cross_entropy`` returns exactly 0 once the gap between the
true logit and the others exceeds about 17, and the gradient on the true logit, ``p_y - 1``, is exactly 0
from the same point on (the gradients of the other logits survive, so the gradient no longer sums to zero
over classes). Writing the loss as ``log(1 + sum_{k != y} exp(z_k - z_y))`` (Lyu & Li 2020) and evaluating
it in float64 keeps both the value and the gradient meaningful down to about ``1e-300``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Below this mean loss float64 no longer resolves training progress (the smallest normal float64 is 2.2e-308: the
#: gradients turn subnormal and a step changes the direction arbitrarily; a loss-based step retries without end).
#: Head-only training stops here (``target_loss``); see ``nnboundary.experiments.convergence``.
FLOAT64_LOSS_FLOOR = 1e-300

__all__ = [
    "FLOAT64_LOSS_FLOOR",
    "make_loss",
    "available_losses",
    "stable_cross_entropy",
    "ClassificationLoss",
    "StableCrossEntropy",
    "PlainCrossEntropy",
    "MulticlassHinge",
    "OneVsRestHinge",
    "MSELoss",
    "L1Loss",
    "SoftmaxLogLoss",
    "MeanPairwiseSquaredError",
]

_REDUCTIONS = ("mean", "sum", "none")


def _check_inputs(logits: Tensor, y: Tensor) -> None:
    """Cheap shape checks (no device sync): logits (N, K) with K >= 2, labels (N,) integer."""
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"Losses expect logits of shape (N, K) with K >= 2, got {tuple(logits.shape)}. "
                         "A binary model needs two outputs (one per class).")
    if y.dim() != 1 or y.shape[0] != logits.shape[0]:
        raise ValueError(f"Labels must have shape (N,) = ({logits.shape[0]},), got {tuple(y.shape)}. "
                         "Pass integer class indices, not one-hot rows.")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise TypeError(f"Labels must be integer class indices, got dtype {y.dtype}. Use y.long().")


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def _one_hot(y: Tensor, n_classes: int, like: Tensor) -> Tensor:
    return F.one_hot(y, n_classes).to(dtype=like.dtype)  # (N, K)


def stable_cross_entropy(logits: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy in float64, written with the logit gaps.

    ``l_n = log(1 + sum_{k != y_n} exp(z_nk - z_ny))``, computed as ``softplus(logsumexp_k(gaps))``
    in float64. Its value equals the usual cross-entropy; unlike float32 ``F.cross_entropy`` it stays
    positive, and its gradient stays non-zero with the right sign on every logit, down to losses of
    about ``1e-300``.

    Parameters
    ----------
    logits : Tensor of shape (N, K)
        Any floating dtype; cast to float64 inside (the gradient flows back in the logits' dtype).
    y : Tensor of shape (N,)
        Integer labels in ``0..K-1``.
    reduction : {"mean", "sum", "none"}, default="mean"

    Returns
    -------
    loss : float64 Tensor of shape () or (N,) for ``reduction="none"``
    """
    _check_inputs(logits, y)
    z = logits.to(torch.float64)                                    # (N, K)
    z_true = z.gather(1, y.unsqueeze(1))                            # (N, 1)
    gaps = (z - z_true).masked_fill(F.one_hot(y, z.shape[1]).bool(), float("-inf"))  # (N, K)
    per_sample = F.softplus(torch.logsumexp(gaps, dim=1))           # (N,) log(1 + sum exp(gaps))
    return _reduce(per_sample, reduction)


class ClassificationLoss(nn.Module):
    """Base class: ``forward(logits (N, K), y (N,)) -> loss``; subclasses define :meth:`per_sample`.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default="mean"
        How the per-sample losses ``(N,)`` are combined.
    """

    name: str = ""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}.")
        self.reduction = reduction

    def per_sample(self, logits: Tensor, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Loss of each sample, Tensor of shape (N,)."""
        raise NotImplementedError

    def forward(self, logits: Tensor, y: Tensor) -> Tensor:
        _check_inputs(logits, y)
        return _reduce(self.per_sample(logits, y), self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class StableCrossEntropy(ClassificationLoss):
    """Softmax cross-entropy in float64, logit-gap form; see :func:`stable_cross_entropy`.

    The loss is returned in float64 whatever the logits' dtype.
    """

    name = "cross_entropy"

    def per_sample(self, logits: Tensor, y: Tensor) -> Tensor:
        return stable_cross_entropy(logits, y, reduction="none")


class PlainCrossEntropy(ClassificationLoss):
    """``F.cross_entropy`` in the logits' dtype (rounds to exactly 0 at large margins in float32)."""

    name = "plain_cross_entropy"

    def per_sample(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, reduction="none")

    def forward(self, logits: Tensor, y: Tensor) -> Tensor:
        _check_inputs(logits, y)
        return F.cross_entropy(logits, y, reduction=self.reduction)   # fused kernel for the hot loop


class MulticlassHinge(ClassificationLoss):
    """Multi-class hinge loss on the logits.

    ``"crammer_singer"`` (default): ``l_n = max(0, margin + max_{k != y} z_k - z_y) ** p``, the loss whose
    hard-margin limit is the Crammer-Singer SVM that the theory compares against.

    ``"weston_watkins"``: ``l_n = sum_{k != y} max(0, margin - z_y + z_k) ** p / K``, exactly
    ``torch.nn.MultiMarginLoss(p, margin)`` (note the division by ``K``).

    Parameters
    ----------
    multiclass : {"crammer_singer", "weston_watkins"}, default="crammer_singer"
    margin : float, default=1.0
    p : {1, 2}, default=1
        Power of each hinge term (2 gives the squared hinge).
    reduction : {"mean", "sum", "none"}, default="mean"
    """

    name = "hinge"

    def __init__(self, multiclass: str = "crammer_singer", margin: float = 1.0, p: int = 1,
                 reduction: str = "mean") -> None:
        super().__init__(reduction)
        if multiclass not in ("crammer_singer", "weston_watkins"):
            raise ValueError(f"multiclass must be 'crammer_singer' or 'weston_watkins', got {multiclass!r}.")
        if p not in (1, 2):
            raise ValueError(f"p must be 1 or 2, got {p!r}.")
        self.multiclass, self.margin, self.p = multiclass, float(margin), int(p)

    def per_sample(self, logits: Tensor, y: Tensor) -> Tensor:
        n_classes = logits.shape[1]
        is_true = F.one_hot(y, n_classes).bool()                      # (N, K)
        z_true = logits.gather(1, y.unsqueeze(1))                     # (N, 1)
        if self.multiclass == "crammer_singer":
            runner_up = logits.masked_fill(is_true, float("-inf")).amax(dim=1)   # (N,)
            return (self.margin + runner_up - z_true.squeeze(1)).clamp_min(0) ** self.p
        terms = (self.margin - z_true + logits).clamp_min(0) ** self.p           # (N, K)
        return terms.masked_fill(is_true, 0.0).sum(dim=1) / n_classes

    def extra_repr(self) -> str:
        return f"multiclass={self.multiclass!r}, margin={self.margin}, p={self.p}, " + super().extra_repr()


class OneVsRestHinge(ClassificationLoss):
    """The original's ``tf.losses.hinge_loss(onehot, logits)``: a binary hinge per output unit.

    ``l_n = mean_k max(0, 1 - s_nk z_nk)`` with ``s_nk = +1`` for the true class and ``-1`` otherwise.
    Each unit is pushed to its own sign, which is a one-vs-rest problem, not the Crammer-Singer one.
    """

    name = "hinge_ovr"

    def per_sample(self, logits: Tensor, y: Tensor) -> Tensor:
        signs = 2 * _one_hot(y, logits.shape[1], logits) - 1           # (N, K) in {-1, +1}
        return (1 - signs * logits).clamp_min(0).mean(dim=1)


class MSELoss(ClassificationLoss):
    """Squared error between the raw logits and one-hot labels: ``l_n = mean_k (z_nk - e_nk)^2``.

    With ``reduction="mean"`` this is TF1's ``mean_squared_error`` used by the original (mean over N*K).
    """

    name = "mse"

    def per_sample(self, logits: Tensor, y: Tensor) -> Tensor:
        return (logits - _one_hot(y, logits.shape[1], logits)).square().mean(dim=1)


class L1Loss(ClassificationLoss):
    """Absolute error between the raw logits and one-hot labels: ``l_n = mean_k |z_nk - e_nk|``.

    The original's ``abd`` loss (mean over N*K with ``reduction="mean"``).
    """

    name = "l1"

    def per_sample(self, logits: Tensor, y: Tensor) -> Tensor:
        return (logits - _one_hot(y, logits.shape[1], logits)).abs().mean(dim=1)


class SoftmaxLogLoss(ClassificationLoss):
    """Binary log loss of every softmax probability against its one-hot label, in float64.

    ``l_n = mean_k [ -e_nk log p_nk - (1 - e_nk) log(1 - p_nk) ]`` with ``p = softmax(z)``.

    Correction of the original: its ``log_loss`` fed the raw logits to TF's ``log_loss`` as if they were
    probabilities (NaN once a logit leaves (0, 1)) and added ``eps = 1e-7`` inside the logs. Here the
    probabilities come from a softmax and both logs are evaluated in float64 from the logit gaps
    ``a_k = logsumexp_{j != k} z_j - z_k``: ``-log p_k = softplus(a_k)``, ``-log(1 - p_k) = softplus(-a_k)``,
    without ``eps``, so the loss (like cross-entropy) keeps decreasing to 0, and keeps its gradient, on
    separable data. For ``K = 2`` it equals the cross-entropy.
    """

    name = "log_loss"

    def per_sample(self, logits: Tensor, y: Tensor) -> Tensor:
        z = logits.to(torch.float64)                                  # (N, K)
        n_classes = z.shape[1]
        eye = torch.eye(n_classes, dtype=torch.bool, device=z.device)
        others = z.unsqueeze(1).masked_fill(eye, float("-inf"))       # (N, K, K): row k drops class k
        a = torch.logsumexp(others, dim=2) - z                        # (N, K) log((1 - p_k) / p_k)
        # -log p_k = softplus(a_k), -log(1 - p_k) = softplus(-a_k): exact in the gaps, like the CE
        signs = 2 * F.one_hot(y, n_classes).to(z.dtype) - 1           # (N, K) +1 true, -1 other
        return F.softplus(signs * a).mean(dim=1)


class MeanPairwiseSquaredError(ClassificationLoss):
    """Mean over class pairs of the squared difference between logit gaps and label gaps.

    ``l_n = mean_{j < k} ((z_nj - z_nk) - (e_nj - e_nk))^2 = 2 (K sum d^2 - (sum d)^2) / (K (K - 1))``
    with ``d = z_n - e_n``. This is the quantity TF1's ``mean_pairwise_squared_error`` computes for
    ``(N, K)`` inputs; we define it directly. It only sees logit differences (adding a constant to all
    logits changes nothing), and it is a regression loss: it pins the true-class gap at 1 instead of
    pushing it to infinity, so it is *not* expected to give max-margin behaviour.
    """

    name = "mpse"

    def per_sample(self, logits: Tensor, y: Tensor) -> Tensor:
        n_classes = logits.shape[1]
        d = logits - _one_hot(y, n_classes, logits)                   # (N, K)
        pair_sum = n_classes * d.square().sum(dim=1) - d.sum(dim=1).square()   # sum_{j<k} (d_j - d_k)^2
        return 2 * pair_sum / (n_classes * (n_classes - 1))


_LOSSES: dict[str, Callable[..., ClassificationLoss]] = {
    "cross_entropy": StableCrossEntropy,
    "plain_cross_entropy": PlainCrossEntropy,
    "hinge": MulticlassHinge,
    "hinge_ovr": OneVsRestHinge,
    "mse": MSELoss,
    "l1": L1Loss,
    "log_loss": SoftmaxLogLoss,
    "mpse": MeanPairwiseSquaredError,
}
_ALIASES = {"ce": "cross_entropy", "softmax_cross_entropy": "cross_entropy", "abd": "l1",
            "mae": "l1", "multi_margin": "hinge"}


def available_losses() -> list[str]:
    """Canonical loss names accepted by :func:`make_loss` (aliases: ``ce``, ``abd``, ``mae``)."""
    return sorted(_LOSSES)


def make_loss(name: str, **kwargs: Any) -> ClassificationLoss:
    """Build a loss module by name.

    Parameters
    ----------
    name : str
        One of :func:`available_losses` or an alias (see the module docstring).
    **kwargs
        ``reduction`` ({"mean", "sum", "none"}, default "mean") for every loss; ``multiclass``,
        ``margin``, ``p`` for ``"hinge"``.

    Returns
    -------
    loss : ClassificationLoss
        Callable as ``loss(logits (N, K), y (N,))``.

    Raises
    ------
    ValueError
        Unknown name (with suggestions) or bad keyword value.
    """
    if not isinstance(name, str):
        raise TypeError(f"Loss name must be a string, got {type(name).__name__}.")
    key = name.lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _LOSSES:
        close = difflib.get_close_matches(key, list(_LOSSES) + list(_ALIASES), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown loss {name!r}.{hint} Available: {', '.join(available_losses())}.")
    try:
        return _LOSSES[key](**kwargs)
    except TypeError as exc:
        raise TypeError(f"Bad keyword for loss {key!r}: {exc}") from exc
