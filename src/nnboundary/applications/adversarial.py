"""Adversarial attacks seen from the transformed space: is the feature-space margin a map of vulnerability?

The paper argues that since the last layer converges to the max-margin SVM on the features φ(x), the margin in
the transformed space tells which inputs are easiest to attack (support vectors and low-margin points) and in
which direction (across the SVM hyperplane). This module measures both claims.

* **Feature-space margin** of a point (:func:`feature_distance`): its Euclidean distance in the transformed space
  to the nearest pairwise boundary ``(v_y − v_k)·h + c_y − c_k = 0`` of the SVM (and of the NN head), and the NN's
  normalised margin ``m_i / ‖W‖`` (:mod:`nnboundary.metrics` conventions).
* **Standard attacks** on the network in input space, all in torch, within the valid pixel range:
  :func:`fgsm` (L∞), :func:`pgd` (L∞ or L2, random start, the first successful iterate is kept) and
  :func:`deepfool` (minimal L2 steps on the linearised decision).
* **Margin-guided attack**: move φ(x) across the SVM hyperplane, with gradients of the SVM decision value taken
  through the feature map. Budgeted form: :func:`pgd` with ``objective=svm_margin_objective(...)`` (maximise
  minus the normalised SVM margin of the true class); minimal form: :func:`deepfool` on the SVM class scores
  ``S(x) = V φ(x) + c`` (:func:`svm_scores`). Both are compared with the CE-driven attacks at equal budgets.
* **Who is easiest to attack**: success rate and minimal perturbation by SVM-margin quantile of the test points,
  rank correlations, and support vectors against other training points; robust accuracy vs budget curves.

The experiments are registered functions that write their settings once (``Profile.pick`` where the profiles
differ); ``get_experiment(name, profile).settings`` resolves one and :func:`run_adversarial` runs it and writes the
tables and the figure.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from torch import Tensor, nn
from torch.nn import functional as F

from nnboundary import metrics as M
from nnboundary.applications._common import (
    build_network,
    fit_svm,
    head_arrays,
    jsonable,
    load_arrays,
    mnist_network,
    seed_list,
    work_bar,
    write_csv,
    write_json,
    write_jsonl,
)
from nnboundary.svm import MaxMarginClassifier
from nnboundary.device import resolve_device
from nnboundary.experiments.registry import (Kind, KindConfig, Profile, get_experiment, register_kind,
                                             register_settings)
from nnboundary.experiments.result import KindResult
from nnboundary.experiments.rundir import RunDir
from nnboundary.features import extract_features
from nnboundary.train import fit

__all__ = [
    "AdversarialResult",
    "ce_objective",
    "deepfool",
    "feature_distance",
    "fgsm",
    "pgd",
    "run_adversarial",
    "svm_margin_objective",
    "svm_scores",
]

log = logging.getLogger(__name__)

Scores = Callable[[Tensor], Tensor]
Objective = Callable[[Tensor, Tensor], Tensor]


# --------------------------------------------------------------------------------------- experiments
_LINF_EPS = [0.02, 0.05, 0.1, 0.15, 0.2, 0.3]


def _settings(p: Profile, *, data: dict[str, Any], classes: list[int], model: dict[str, Any],
                 train: dict[str, Any], n_points: int, n_train_points: int, l2_eps: list[float], reference_l2: float,
                 attack_batch_size: int, seeds: list[int]) -> dict[str, Any]:
    """An adversarial experiment's settings: its data, network, training, attacked points, L2 budgets and seeds
    around the attacks every adversarial experiment shares (L∞ budgets, PGD and DeepFool settings by profile)."""
    attack = {"n_points": n_points, "n_train_points": n_train_points,
              "linf_eps": p.pick(paper=_LINF_EPS, quick=_LINF_EPS, smoke=[0.1, 0.3]), "l2_eps": l2_eps,
              "reference_linf": 0.1, "reference_l2": reference_l2, "pgd_steps": p.pick(paper=40, quick=20, smoke=5),
              "step_ratio": 2.5, "random_start": True, "deepfool_steps": p.pick(paper=50, quick=50, smoke=20),
              "overshoot": 0.02, "n_quantiles": p.pick(paper=5, quick=5, smoke=3), "batch_size": attack_batch_size}
    return {"data": data, "classes": classes, "model": model, "train": train, "attack": attack,
            "svm": {"soft_C": 1.0}, "seeds": seeds}


@register_settings("adversarial", "adversarial-mnist",
                   "MNIST 0 vs 1, MLP 784-256-16: feature-space margin vs input-space attacks")
def _adversarial_mnist(p: Profile) -> dict[str, Any]:
    l2_eps = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0]
    return _settings(
        p, data={"source": "real", "name": "mnist", "data_dir": None, "normalize": "unit", "seed": 0,
                 "train_per_class": p.pick(paper=None, quick=1000, smoke=60),
                 "test_per_class": p.pick(paper=None, quick=250, smoke=20)},
        classes=[0, 1],
        model=mnist_network(p, 16),
        train={"optimizer": "adam", "lr": 1e-3, "epochs": p.pick(paper=10, quick=20, smoke=5),
               "batch_size": p.pick(paper=128, quick=64)},
        n_points=p.pick(paper=1000, quick=400, smoke=30), n_train_points=p.pick(paper=500, quick=200, smoke=20),
        l2_eps=p.pick(paper=l2_eps, quick=l2_eps, smoke=[1.0, 3.0]),
        reference_l2=1.5, attack_batch_size=p.pick(paper=250, quick=500),
        seeds=p.pick(paper=[0, 1, 2, 3, 4], quick=[0, 1, 2], smoke=[0]))


@register_settings("adversarial", "adversarial-digits",
                   "8x8 digits (sklearn), 10 classes, MLP 64-64-16: feature-space margin vs attacks")
def _adversarial_digits(p: Profile) -> dict[str, Any]:
    l2_eps = [0.1, 0.25, 0.5, 0.75, 1.0, 1.5]
    return _settings(
        p, data={"source": "real", "name": "digits", "normalize": "unit", "seed": 0,
                 "train_per_class": p.pick(paper=None, quick=None, smoke=20),
                 "test_per_class": p.pick(paper=None, quick=None, smoke=10)},
        classes=p.pick(paper=list(range(10)), quick=list(range(10)), smoke=[0, 1, 2]),
        model={"name": "mlp", "kwargs": {"hidden": p.pick(paper=[64, 16], quick=[64, 16], smoke=[32, 8]),
                                         "activations": "relu", "init": "torch"}},
        train={"optimizer": "adam", "lr": p.pick(paper=1e-3, quick=1e-3, smoke=1e-2),
               "epochs": p.pick(paper=60, quick=60, smoke=40), "batch_size": 32},
        n_points=p.pick(paper=360, quick=300, smoke=24), n_train_points=p.pick(paper=200, quick=200, smoke=20),
        l2_eps=p.pick(paper=l2_eps, quick=l2_eps, smoke=[0.5, 1.5]),
        reference_l2=0.5, attack_batch_size=500,
        seeds=p.pick(paper=list(range(10)), quick=[0, 1, 2], smoke=[0]))


# ------------------------------------------------------------------------------------ feature margins
def feature_distance(H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Signed distance in the transformed space from each point to its nearest pairwise boundary of (W, b).

    ``d_i = min_{k≠y_i} ((w_{y_i} − w_k)·h_i + b_{y_i} − b_k) / ‖w_{y_i} − w_k‖``. The region of class y is
    the intersection of the half-spaces ``s_y ≥ s_k``, so for a correctly classified point this is exactly its
    Euclidean distance to the region's border (binary: to the hyperplane). Negative when misclassified.

    Parameters
    ----------
    H : ndarray of shape (N, D)
    y : ndarray of shape (N,), labels in 0..K-1
    W : ndarray of shape (K, D) or (1, D) (binary SVM: class 1 against class 0)
    b : ndarray of shape (K,) or (1,), default=None

    Returns
    -------
    ndarray of shape (N,)
    """
    W, b = M.class_scores(W, b)
    H = np.asarray(H, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    diff_w = W[y][:, None, :] - W[None, :, :]                     # (N, K, D)
    num = (diff_w * H[:, None, :]).sum(axis=2) + (b[y][:, None] - b[None, :])   # (N, K)
    den = np.linalg.norm(diff_w, axis=2)                           # (N, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = num / den
    dist[np.arange(len(y)), y] = np.inf
    return dist.min(axis=1)


# ---------------------------------------------------------------------------------------------- attacks
def ce_objective(scores: Tensor, y: Tensor) -> Tensor:
    """Per-sample cross-entropy of the scores (the usual attack loss, to maximise). (N, K), (N,) -> (N,)."""
    return F.cross_entropy(scores.double(), y, reduction="none")


def svm_scores(model: nn.Module, V: np.ndarray, c: np.ndarray) -> Scores:
    """The SVM's class scores through the feature map: ``x -> φ(x) V̂ᵀ + ĉ``, shape (N, *) -> (N, K).

    ``V``, ``c`` are the SVM's ``coef_``/``intercept_`` (a binary (1, D) SVM becomes the rows (0, v), (0, c)).
    """
    Vk, ck = M.class_scores(V, c)
    p = next(model.parameters())
    Vt = torch.as_tensor(Vk, dtype=p.dtype, device=p.device)       # (K, D)
    ct = torch.as_tensor(ck, dtype=p.dtype, device=p.device)       # (K,)
    return lambda x: model.features(x) @ Vt.T + ct


def svm_margin_objective(V: np.ndarray, c: np.ndarray) -> Objective:
    """Minus the normalised SVM margin of the true class: ``−min_{k≠y} (S_y − S_k) / ‖v_y − v_k‖``.

    Used with ``scores = svm_scores(model, V, c)``: maximising it pushes φ(x) towards, then across, the nearest
    SVM hyperplane. (N, K), (N,) -> (N,).
    """
    Vk, _ = M.class_scores(V, c)
    norms = np.linalg.norm(Vk[:, None, :] - Vk[None, :, :], axis=2)   # (K, K), 0 on the diagonal
    np.fill_diagonal(norms, np.inf)

    def objective(S: Tensor, y: Tensor) -> Tensor:
        nrm = torch.as_tensor(norms, dtype=S.dtype, device=S.device)[y]   # (N, K)
        gap = (S.gather(1, y[:, None]) - S) / nrm                           # (N, K), 0 at k = y
        gap = gap.masked_fill(torch.isinf(nrm), float("inf"))
        return -gap.min(dim=1).values
    return objective


def _project(delta: Tensor, eps: float, norm: str) -> Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    flat = delta.flatten(1)
    scale = (eps / (flat.norm(dim=1) + 1e-12)).clamp(max=1.0)           # (N,)
    return delta * scale.view(-1, *([1] * (delta.dim() - 1)))


def _direction(g: Tensor, norm: str) -> Tensor:
    if norm == "linf":
        return g.sign()
    return g / (g.flatten(1).norm(dim=1).view(-1, *([1] * (g.dim() - 1))) + 1e-12)


def _random_start(x: Tensor, eps: float, norm: str, generator: torch.Generator | None) -> Tensor:
    """A random point of the ball: uniform per coordinate (L∞); uniform direction, radius eps·U(0, 1) (L2)."""
    shape = (-1, *([1] * (x.dim() - 1)))
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64)
    if norm == "linf":
        return ((2 * u - 1) * eps).to(device=x.device, dtype=x.dtype)
    z = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    r = torch.rand(x.shape[0], generator=generator, dtype=torch.float64)
    z = z / (z.flatten(1).norm(dim=1).view(shape) + 1e-12) * (eps * r).view(shape)
    return z.to(device=x.device, dtype=x.dtype)


def _check_attack(eps: float, norm: str, bounds: tuple[float, float] | None) -> None:
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}.")
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}.")
    if bounds is not None and not bounds[0] < bounds[1]:
        raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}.")


def _clip(x: Tensor, bounds: tuple[float, float] | None) -> Tensor:
    return x if bounds is None else x.clamp(bounds[0], bounds[1])


def _wrong(scores: Scores, x: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return scores(x).argmax(dim=1) != y


def fgsm(scores: Scores, x: Tensor, y: Tensor, eps: float, *,
         bounds: tuple[float, float] | None = (0.0, 1.0), objective: Objective = ce_objective) -> Tensor:
    """Fast gradient sign method: ``x + eps · sign(∇ objective)``, clipped to ``bounds``.

    Parameters
    ----------
    scores : callable
        ``x (N, *) -> scores (N, K)``; the model itself for the usual attack.
    x : Tensor of shape (N, *)
    y : Tensor of shape (N,)
    eps : float
        L∞ budget.
    bounds : (float, float) or None, default=(0, 1)
        Valid input range.
    objective : callable, default=:func:`ce_objective`

    Returns
    -------
    Tensor of shape (N, *)
    """
    _check_attack(eps, "linf", bounds)
    xa = x.detach().clone().requires_grad_(True)
    g, = torch.autograd.grad(objective(scores(xa), y).sum(), xa)
    return _clip(x + eps * g.sign(), bounds).detach()


def pgd(scores: Scores, x: Tensor, y: Tensor, eps: float, *, norm: str = "linf", steps: int = 20,
        step_size: float | None = None, random_start: bool = True, bounds: tuple[float, float] | None = (0.0, 1.0),
        objective: Objective = ce_objective, success: Scores | None = None,
        generator: torch.Generator | None = None) -> Tensor:
    """Projected gradient ascent of ``objective`` within an L∞ or L2 ball of radius ``eps`` (and ``bounds``).

    Each step moves by ``step_size`` along the sign of the gradient (L∞) or the normalised gradient (L2), then
    projects back onto the ball and the valid range. The first iterate at which a point is misclassified by
    ``success`` (a scores function, by default ``scores``) is kept for that point; otherwise the last iterate.

    Parameters
    ----------
    scores : callable
        ``x (N, *) -> (N, K)`` scores fed to ``objective``: the model (CE attack) or :func:`svm_scores`
        (margin-guided attack).
    x : Tensor of shape (N, *)
    y : Tensor of shape (N,)
        True labels.
    eps : float
    norm : {"linf", "l2"}, default="linf"
    steps : int, default=20
    step_size : float or None, default=None
        None: ``2.5 · eps / steps``.
    random_start : bool, default=True
        Start from a uniform point of the ball (drawn from ``generator``).
    bounds : (float, float) or None, default=(0, 1)
    objective : callable, default=:func:`ce_objective`
        ``(scores (N, K), y (N,)) -> (N,)``, maximised.
    success : callable or None, default=None
        Scores whose argmax decides success (early keep); None uses ``scores``.
    generator : torch.Generator or None, default=None
        For the random start (CPU generator); None uses the global RNG.

    Returns
    -------
    Tensor of shape (N, *)
        Satisfies ``‖x_adv − x‖ ≤ eps`` (up to float rounding) and lies within ``bounds``.
    """
    _check_attack(eps, norm, bounds)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    x = x.detach()
    if eps == 0:
        return x.clone()
    judge = success or scores
    alpha = 2.5 * eps / steps if step_size is None else float(step_size)
    delta = _random_start(x, eps, norm, generator) if random_start else torch.zeros_like(x)
    delta = _clip(x + _project(delta, eps, norm), bounds) - x
    best = x + delta
    done = _wrong(judge, best, y)
    for _ in range(steps):
        delta.requires_grad_(True)
        g, = torch.autograd.grad(objective(scores(x + delta), y).sum(), delta)
        with torch.no_grad():
            delta = _project(delta + alpha * _direction(g, norm), eps, norm)
            delta = _clip(x + delta, bounds) - x
            cand = x + delta
            new = _wrong(judge, cand, y) & ~done
            best[new] = cand[new]
            done |= new
        if bool(done.all()):
            break
    with torch.no_grad():
        best[~done] = (x + delta)[~done]
    return best.detach()


def deepfool(scores: Scores, x: Tensor, y: Tensor, *, max_iter: int = 50, overshoot: float = 0.02,
             bounds: tuple[float, float] | None = (0.0, 1.0), refine_steps: int = 10) -> tuple[Tensor, Tensor]:
    """DeepFool (Moosavi-Dezfooli et al., 2016): minimal L2 steps across the linearised nearest boundary.

    At each iteration, for the points still classified as ``y`` by ``scores``, the differences
    ``f_k = S_k − S_y`` are linearised and the point moves to the nearest linearised boundary
    ``|f_l| / ‖∇f_l‖``; the accumulated step is applied with ``(1 + overshoot)`` and clipped to ``bounds``.
    With ``scores = model`` this is the usual attack; with :func:`svm_scores` it is the minimal margin-guided
    attack: it moves φ(x) across the SVM hyperplane through the feature map.

    Where the scores bend away from their linearisation (saturating units), one DeepFool step can land far
    beyond the boundary; so the final perturbation δ of each successful point is shrunk by bisection on
    ``x + t·δ``, t ∈ (0, 1], keeping the smallest t found that is still misclassified (``refine_steps``
    halvings of the interval).

    Parameters
    ----------
    scores : callable
        ``x (N, *) -> (N, K)``.
    x : Tensor of shape (N, *)
    y : Tensor of shape (N,)
        Labels to move away from (the true labels).
    max_iter : int, default=50
    overshoot : float, default=0.02
    bounds : (float, float) or None, default=(0, 1)
    refine_steps : int, default=10
        Bisection steps on the final perturbation (0 disables the refinement).

    Returns
    -------
    x_adv : Tensor of shape (N, *)
    success : Tensor of shape (N,), bool
        ``argmax scores(x_adv) != y``.
    """
    if max_iter < 1 or overshoot < 0 or refine_steps < 0:
        raise ValueError(f"max_iter must be >= 1, overshoot >= 0 and refine_steps >= 0, got {max_iter}, "
                         f"{overshoot} and {refine_steps}.")
    x = x.detach()
    r_tot = torch.zeros_like(x)
    x_adv = x.clone()
    active = ~_wrong(scores, x_adv, y)
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        idx = torch.nonzero(active).flatten()
        xa = x_adv[idx].clone().requires_grad_(True)
        S = scores(xa)                                              # (n, K)
        ya = y[idx]
        f = S - S.gather(1, ya[:, None])                            # (n, K), 0 at the true class
        K = S.shape[1]
        grads = torch.stack([torch.autograd.grad(f[:, k].sum(), xa, retain_graph=k < K - 1)[0]
                             for k in range(K)], dim=1)             # (n, K, *)
        gflat = grads.flatten(2)                                    # (n, K, d)
        gnorm = gflat.norm(dim=2) + 1e-12                           # (n, K)
        dist = f.detach().abs() / gnorm
        dist[torch.arange(len(idx)), ya] = float("inf")
        l = dist.argmin(dim=1)                                      # (n,)
        fl = f.detach().gather(1, l[:, None]).squeeze(1).abs()     # (n,)
        gl = grads[torch.arange(len(idx)), l]                       # (n, *)
        step = ((fl + 1e-4) / gnorm.gather(1, l[:, None]).squeeze(1) ** 2).view(-1, *([1] * (x.dim() - 1))) * gl
        with torch.no_grad():
            r_tot[idx] += step
            x_adv[idx] = _clip(x[idx] + (1 + overshoot) * r_tot[idx], bounds)
            active = ~_wrong(scores, x_adv, y)
    success = _wrong(scores, x_adv, y)
    if refine_steps and bool(success.any()):
        x_adv[success] = _bisect(scores, x[success], x_adv[success], y[success], refine_steps)
    return x_adv.detach(), _wrong(scores, x_adv, y)


@torch.no_grad()
def _bisect(scores: Scores, x: Tensor, x_adv: Tensor, y: Tensor, steps: int) -> Tensor:
    """Smallest ``t`` found in (0, 1] with ``x + t (x_adv − x)`` still misclassified; returns that point.

    Both ends lie in the (convex) valid box, so every point of the segment does too.
    """
    delta = x_adv - x
    shape = (-1, *([1] * (x.dim() - 1)))
    lo = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    hi = torch.ones(len(x), dtype=x.dtype, device=x.device)
    for _ in range(steps):
        mid = (lo + hi) / 2
        bad = _wrong(scores, x + mid.view(shape) * delta, y)
        hi = torch.where(bad, mid, hi)
        lo = torch.where(bad, lo, mid)
    return x + hi.view(shape) * delta


# ------------------------------------------------------------------------------------------- the run
@dataclass
class AdversarialResult:
    """Tables of an adversarial run (every table has a ``seed`` column).

    Attributes
    ----------
    points : DataFrame
        One row per attacked point (``part`` = test or train): label, correct, svm_dist, nn_dist,
        nn_norm_margin, is_support (train), quantile (test, by svm_dist), deepfool_l2/linf/success,
        svmfool_l2/linf/crossed_svm/flipped_nn, min_eps_<attack>_<norm> (inf: not broken in the grid).
    curves : DataFrame
        attack, norm, eps, robust_acc, success_rate (over clean-correct points), median_pert.
    curves_summary : DataFrame
        Mean/std over seeds of ``curves``.
    quantiles : DataFrame
        Per SVM-margin quantile of the clean-correct test points.
    quantiles_summary : DataFrame
    support_vs_rest : DataFrame
        Training points: support vectors against the others.
    summary : dict
        Per seed model facts and correlations, and their mean ± std.
    config : dict
    out_dir : Path or None
    """

    points: pd.DataFrame
    curves: pd.DataFrame
    curves_summary: pd.DataFrame
    quantiles: pd.DataFrame
    quantiles_summary: pd.DataFrame
    support_vs_rest: pd.DataFrame
    summary: dict[str, Any]
    config: dict[str, Any]
    out_dir: Path | None = None
    wall_time_s: float = float("nan")
    history: list[dict[str, Any]] = field(default_factory=list)

    def as_kind_result(self) -> Any:
        """The uniform :class:`~nnboundary.experiments.result.KindResult` view: the mean over seeds of the
        per-seed facts (accuracies, correlations, attack rates) and the seeds."""
        from nnboundary.experiments.result import KindResult

        return KindResult(name=self.config.get("name", "adversarial"), profile=self.config.get("profile", ""),
                          kind="adversarial", run_dir=self.out_dir, seeds=list(self.config["seeds"]),
                          summary=dict(self.summary.get("mean", {})), wall_time_s=self.wall_time_s, detail=self)


def _fit_svm(H: np.ndarray, y: np.ndarray, soft_C: float) -> tuple[MaxMarginClassifier, bool]:
    svm, separable = fit_svm(H, y, soft_C)
    if svm is None:
        raise RuntimeError("The training features are degenerate (the soft-margin SVM is W = 0, e.g. a dead ReLU "
                           "layer): there is no boundary to attack. Train longer, or change the seed or the "
                           "activation.")
    return svm, separable


def _batched(fn: Callable[..., Any], n: int, batch: int, *arrays: Tensor) -> list[Any]:
    return [fn(*(a[s:s + batch] for a in arrays)) for s in range(0, n, batch)]


def _norms(delta: Tensor) -> tuple[np.ndarray, np.ndarray]:
    flat = delta.flatten(1).double()
    return flat.norm(dim=1).cpu().numpy(), flat.abs().max(dim=1).values.cpu().numpy()


def _balanced_sample(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """About ``n`` indices, as balanced over the labels as the data allow, sorted."""
    classes = np.unique(y)
    per = max(1, n // len(classes))
    out = [rng.permutation(np.flatnonzero(y == c))[:per] for c in classes]
    return np.sort(np.concatenate(out))


def _attack_points(model: nn.Module, svm: MaxMarginClassifier, X: Tensor, y: Tensor, att: Mapping[str, Any],
                   bounds: tuple[float, float] | None, seed: int, grids: bool) -> tuple[dict[str, np.ndarray], list]:
    """Run every attack on (X, y); per-point columns and (if ``grids``) the curve rows."""
    nn_scores: Scores = model
    s_svm = svm_scores(model, svm.coef_, svm.intercept_)
    obj_svm = svm_margin_objective(svm.coef_, svm.intercept_)
    n, bs = len(y), int(att.get("batch_size", 500))
    cols: dict[str, np.ndarray] = {}
    df = _batched(lambda a, b: deepfool(nn_scores, a, b, max_iter=att["deepfool_steps"],
                                        overshoot=att["overshoot"], bounds=bounds), n, bs, X, y)
    xa = torch.cat([d[0] for d in df])
    cols["deepfool_l2"], cols["deepfool_linf"] = _norms(xa - X)
    cols["deepfool_success"] = torch.cat([d[1] for d in df]).cpu().numpy()
    sf = _batched(lambda a, b: deepfool(s_svm, a, b, max_iter=att["deepfool_steps"], overshoot=att["overshoot"],
                                        bounds=bounds), n, bs, X, y)
    xs = torch.cat([d[0] for d in sf])
    cols["svmfool_l2"], cols["svmfool_linf"] = _norms(xs - X)
    cols["svmfool_crossed_svm"] = torch.cat([d[1] for d in sf]).cpu().numpy()
    cols["svmfool_flipped_nn"] = _wrong(nn_scores, xs, y).cpu().numpy()
    for key in ("deepfool", "svmfool"):
        ok = cols[f"{key}_success" if key == "deepfool" else "svmfool_crossed_svm"]
        for nm in ("l2", "linf"):
            cols[f"{key}_{nm}"] = np.where(ok, cols[f"{key}_{nm}"], np.inf)
    rows: list[dict[str, Any]] = []
    gen = torch.Generator().manual_seed(seed)
    for norm in ("linf", "l2"):
        grid = sorted(float(e) for e in att[f"{norm}_eps"])
        attacks = {"pgd": (nn_scores, ce_objective), "margin_guided": (s_svm, obj_svm)}
        if norm == "linf":
            attacks = {"fgsm": None, **attacks}
        for name in attacks:
            min_eps = np.full(n, np.inf)
            for eps in grid:
                if name == "fgsm":
                    adv = torch.cat(_batched(lambda a, b: fgsm(nn_scores, a, b, eps, bounds=bounds), n, bs, X, y))
                else:
                    sc, ob = attacks[name]
                    adv = torch.cat(_batched(
                        lambda a, b: pgd(sc, a, b, eps, norm=norm, steps=att["pgd_steps"],
                                         step_size=att["step_ratio"] * eps / att["pgd_steps"],
                                         random_start=att["random_start"], bounds=bounds, objective=ob,
                                         success=nn_scores, generator=gen), n, bs, X, y))
                broken = _wrong(nn_scores, adv, y).cpu().numpy()
                min_eps = np.where(broken & ~np.isfinite(min_eps), eps, min_eps)
                if grids:
                    l2, linf = _norms(adv - X)
                    pert = (linf if norm == "linf" else l2)[broken]
                    row = {"attack": name, "norm": norm, "eps": eps, "broken": broken}
                    if name == "margin_guided":
                        row["crossed_svm"] = _wrong(s_svm, adv, y).cpu().numpy()
                    row["median_pert"] = float(np.median(pert)) if pert.size else float("nan")
                    rows.append(row)
            cols[f"min_eps_{name}_{norm}"] = min_eps
    return cols, rows


def _quantile_table(pts: pd.DataFrame, att: Mapping[str, Any]) -> pd.DataFrame:
    ref = {"linf": float(att["reference_linf"]), "l2": float(att["reference_l2"])}
    rows = []
    for q, g in pts.groupby("quantile"):
        row = {"quantile": int(q), "n": len(g), "svm_dist_median": float(g["svm_dist"].median()),
               "nn_dist_median": float(g["nn_dist"].median()),
               "deepfool_l2_median": float(g["deepfool_l2"].median()),
               "svmfool_l2_median": float(g["svmfool_l2"].median())}
        for col in g.columns:
            if col.startswith("min_eps_"):
                norm = col.rsplit("_", 1)[1]
                row[f"success_{col[8:]}@{ref[norm]:g}"] = float((g[col] <= ref[norm] + 1e-12).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ok = ~np.isnan(a) & ~np.isnan(b)        # inf (not broken within the grid) ranks as the hardest
    if ok.sum() < 3 or np.unique(a[ok]).size < 2 or np.unique(b[ok]).size < 2:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def _train_model(model: nn.Module, X: np.ndarray, y: np.ndarray, tr: Mapping[str, Any], seed: int,
                 dev: torch.device) -> list[tuple[int, float, float]]:
    """Train ``model`` in place; returns the training history ``[(step, batch loss, batch accuracy)]``."""
    return fit(model, X, y, loss="cross_entropy", optimizer=tr.get("optimizer", "adam"), lr=float(tr.get("lr", 1e-3)),
        epochs=int(tr.get("epochs", 20)), batch_size=min(int(tr.get("batch_size", 64)), len(y)), seed=seed,
        device=dev, progress=False)


_SEED_STAGES = 3  # training + SVM, the attacks on test points, the attacks on training points


def _run_seed(cfg: Mapping[str, Any], data: Any, seed: int, dev: torch.device, bar: Any) -> dict[str, Any]:
    """One seed's facts, curves, quantiles and points; ``bar`` (see ``work_bar``) advances by its stages."""
    att = cfg["attack"]
    bar.set_postfix_str(f"seed {seed}: training")
    model, flatten = build_network(cfg["model"], data.x_train.shape[1:], len(data.classes), seed)
    flat = (lambda a: a.reshape(len(a), -1)) if flatten else (lambda a: a)
    Xtr, Xte = flat(data.x_train), flat(data.x_test)
    t0 = time.perf_counter()
    history = _train_model(model, Xtr, data.y_train, cfg.get("train", {}), seed, dev).history
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    train_ext = extract_features(model, Xtr, "head", device=dev)
    test_ext = extract_features(model, Xte, "head", device=dev)
    H, Z, Ht, Zt = train_ext.features, train_ext.logits, test_ext.features, test_ext.logits
    W, b = head_arrays(model)
    svm, separable = _fit_svm(H, data.y_train, float(cfg.get("svm", {}).get("soft_C", 1.0)))
    V, c = svm.coef_, svm.intercept_
    facts = {"seed": seed, "train_acc": float((Z.argmax(1) == data.y_train).mean()),
             "test_acc": float((Zt.argmax(1) == data.y_test).mean()), "separable": separable,
             "n_support": int(len(svm.support_)), "angle_deg": M.direction_angle(W, V),
             "svm_margin": float(svm.margin_), "nn_margin": M.normalized_margin(H, data.y_train, W, b),
             "agreement_test": M.agreement(M.predict_classes(Ht, W, b), M.predict_classes(Ht, V, c)),
             "train_seconds": time.perf_counter() - t0}
    bar.update(1)
    rng = np.random.default_rng([seed, 7])
    tables = []
    for part, Xs, Hs, ys, Zs, n_pick in (("test", Xte, Ht, data.y_test, Zt, att["n_points"]),
                                          ("train", Xtr, H, data.y_train, Z, att["n_train_points"])):
        if part == "test":
            idx = _balanced_sample(ys, int(n_pick), rng)
        else:  # every support vector, then random other training points up to n_train_points
            rest = np.setdiff1d(np.arange(len(ys)), svm.support_)
            extra = max(0, int(n_pick) - len(svm.support_))
            idx = np.sort(np.concatenate([svm.support_, rng.permutation(rest)[:extra]]))
        y_sel = ys[idx]
        pts = pd.DataFrame({"seed": seed, "part": part, "index": idx, "label": y_sel,
                            "correct": Zs[idx].argmax(1) == y_sel,
                            "svm_dist": feature_distance(Hs[idx], y_sel, V, c),
                            "nn_dist": feature_distance(Hs[idx], y_sel, W, b),
                            "nn_norm_margin": M.functional_margins(Hs[idx], y_sel, W, b) / M.margin_norm(W),
                            "is_support": np.isin(idx, svm.support_) if part == "train" else False})
        bar.set_postfix_str(f"seed {seed}: attacking {len(idx)} {part} points")
        p = next(model.parameters())
        Xt = torch.as_tensor(Xs[idx]).to(device=dev, dtype=p.dtype)
        yt = torch.as_tensor(y_sel).to(dev)
        cols, rows = _attack_points(model, svm, Xt, yt, att, data.pixel_range, seed, grids=(part == "test"))
        for k, v in cols.items():
            pts[k] = v
        if part == "test":
            facts["n_attacked"] = int(len(idx))
            facts["clean_acc_attacked"] = float(pts["correct"].mean())
            curves = _curve_rows(rows, pts["correct"].to_numpy(), seed)
            ok = pts["correct"].to_numpy()
            q = int(att["n_quantiles"])
            pts["quantile"] = -1
            pts.loc[ok, "quantile"] = pd.qcut(pts.loc[ok, "svm_dist"].rank(method="first"), q, labels=False)
            sub = pts[ok]
            facts["spearman_svmdist_deepfool_l2"] = _spearman(sub["deepfool_l2"].to_numpy(), sub["svm_dist"].to_numpy())
            facts["spearman_nndist_deepfool_l2"] = _spearman(sub["deepfool_l2"].to_numpy(), sub["nn_dist"].to_numpy())
            facts["spearman_svmdist_min_eps_pgd_linf"] = _spearman(sub["min_eps_pgd_linf"].to_numpy(),
                                                                   sub["svm_dist"].to_numpy())
            facts["svmfool_crossed_svm_rate"] = float(sub["svmfool_crossed_svm"].mean())
            facts["svmfool_flipped_nn_rate"] = float(sub["svmfool_flipped_nn"].mean())
            facts["deepfool_success_rate"] = float(sub["deepfool_success"].mean())
            both = np.isfinite(sub["deepfool_l2"]) & np.isfinite(sub["svmfool_l2"]) & sub["svmfool_flipped_nn"]
            facts["median_ratio_svmfool_to_deepfool_l2"] = (
                float(np.median(sub.loc[both, "svmfool_l2"] / sub.loc[both, "deepfool_l2"])) if both.any()
                else float("nan"))
            quant = _quantile_table(sub, att)
            quant.insert(0, "seed", seed)
        else:
            pts["quantile"] = -1
        tables.append(pts)
        bar.update(1)
    points = pd.concat(tables, ignore_index=True)
    return {"facts": facts, "points": points, "curves": curves, "quantiles": quant,
            "support_vs_rest": _support_table(points[points["part"] == "train"], att, seed),
            "history": [{"seed": seed, "step": int(t), "train_loss": loss, "train_accuracy": acc}
                        for t, loss, acc in history]}


def _curve_rows(rows: list[dict[str, Any]], correct: np.ndarray, seed: int) -> pd.DataFrame:
    out = []
    for r in rows:
        broken = r["broken"]
        rec = {"seed": seed, "attack": r["attack"], "norm": r["norm"], "eps": r["eps"],
               "robust_acc": float((correct & ~broken).mean()),
               "success_rate": float(broken[correct].mean()) if correct.any() else float("nan"),
               "median_pert": r["median_pert"]}
        if "crossed_svm" in r:
            rec["crossed_svm_rate"] = float(r["crossed_svm"][correct].mean()) if correct.any() else float("nan")
        out.append(rec)
    # eps = 0 anchors the curves at the clean accuracy
    for attack, norm in {(r["attack"], r["norm"]) for r in rows}:
        out.append({"seed": seed, "attack": attack, "norm": norm, "eps": 0.0, "robust_acc": float(correct.mean()),
                    "success_rate": 0.0, "median_pert": 0.0})
    return pd.DataFrame(out).sort_values(["norm", "attack", "eps"]).reset_index(drop=True)


def _support_table(train_pts: pd.DataFrame, att: Mapping[str, Any], seed: int) -> pd.DataFrame:
    ref = float(att["reference_linf"])
    rows = []
    for is_sv, g in train_pts[train_pts["correct"]].groupby("is_support"):
        rows.append({"seed": seed, "group": "support" if is_sv else "non-support", "n": len(g),
                     "svm_dist_median": float(g["svm_dist"].median()),
                     "deepfool_l2_median": float(g["deepfool_l2"].median()),
                     "svmfool_l2_median": float(g["svmfool_l2"].median()),
                     f"success_pgd_linf@{ref:g}": float((g["min_eps_pgd_linf"] <= ref + 1e-12).mean()),
                     f"success_margin_guided_linf@{ref:g}": float((g["min_eps_margin_guided_linf"] <= ref + 1e-12)
                                                                   .mean())})
    return pd.DataFrame(rows)


def _mean_std(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    values = [c for c in frame.columns if c not in keys + ["seed"] and pd.api.types.is_numeric_dtype(frame[c])]
    g = frame.groupby(keys, sort=False)[values].agg(["mean", "std"])
    g.columns = [f"{a}_{b}" for a, b in g.columns]
    return g.reset_index()


def _check_config(cfg: Mapping[str, Any]) -> None:
    for key in ("data", "classes", "model", "attack"):
        if key not in cfg:
            raise ValueError(f"An adversarial config needs {key!r}; start from get_experiment(<name>, <profile>)"
                             ".settings.")
    att = cfg["attack"]
    for key in ("n_points", "n_train_points", "linf_eps", "l2_eps", "reference_linf", "reference_l2", "pgd_steps",
                "step_ratio", "random_start", "deepfool_steps", "overshoot", "n_quantiles"):
        if key not in att:
            raise ValueError(f"attack.{key} is missing from the config; see an adversarial experiment's "
                             "settings for the keys.")
    if len(cfg["classes"]) < 2:
        raise ValueError(f"classes must hold at least 2 class ids, got {cfg['classes']!r}.")


def run_adversarial(config: Mapping[str, Any] | str, out_dir: str | Path | None = None, *,
                    seeds: int | Sequence[int] | None = None, device: str | torch.device = "cpu",
                    profile: str = "quick", data_dir: str | Path | None = None,
                    force: bool = False, progress: bool = False) -> AdversarialResult:
    """Train, fit the SVM on the features, attack, and relate vulnerability to the feature-space margin.

    For each seed: train the network on the training set, fit the max-margin SVM on its training features
    (soft margin if not separable), pick ``n_points`` test points (balanced) and every support vector plus
    random other training points up to ``n_train_points``, and run DeepFool, the minimal margin-guided
    attack, FGSM, PGD and the budgeted margin-guided attack over the budget grids.

    Parameters
    ----------
    config : dict or str
        A resolved config (``get_experiment(name, profile).settings``) or the name of an adversarial experiment.
    out_dir : path-like or None, default=None
        Run directory (staged in ``<out_dir>.partial``, committed when complete): config.json, points.csv,
        curves.csv, curves_summary.csv, quantiles.csv, quantiles_summary.csv, support_vs_rest.csv,
        summary.json, report.md and figures/robustness.png.
    seeds : int, sequence of int or None, default=None
        None uses ``config["seeds"]``.
    device : str or torch.device, default="cpu"
    profile : str, default="quick"
        Only used when ``config`` is a name.
    data_dir : path-like or None, default=None
        Overrides ``config["data"]["data_dir"]``.
    force : bool, default=False
        Overwrite results already in ``out_dir``.
    progress : bool, default=False
        A bar over the seeds' stages (training and SVM, the test-point attacks, the training-point attacks).

    Returns
    -------
    AdversarialResult

    Raises
    ------
    nnboundary.experiments.RunExistsError
        ``out_dir`` already holds results and ``force`` is False, or is not an nnboundary run directory
        (checked before any work; see :class:`~nnboundary.experiments.rundir.RunDir`).
    """
    t0 = time.perf_counter()
    cfg = (get_experiment(config, profile, kind="adversarial").settings if isinstance(config, str)
           else copy.deepcopy(dict(config)))
    if data_dir is not None:
        cfg.setdefault("data", {})["data_dir"] = str(data_dir)
    _check_config(cfg)
    seed_values = seed_list(seeds, cfg.get("seeds", [0]))
    cfg["seeds"] = seed_values
    rd = None if out_dir is None else RunDir(out_dir, experiment=cfg.get("name", "adversarial"),
                                             profile=cfg.get("profile", profile))
    if rd is not None:
        rd.check(force=force)  # before any work
    dev = resolve_device(device)
    data = load_arrays(cfg["data"], cfg["classes"])
    with rd.open(force=force) if rd is not None else contextlib.nullcontext(None) as path:
        if path is not None:
            write_json(path / "config.json", {**cfg, "device": str(dev), "data_info": data.info,
                                              "pixel_range": data.pixel_range})
        bar = work_bar(_SEED_STAGES * len(seed_values), cfg.get("name", "adversarial"), progress)
        runs = [_run_seed(cfg, data, s, dev, bar) for s in seed_values]
        bar.close()
        facts = pd.DataFrame([r["facts"] for r in runs])
        curves = pd.concat([r["curves"] for r in runs], ignore_index=True)
        quantiles = pd.concat([r["quantiles"] for r in runs], ignore_index=True)
        support = pd.concat([r["support_vs_rest"] for r in runs], ignore_index=True)
        summary = {"per_seed": facts.to_dict(orient="records"),
                   "mean": facts.drop(columns=["seed"]).mean(numeric_only=True).to_dict(),
                   "std": facts.drop(columns=["seed"]).std(numeric_only=True, ddof=1).to_dict()
                   if len(facts) > 1 else {}}
        result = AdversarialResult(pd.concat([r["points"] for r in runs], ignore_index=True), curves,
                                   _mean_std(curves, ["attack", "norm", "eps"]), quantiles,
                                   _mean_std(quantiles, ["quantile"]), support, summary, cfg,
                                   None if rd is None else rd.path, wall_time_s=time.perf_counter() - t0,
                                   history=[row for r in runs for row in r["history"]])
        if path is not None:
            _write(result, path)
    return result


def _write(result: AdversarialResult, path: Path) -> None:
    from nnboundary.applications._figures import plot_robustness

    for name in ("points", "curves", "curves_summary", "quantiles", "quantiles_summary", "support_vs_rest"):
        write_csv(path / f"{name}.csv", getattr(result, name))
    write_json(path / "summary.json", jsonable({**result.summary, "seeds": result.config["seeds"],
                                                "wall_time_s": result.wall_time_s}))
    write_jsonl(path / "metrics.jsonl", result.history)
    q = result.quantiles
    byq = pd.concat([pd.DataFrame({"quantile": q["quantile"], "attack": a, "value": q[col], "seed": q["seed"]})
                     for a, col in (("DeepFool (NN)", "deepfool_l2_median"),
                                    ("margin-guided (SVM)", "svmfool_l2_median"))])
    byq = byq.groupby(["attack", "quantile"], sort=False)["value"].agg(value_mean="mean", value_std="std").reset_index()
    (path / "figures").mkdir(exist_ok=True)
    plot_robustness(result.curves_summary, byq, path / "figures" / "robustness.png",
                    f"{result.config.get('name', 'adversarial')} ({result.config.get('profile', '')}), "
                    f"{len(result.config['seeds'])} seed(s): mean ± std")
    from nnboundary.experiments.result import write_kind_report

    write_kind_report(path, result.as_kind_result(), notes=[
        "Mean over seeds of the per-seed facts; per seed: `summary.json`; curves, quantiles and points: the CSVs."])


# --------------------------------------------------------------------------------------- registration
def run(cfg: KindConfig, run_dir: str | Path, *, device: str = "cpu", data_dir: Any = None, progress: bool = False,
        force: bool = False) -> KindResult:
    """The adversarial kind's runner (see :func:`nnboundary.experiments.run_experiment`)."""
    return run_adversarial(copy.deepcopy(cfg.settings), run_dir, seeds=cfg.seed, device=device, data_dir=data_dir,
                           force=force, progress=progress).as_kind_result()


def _validate_settings(cfg: dict[str, Any]) -> None:
    _check_config(cfg)


register_kind(Kind(
    "adversarial", run, _validate_settings,
    flags={"seed": "one seed (replaces the profile's seed list)", "force": "replace an earlier run directory",
           "device": "where to train", "data_dir": "folder with the real data files"}))
