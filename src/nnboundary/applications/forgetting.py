"""Class-incremental learning: does replaying the SVM's support vectors prevent catastrophic forgetting?

The paper argues that the last layer converges to the max-margin SVM on the last hidden layer's features, so
the old decision boundary is fixed by the support vectors alone; replaying them while new classes are learned
should then preserve it (the idea behind SupportNet, arXiv 1806.02942). This module measures that claim against
the usual baselines, with the same exemplar budget for every strategy that keeps data.

Protocol
--------
* Tasks are groups of classes, learned one after the other (e.g. digits {0,1} → {2,3} → … → {8,9}). Labels are
  renumbered in task order, so after task t the classes seen so far are ``0 .. n_seen-1``.
* One network with a single head of K = all classes. While learning task t the cross-entropy only involves the
  logits of the classes seen so far (:class:`SeenClassCrossEntropy`); prediction is the argmax over those logits.
* The network continues from the previous task's weights. Task 0 is the same for every strategy, so it is
  trained once per seed and copied (the strategies are then compared *paired*, seed by seed).
* Strategies (:data:`STRATEGIES`):

  ``finetune``  train on the new classes only (no replay): the lower bound.
  ``random``    replay ``memory_per_class`` random training points of each old class.
  ``herding``   iCaRL's herding: points whose running mean best matches the class mean of the L2-normalised
                features (:func:`herding_selection`).
  ``svm``       SupportNet-style: fit the exact max-margin SVM (:class:`~nnboundary.svm.MaxMarginClassifier`,
                soft margin C if not separable) on the features of the data at hand, keep each new class's
                support vectors, then its smallest-margin points, up to the budget (:func:`svm_selection`).
  ``random_fc``, ``svm_fc``
                the same replay plus a feature-consolidation term ``weight · mean (φ(x) − φ_old(x))²`` over
                the training batch, φ_old the frozen feature map from before the task (SupportNet pairs its support
                data with consolidation, since support vectors stop being support vectors when φ drifts).
  ``joint``     train on all the training data of every class seen so far: the upper bound.

  Exemplars of a class are chosen right after the task that introduced it, with the features of the network
  at that time, and kept for the rest of the run (a fixed budget per old class).
* Measured after each task: test accuracy of every seen class, average accuracy, forgetting (for each old class
  the drop from its best earlier accuracy, averaged), and the NN↔SVM alignment of the head
  (:func:`~nnboundary.analysis.analyze_features` on a fixed subset of the *training* points of the seen
  classes): ``angle_all`` after the task on all seen classes, and on the old classes only ``angle_old_before``
  (the head before learning the task) and ``angle_old_after`` (after it).

Test data is used for evaluation only; nothing that is trained or selected ever sees it.

Experiments are registered functions that write their settings once, with ``Profile.pick`` where the ``smoke``/
``quick``/``paper`` profiles differ; ``get_experiment(name, profile).settings`` resolves one, :func:`run_forgetting`
runs it and writes the tables and the figure.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nnboundary import metrics as M
from nnboundary.analysis import analyze_features
from nnboundary.applications._common import (
    Arrays,
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
from nnboundary.device import resolve_device
from nnboundary.experiments.registry import (Kind, KindConfig, Profile, get_experiment, register_kind,
                                             register_settings)
from nnboundary.experiments.result import KindResult
from nnboundary.experiments.rundir import RunDir
from nnboundary.features import extract_features
from nnboundary.train import TrainConfig, Trainer

__all__ = [
    "MEMORY_STRATEGIES",
    "STRATEGIES",
    "ForgettingResult",
    "IncrementalSettings",
    "SeenClassCrossEntropy",
    "TaskRecord",
    "TaskSplit",
    "check_tasks",
    "herding_selection",
    "load_task_split",
    "make_task_split",
    "random_selection",
    "run_forgetting",
    "run_strategy",
    "summarize_forgetting",
    "svm_selection",
    "train_first_task",
]

log = logging.getLogger(__name__)

STRATEGIES: tuple[str, ...] = ("finetune", "random", "herding", "svm", "random_fc", "svm_fc", "joint")
"""Strategy names, in the order tables and figures list them."""
MEMORY_STRATEGIES: tuple[str, ...] = ("random", "herding", "svm", "random_fc", "svm_fc")
"""The strategies that keep ``memory_per_class`` exemplars of each old class."""


# --------------------------------------------------------------------------------------- experiments
_DIGIT_PAIRS = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def _settings(*, data: dict[str, Any], tasks: list[list[int]], model: dict[str, Any], train: dict[str, Any],
                memory_per_class: int, analysis_per_class: int, seeds: list[int]) -> dict[str, Any]:
    """A forgetting experiment's settings: its data, tasks, network, training, budget and seeds around what every
    forgetting experiment shares (all strategies, soft-margin C 1, consolidation weight 1)."""
    return {"data": data, "tasks": tasks, "model": model, "train": train, "memory_per_class": memory_per_class,
            "strategies": list(STRATEGIES), "svm": {"soft_C": 1.0}, "consolidation": {"weight": 1.0},
            "analysis": {"per_class": analysis_per_class}, "seeds": seeds}


@register_settings("forgetting", "forgetting-digits",
                   "Class-incremental 8x8 digits (sklearn), 5 tasks of 2 classes, MLP 64-64-16")
def _forgetting_digits(p: Profile) -> dict[str, Any]:
    return _settings(
        data={"source": "real", "name": "digits", "normalize": "unit", "seed": 0,
              "train_per_class": p.pick(paper=None, quick=None, smoke=30),
              "test_per_class": p.pick(paper=None, quick=None, smoke=15)},
        tasks=p.pick(paper=_DIGIT_PAIRS, quick=_DIGIT_PAIRS, smoke=[[0, 1], [2, 3], [4, 5]]),
        model={"name": "mlp", "kwargs": {"hidden": [64, 16], "activations": "relu", "init": "torch"}},
        train={"optimizer": "adam", "lr": 1e-3, "epochs": p.pick(paper=30, quick=30, smoke=3), "batch_size": 32},
        memory_per_class=p.pick(paper=10, quick=10, smoke=4), analysis_per_class=p.pick(paper=60, quick=60, smoke=10),
        seeds=p.pick(paper=list(range(10)), quick=[0, 1, 2], smoke=[0]))


@register_settings("forgetting", "forgetting-mnist", "Class-incremental MNIST, 5 tasks of 2 digits, MLP 784-256-32")
def _forgetting_mnist(p: Profile) -> dict[str, Any]:
    return _settings(
        data={"source": "real", "name": "mnist", "data_dir": None, "normalize": "unit", "seed": 0,
              "train_per_class": p.pick(paper=None, quick=500, smoke=40),
              "test_per_class": p.pick(paper=None, quick=300, smoke=20)},
        tasks=p.pick(paper=_DIGIT_PAIRS, quick=_DIGIT_PAIRS, smoke=[[0, 1], [2, 3]]),
        model=mnist_network(p, 32),
        train={"optimizer": "adam", "lr": 1e-3, "epochs": p.pick(paper=5, quick=8, smoke=2),
               "batch_size": p.pick(paper=128, quick=64)},
        memory_per_class=p.pick(paper=50, quick=20, smoke=4), analysis_per_class=p.pick(paper=200, quick=100, smoke=10),
        seeds=p.pick(paper=[0, 1, 2, 3, 4], quick=[0, 1, 2], smoke=[0]))


@register_settings("forgetting", "forgetting-blobs",
                   "Three Gaussian blobs, classes {0,1} then {2}; MLP with a 2-unit tanh transformed space")
def _forgetting_blobs(p: Profile) -> dict[str, Any]:
    return _settings(
        data={"source": "simulated", "name": "three_blobs", "n_samples": p.pick(paper=5000, quick=1500, smoke=150),
              "test_fraction": 0.2, "seed": 0},
        tasks=[[0, 1], [2]],
        model={"name": "mlp", "kwargs": {"hidden": [32, 2], "activations": "tanh", "init": "torch"}},
        train={"optimizer": "adam", "lr": 1e-2, "epochs": p.pick(paper=50, quick=20, smoke=3), "batch_size": 32},
        memory_per_class=p.pick(paper=5, quick=5, smoke=3), analysis_per_class=p.pick(paper=100, quick=100, smoke=20),
        seeds=p.pick(paper=list(range(10)), quick=[0, 1, 2, 3, 4], smoke=[0]))


# ----------------------------------------------------------------------------------------- protocol
def check_tasks(tasks: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """Validate a task list (groups of original class ids) and return it as tuples.

    Raises
    ------
    ValueError
        Empty task list or task, a class in two tasks, a non-integer id, or a first task with fewer
        than 2 classes (cross-entropy on one class is identically zero, so nothing would be learned).
    """
    out: list[tuple[int, ...]] = []
    for t, group in enumerate(tasks or ()):
        ids = tuple(group)
        if not ids or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0 for c in ids):
            raise ValueError(f"Task {t} must be a non-empty list of non-negative class ids, got {list(ids)!r}.")
        out.append(tuple(int(c) for c in ids))
    if not out:
        raise ValueError("tasks is empty; give class groups such as [[0, 1], [2, 3]].")
    flat = [c for g in out for c in g]
    if len(set(flat)) != len(flat):
        dup = sorted({c for c in flat if flat.count(c) > 1})
        raise ValueError(f"Classes {dup} appear in more than one task; every class belongs to exactly one task.")
    if len(out[0]) < 2:
        raise ValueError(f"The first task has {len(out[0])} class; it needs at least 2 (e.g. [[0, 1], [2]]): "
                         "cross-entropy over a single class is zero and nothing is learned.")
    return tuple(out)


@dataclass(frozen=True, eq=False)
class TaskSplit:
    """A class-incremental data set: arrays with labels in task order, and the task boundaries.

    Attributes
    ----------
    x_train : ndarray of shape (N, ...), float32
    y_train : ndarray of shape (N,), int64
        Labels ``0..K-1`` in task order: task t holds labels ``tasks[t]``, a contiguous range.
    x_test : ndarray of shape (N_test, ...), float32
    y_test : ndarray of shape (N_test,), int64
    tasks : tuple of tuple of int
        Labels of each task, e.g. ``((0, 1), (2, 3))``.
    class_ids : tuple of int
        Original class id of each label.
    pixel_range : (float, float) or None
    info : dict
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    tasks: tuple[tuple[int, ...], ...]
    class_ids: tuple[int, ...]
    pixel_range: tuple[float, float] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_ids)

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def n_seen(self, t: int) -> int:
        """Number of classes seen after task ``t`` (labels ``0..n_seen-1``)."""
        return sum(len(g) for g in self.tasks[:t + 1])

    def class_indices(self, c: int) -> np.ndarray:
        """Training indices of label ``c``, shape (n_c,)."""
        return np.flatnonzero(self.y_train == c)

    def task_indices(self, t: int) -> np.ndarray:
        """Training indices of the classes of task ``t``, shape (n_t,)."""
        return np.flatnonzero(np.isin(self.y_train, self.tasks[t]))

    def seen_indices(self, t: int) -> np.ndarray:
        """Training indices of every class seen up to task ``t``."""
        return np.flatnonzero(self.y_train < self.n_seen(t))


def make_task_split(arrays: Arrays, tasks: Sequence[Sequence[int]]) -> TaskSplit:
    """Wrap ``arrays`` whose labels are already in task order (``arrays.classes == concat(tasks)``).

    Raises
    ------
    ValueError
        The class order does not match the tasks, or a class has no training or no test sample.
    """
    tasks = check_tasks(tasks)
    order = tuple(c for g in tasks for c in g)
    if tuple(arrays.classes) != order:
        raise ValueError(f"arrays.classes {arrays.classes} must list the task classes in task order {order}; "
                         "load them with classes=<the tasks, flattened>.")
    K = len(order)
    for part, y in (("training", arrays.y_train), ("test", arrays.y_test)):
        counts = np.bincount(y, minlength=K)
        if len(counts) > K or (counts[:K] == 0).any():
            empty = [order[k] for k in np.flatnonzero(counts[:K] == 0)]
            raise ValueError(f"The {part} data has no sample of classes {empty} (or labels >= {K}); "
                             "check the task list against the data set.")
    offsets = np.cumsum([0] + [len(g) for g in tasks])
    label_tasks = tuple(tuple(range(offsets[t], offsets[t + 1])) for t in range(len(tasks)))
    return TaskSplit(arrays.x_train, arrays.y_train, arrays.x_test, arrays.y_test, label_tasks, order,
                     arrays.pixel_range, dict(arrays.info))


def load_task_split(data: Mapping[str, Any], tasks: Sequence[Sequence[int]]) -> TaskSplit:
    """Load the ``data`` section of a config for ``tasks`` (original class ids); see :func:`load_arrays`."""
    tasks = check_tasks(tasks)
    return make_task_split(load_arrays(data, [c for g in tasks for c in g]), tasks)


# ------------------------------------------------------------------------------------------ training
class SeenClassCrossEntropy(nn.Module):
    """Cross-entropy over the logits of the first ``n_seen`` classes; the other logits get no gradient.

    Shape: logits (N, K), y (N,) with labels < n_seen -> scalar. Computed in float64.
    """

    reduction = "mean"

    def __init__(self, n_seen: int) -> None:
        super().__init__()
        self.n_seen = int(n_seen)

    def forward(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits[:, :self.n_seen].double(), y)

    def extra_repr(self) -> str:
        return f"n_seen={self.n_seen}"


@dataclass(frozen=True)
class IncrementalSettings:
    """How each task is trained and how much is remembered.

    Attributes
    ----------
    epochs, batch_size, lr, optimizer : training of each task (Adam, minibatches, seeded shuffling)
    memory_per_class : int
        Exemplars kept per old class by the memory strategies.
    soft_C : float
        Soft-margin C used when the features are not linearly separable (selection and alignment).
    analysis_per_class : int
        Training points per seen class on which the NN↔SVM alignment is measured (0 disables it).
    consolidation_weight : float
        Weight of the feature-consolidation term of the ``*_fc`` strategies.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    memory_per_class: int = 20
    soft_C: float = 1.0
    analysis_per_class: int = 100
    consolidation_weight: float = 1.0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> IncrementalSettings:
        tr = cfg.get("train", {})
        return cls(epochs=int(tr.get("epochs", 10)), batch_size=int(tr.get("batch_size", 64)),
                   lr=float(tr.get("lr", 1e-3)), optimizer=str(tr.get("optimizer", "adam")),
                   memory_per_class=int(cfg.get("memory_per_class", 20)),
                   soft_C=float(cfg.get("svm", {}).get("soft_C", 1.0)),
                   analysis_per_class=int(cfg.get("analysis", {}).get("per_class", 100)),
                   consolidation_weight=float(cfg.get("consolidation", {}).get("weight", 1.0)))

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"epochs, batch_size and lr must be positive, got {self.epochs}, {self.batch_size}, "
                             f"{self.lr}.")
        if self.memory_per_class < 1:
            raise ValueError(f"memory_per_class must be >= 1, got {self.memory_per_class}.")
        if self.consolidation_weight < 0:
            raise ValueError(f"consolidation_weight must be >= 0, got {self.consolidation_weight}.")


class _Anchored(nn.Module):
    """Training view of ``model`` for feature consolidation: outputs ``[logits, φ(x), φ_old(x)]``, (N, K + 2D).

    ``old`` is a frozen copy of the feature map from before the task (kept in eval mode, no gradient).
    """

    def __init__(self, model: nn.Module, old: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.old = old

    def forward(self, x: Tensor) -> Tensor:
        h = self.model.features(x)                  # (N, D)
        self.old.eval()
        with torch.no_grad():
            h_old = self.old.features(x)            # (N, D)
        return torch.cat([self.model.head(h), h, h_old], dim=1)


class _ConsolidatedLoss(nn.Module):
    """Seen-class cross-entropy + ``weight · mean_{i,d} (φ(x_i) − φ_old(x_i))_d²`` on :class:`_Anchored` output."""

    reduction = "mean"

    def __init__(self, n_seen: int, n_classes: int, weight: float) -> None:
        super().__init__()
        self.ce = SeenClassCrossEntropy(n_seen)
        self.n_classes, self.weight = n_classes, weight

    def forward(self, out: Tensor, y: Tensor) -> Tensor:
        K = self.n_classes
        D = (out.shape[1] - K) // 2
        h, h_old = out[:, K:K + D], out[:, K + D:]
        return self.ce(out[:, :K], y) + self.weight * (h - h_old).double().pow(2).mean()


def _flat(x: np.ndarray, flatten: bool) -> np.ndarray:
    return x.reshape(len(x), -1) if flatten else x


def _train(model: nn.Module, split: TaskSplit, idx: np.ndarray, n_seen: int, s: IncrementalSettings,
           seed: int, device: torch.device, flatten: bool, anchor: nn.Module | None = None) -> float:
    """Train ``model`` in place on the training points ``idx``; returns the final training accuracy.

    With ``anchor`` (a frozen copy of the model before the task) the loss adds feature consolidation.
    """
    if anchor is None:
        net, loss = model, SeenClassCrossEntropy(n_seen)
    else:
        net, loss = _Anchored(model, anchor), _ConsolidatedLoss(n_seen, split.n_classes, s.consolidation_weight)
    trainer = Trainer(TrainConfig(loss=loss, optimizer=s.optimizer, lr=s.lr, epochs=s.epochs,
                                  batch_size=min(s.batch_size, len(idx)), seed=seed, device=device, progress=False))
    X = _flat(split.x_train[idx], flatten)
    trainer.fit(net, X, split.y_train[idx])
    # the trainer's own accuracy takes the argmax over all K logits; ours is over the seen classes
    return float((_predict(model, X, n_seen, device) == split.y_train[idx]).mean())


def _predict(model: nn.Module, X: np.ndarray, n_seen: int, device: torch.device) -> np.ndarray:
    Z = extract_features(model, X, "head", device=device).logits
    return Z[:, :n_seen].argmax(axis=1)


def _class_accuracy(model: nn.Module, split: TaskSplit, n_seen: int, device: torch.device,
                    flatten: bool) -> np.ndarray:
    """Test accuracy of each seen class, shape (n_seen,); prediction among the seen classes only."""
    sel = split.y_test < n_seen
    y = split.y_test[sel]
    pred = _predict(model, _flat(split.x_test[sel], flatten), n_seen, device)
    return np.array([float((pred[y == c] == c).mean()) for c in range(n_seen)])


# --------------------------------------------------------------------------------- exemplar choices
def random_selection(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """``min(m, n)`` distinct positions in ``0..n-1`` drawn uniformly, shape (min(m, n),)."""
    return np.sort(rng.choice(n, size=min(m, n), replace=False))


def herding_selection(H: np.ndarray, m: int) -> np.ndarray:
    """iCaRL herding: positions whose running mean best approximates the class mean, in selection order.

    Features are L2-normalised first (as in iCaRL). Step k picks the point that brings the mean of the k
    chosen points closest to the class mean.

    Parameters
    ----------
    H : ndarray of shape (n, D)
        Features of one class.
    m : int

    Returns
    -------
    ndarray of shape (min(m, n),)
    """
    H = np.asarray(H, dtype=np.float64)
    Fn = H / (np.linalg.norm(H, axis=1, keepdims=True) + 1e-12)     # (n, D)
    mu = Fn.mean(axis=0)                                            # (D,)
    total = np.zeros_like(mu)
    free = np.ones(len(Fn), dtype=bool)
    chosen: list[int] = []
    for k in range(1, min(m, len(Fn)) + 1):
        dist = np.linalg.norm(mu - (total + Fn) / k, axis=1)        # (n,)
        dist[~free] = np.inf
        i = int(np.argmin(dist))
        chosen.append(i)
        total += Fn[i]
        free[i] = False
    return np.asarray(chosen, dtype=np.int64)


def svm_selection(H: np.ndarray, y: np.ndarray, classes: Sequence[int], m: int,
                  soft_C: float = 1.0) -> tuple[dict[int, np.ndarray], dict[str, Any]]:
    """SupportNet-style exemplars: each class's SVM support vectors first, then its smallest-margin points.

    Fits the max-margin SVM (hard margin, or soft margin ``soft_C`` if the features are not separable) on all
    of ``(H, y)`` and ranks the points of each requested class by

    1. support vectors the SVM classifies correctly, by functional margin (ties: larger dual weight first);
    2. other correctly classified points, smallest margin first (the next points to become active);
    3. points the SVM misclassifies (soft margin only), least wrong first: kept last since they are outliers
       rather than boundary points.

    Parameters
    ----------
    H : ndarray of shape (N, D)
        Features of the data at hand (new classes and the memory of old ones).
    y : ndarray of shape (N,)
        Their labels; at least two distinct.
    classes : sequence of int
        Classes to choose exemplars for.
    m : int
        Budget per class.
    soft_C : float, default=1.0

    Returns
    -------
    chosen : dict
        ``{class: positions into H, shape (min(m, n_class),)}`` in rank order.
    info : dict
        ``separable``, ``n_support`` (total) and ``n_support_chosen`` (per class: how many of the chosen
        points are support vectors).
    """
    H = np.asarray(H, dtype=np.float64)
    y = np.asarray(y)
    svm, separable = fit_svm(H, y, soft_C)
    if svm is None:
        log.warning("The features are degenerate (the soft-margin SVM is W = 0): exemplars are the first m "
                    "points of each class.")
        chosen = {int(c): np.flatnonzero(y == c)[:m] for c in classes}
        return chosen, {"separable": False, "n_support": 0, "n_support_chosen": {c: 0 for c in chosen},
                        "degenerate": True}
    y_idx = np.searchsorted(svm.classes_, y)
    margin = M.functional_margins(H, y_idx, svm.coef_, svm.intercept_)          # (N,)
    dc = np.abs(np.asarray(svm.dual_coef_, dtype=np.float64))   # (1, n_sv) binary, (n_sv, K) Crammer-Singer
    dual = np.zeros(len(H))
    dual[svm.support_] = dc[0] if len(svm.classes_) == 2 else dc.sum(axis=1)
    is_sv = np.zeros(len(H), dtype=bool)
    is_sv[svm.support_] = True
    group = np.where(margin <= 0, 2, np.where(is_sv, 0, 1))
    key = np.where(group == 2, -margin, margin)
    chosen, n_sv = {}, {}
    for c in classes:
        pos = np.flatnonzero(y == c)
        order = np.lexsort((-dual[pos], key[pos], group[pos]))                   # last key sorts first
        chosen[int(c)] = pos[order[:m]]
        n_sv[int(c)] = int(is_sv[chosen[int(c)]].sum())
    return chosen, {"separable": separable, "n_support": int(is_sv.sum()), "n_support_chosen": n_sv}


# ------------------------------------------------------------------------------------------ the run
@dataclass
class TaskRecord:
    """What happened in one task of one strategy.

    Attributes
    ----------
    task : int
    new_classes : tuple of int
        Labels introduced by the task.
    n_seen : int
    train_indices : ndarray of shape (n_train,)
        Indices into ``split.x_train`` the network was trained on for this task (never test data).
    memory : dict
        ``{label: training indices}`` kept *after* this task (empty for finetune / joint).
    class_accuracy : ndarray of shape (n_seen,)
        Test accuracy of each seen class after the task.
    alignment : dict
        ``angle_all``, ``agreement_all``, ``separable_all`` and, for t > 0, ``angle_old_after``.
    selection : dict
        Facts about the exemplar choice (svm: support vectors among the chosen points).
    train_accuracy : float
    seconds : float
    """

    task: int
    new_classes: tuple[int, ...]
    n_seen: int
    train_indices: np.ndarray
    memory: dict[int, np.ndarray]
    class_accuracy: np.ndarray
    alignment: dict[str, Any]
    selection: dict[str, Any]
    train_accuracy: float
    seconds: float


def _analysis_indices(split: TaskSplit, per_class: int) -> np.ndarray:
    """A fixed, seed-independent subset of ``per_class`` training points of every class."""
    rng = np.random.default_rng(12345)
    out = [rng.permutation(split.class_indices(c))[:per_class] for c in range(split.n_classes)]
    return np.sort(np.concatenate(out))


def _alignment(model: nn.Module, split: TaskSplit, idx: np.ndarray, n_classes: int, soft_C: float,
               device: torch.device, flatten: bool) -> dict[str, Any]:
    """NN↔SVM alignment of the head rows ``0..n_classes-1`` on the analysis points of those classes."""
    sel = idx[split.y_train[idx] < n_classes]
    H = extract_features(model, _flat(split.x_train[sel], flatten), "head", device=device).features
    W, b = head_arrays(model)
    try:
        s = analyze_features(H, split.y_train[sel], W[:n_classes], b[:n_classes], svm_regularized=False,
                             soft_C=soft_C, grid_resolution=50).summary
    except (ValueError, ArithmeticError) as err:  # e.g. features collapsed to a point: record NaN, go on
        log.warning("Alignment analysis failed (%s); recording NaN.", err)
        return {"angle": float("nan"), "agreement": float("nan"), "separable": None}
    return {"angle": s["angle_deg"], "agreement": s["agreement_train"], "separable": s["separable"]}


def train_first_task(model: nn.Module, split: TaskSplit, settings: IncrementalSettings, *, seed: int,
                     device: str | torch.device = "cpu", flatten: bool = False) -> float:
    """Train ``model`` in place on task 0 (shared by every strategy); returns its training accuracy."""
    dev = resolve_device(device)
    return _train(model, split, split.task_indices(0), split.n_seen(0), settings, _task_seed(seed, 0), dev, flatten)


def _task_seed(seed: int, t: int) -> int:
    return 1000 * seed + t


def run_strategy(split: TaskSplit, strategy: str, model: nn.Module, settings: IncrementalSettings, *,
                 seed: int, device: str | torch.device = "cpu", flatten: bool = False,
                 first_task_trained: bool = False) -> list[TaskRecord]:
    """Learn the tasks of ``split`` one after the other with ``strategy``; ``model`` is trained in place.

    Parameters
    ----------
    split : TaskSplit
    strategy : {"finetune", "random", "herding", "svm", "random_fc", "svm_fc", "joint"}
    model : nn.Module
        A classifier with ``.features`` and ``.head`` and K = ``split.n_classes`` outputs.
    settings : IncrementalSettings
    seed : int
        Seeds the minibatch order of each task and the random exemplar choice.
    device : str or torch.device, default="cpu"
    flatten : bool, default=False
        Flatten inputs to (N, -1) before the model (MLPs on images).
    first_task_trained : bool, default=False
        ``model`` has already been trained on task 0 (:func:`train_first_task`): skip that training.

    Returns
    -------
    list of TaskRecord
        One per task.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}; choose from {list(STRATEGIES)}.")
    if model.head.out_features != split.n_classes:
        raise ValueError(f"The model has {model.head.out_features} outputs but the tasks hold {split.n_classes} "
                         "classes; build it with n_classes=split.n_classes.")
    settings.check()
    dev = resolve_device(device)
    base = strategy.removesuffix("_fc")         # random_fc draws the same exemplars as random, seed for seed
    rng = np.random.default_rng([seed, STRATEGIES.index(base)])
    analysis_idx = _analysis_indices(split, settings.analysis_per_class) if settings.analysis_per_class else None
    memory: dict[int, np.ndarray] = {}
    records: list[TaskRecord] = []
    for t, new in enumerate(split.tasks):
        t0 = time.perf_counter()
        n_seen = split.n_seen(t)
        if strategy == "joint":
            idx = split.seen_indices(t)
        else:
            idx = np.concatenate([split.task_indices(t), *memory.values()]).astype(np.int64)
        if t == 0 and first_task_trained:
            train_acc = float("nan")
        else:
            anchor = None
            if strategy.endswith("_fc") and t > 0 and settings.consolidation_weight > 0:
                anchor = copy.deepcopy(model).requires_grad_(False)
            train_acc = _train(model, split, idx, n_seen, settings, _task_seed(seed, t), dev, flatten, anchor)
        acc = _class_accuracy(model, split, n_seen, dev, flatten)
        align: dict[str, Any] = {}
        if analysis_idx is not None:
            a = _alignment(model, split, analysis_idx, n_seen, settings.soft_C, dev, flatten)
            align = {"angle_all": a["angle"], "agreement_all": a["agreement"], "separable_all": a["separable"]}
            if t > 0:
                old = _alignment(model, split, analysis_idx, n_seen - len(new), settings.soft_C, dev, flatten)
                align["angle_old_after"] = old["angle"]
        selection: dict[str, Any] = {}
        if strategy in MEMORY_STRATEGIES and t < split.n_tasks - 1:
            selection = _select(base, model, split, idx, new, settings, rng, dev, flatten, memory)
        records.append(TaskRecord(t, tuple(new), n_seen, idx, {c: v.copy() for c, v in memory.items()}, acc,
                                  align, selection, train_acc, time.perf_counter() - t0))
        log.info("%s task %d: avg acc %.4f", strategy, t, float(acc.mean()))
    return records


def _select(strategy: str, model: nn.Module, split: TaskSplit, idx: np.ndarray, new: Sequence[int],
            s: IncrementalSettings, rng: np.random.Generator, dev: torch.device, flatten: bool,
            memory: dict[int, np.ndarray]) -> dict[str, Any]:
    """Add ``memory_per_class`` exemplars of each class in ``new`` to ``memory`` (in place)."""
    m = s.memory_per_class
    if strategy == "random":
        for c in new:
            pool = split.class_indices(c)
            memory[c] = pool[random_selection(len(pool), m, rng)]
        return {}
    if strategy == "herding":
        for c in new:
            pool = split.class_indices(c)
            H = extract_features(model, _flat(split.x_train[pool], flatten), "head", device=dev).features
            memory[c] = pool[herding_selection(H, m)]
        return {}
    H = extract_features(model, _flat(split.x_train[idx], flatten), "head", device=dev).features    # the data at hand: (n_train, D)
    chosen, info = svm_selection(H, split.y_train[idx], new, m, s.soft_C)
    for c in new:
        memory[c] = idx[chosen[c]]
    return info


# --------------------------------------------------------------------------------------- reporting
@dataclass
class ForgettingResult:
    """Tables of a forgetting run.

    Attributes
    ----------
    per_task : DataFrame
        One row per (seed, strategy, task): avg_acc, acc_old, acc_new, forgetting, angle_all,
        agreement_all, separable_all, angle_old_before, angle_old_after, n_train, n_memory, n_sv_chosen,
        train_acc, seconds.
    per_class : DataFrame
        One row per (seed, strategy, task, class): test accuracy (label and original class id).
    summary : DataFrame
        Per (strategy, task): mean, std and count over seeds of the per-task numbers.
    final : dict
        Last-task mean ± std per strategy and paired differences of the final average accuracy over seeds
        (svm − random, svm − herding, herding − random, svm_fc − random_fc, random_fc − random,
        svm_fc − svm).
    config : dict
    out_dir : Path or None
    """

    per_task: pd.DataFrame
    per_class: pd.DataFrame
    summary: pd.DataFrame
    final: dict[str, Any]
    config: dict[str, Any]
    out_dir: Path | None = None
    wall_time_s: float = float("nan")

    def as_kind_result(self) -> Any:
        """The uniform :class:`~nnboundary.experiments.result.KindResult` view (headline numbers, seeds)."""
        from nnboundary.experiments.result import KindResult

        return KindResult(name=self.config.get("name", "forgetting"), profile=self.config.get("profile", ""),
                          kind="forgetting", run_dir=self.out_dir, seeds=list(self.config["seeds"]),
                          summary=forgetting_headline(self.final), wall_time_s=self.wall_time_s, detail=self)


def _forgetting(history: list[np.ndarray], t: int, n_old: int) -> float:
    """Mean over the old classes of (best earlier accuracy − accuracy after task t); NaN at t = 0."""
    if t == 0 or n_old == 0:
        return float("nan")
    best = np.array([max(h[c] for h in history[:t] if len(h) > c) for c in range(n_old)])
    return float(np.mean(best - history[t][:n_old]))


def _rows(records: list[TaskRecord], split: TaskSplit, strategy: str, seed: int) -> tuple[list, list]:
    task_rows, class_rows = [], []
    history = [r.class_accuracy for r in records]
    prev_angle = float("nan")
    for r in records:
        n_old = r.n_seen - len(r.new_classes)
        acc = r.class_accuracy
        task_rows.append({
            "seed": seed, "strategy": strategy, "task": r.task,
            "new_classes": " ".join(str(split.class_ids[c]) for c in r.new_classes),
            "n_seen": r.n_seen, "n_train": len(r.train_indices),
            "n_memory": int(sum(len(v) for v in r.memory.values())),
            "avg_acc": float(acc.mean()),
            "acc_old": float(acc[:n_old].mean()) if n_old else float("nan"),
            "acc_new": float(acc[n_old:].mean()),
            "forgetting": _forgetting(history, r.task, n_old),
            "angle_all": r.alignment.get("angle_all", float("nan")),
            "agreement_all": r.alignment.get("agreement_all", float("nan")),
            "separable_all": r.alignment.get("separable_all"),
            "angle_old_before": prev_angle if r.task > 0 else float("nan"),
            "angle_old_after": r.alignment.get("angle_old_after", float("nan")),
            "n_sv_chosen": (sum(r.selection["n_support_chosen"].values())
                            if "n_support_chosen" in r.selection else float("nan")),
            "train_acc": r.train_accuracy, "seconds": r.seconds,
        })
        prev_angle = r.alignment.get("angle_all", float("nan"))
        for c, a in enumerate(acc):
            class_rows.append({"seed": seed, "strategy": strategy, "task": r.task, "label": c,
                               "class_id": split.class_ids[c], "accuracy": float(a)})
    return task_rows, class_rows


_SUMMARY_COLS = ("avg_acc", "acc_old", "acc_new", "forgetting", "angle_all", "angle_old_before", "angle_old_after",
                 "agreement_all", "n_sv_chosen")


def summarize_forgetting(per_task: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Mean/std/count over seeds per (strategy, task), and the last-task comparison with paired differences."""
    order = {s: i for i, s in enumerate(STRATEGIES)}
    g = per_task.groupby(["strategy", "task"], sort=False)[list(_SUMMARY_COLS)]
    summary = g.agg(["mean", "std", "count"])
    summary.columns = [f"{a}_{b}" for a, b in summary.columns]
    summary = summary.reset_index()
    summary = summary.sort_values(["strategy", "task"], key=lambda s: s.map(order) if s.name == "strategy" else s)
    last = per_task[per_task["task"] == per_task["task"].max()]
    final: dict[str, Any] = {"task": int(per_task["task"].max()), "n_seeds": int(last["seed"].nunique()),
                             "strategies": {}, "paired": {}}
    for strategy, sub in last.groupby("strategy", sort=False):
        final["strategies"][strategy] = {
            col: {"mean": float(sub[col].mean()), "std": float(sub[col].std(ddof=1)) if len(sub) > 1 else None}
            for col in ("avg_acc", "forgetting", "acc_old", "angle_all")}
    piv = last.pivot_table(index="seed", columns="strategy", values="avg_acc")
    for a, b in (("svm", "random"), ("svm", "herding"), ("herding", "random"), ("svm_fc", "random_fc"),
                 ("random_fc", "random"), ("svm_fc", "svm")):
        if a in piv and b in piv:
            d = (piv[a] - piv[b]).to_numpy()
            final["paired"][f"{a}-{b}"] = {"mean": float(d.mean()),
                                           "std": float(d.std(ddof=1)) if len(d) > 1 else None,
                                           "wins": int((d > 0).sum()), "losses": int((d < 0).sum()),
                                           "n": int(len(d))}
    return summary.reset_index(drop=True), final


def _settings_with_defaults(cfg: Mapping[str, Any]) -> dict[str, Any]:
    cfg = dict(cfg)
    if "tasks" not in cfg or "data" not in cfg or "model" not in cfg:
        raise ValueError("A forgetting config needs 'data', 'tasks' and 'model'; start from "
                         "get_experiment(<name>, <profile>).settings.")
    bad = [s for s in cfg.get("strategies", STRATEGIES) if s not in STRATEGIES]
    if bad:
        raise ValueError(f"Unknown strategies {bad}; choose from {list(STRATEGIES)}.")
    return cfg


def run_forgetting(config: Mapping[str, Any] | str, out_dir: str | Path | None = None, *,
                   seeds: int | Sequence[int] | None = None, device: str | torch.device = "cpu",
                   profile: str = "quick", data_dir: str | Path | None = None,
                   force: bool = False, progress: bool = False) -> ForgettingResult:
    """Run a class-incremental experiment for every strategy and seed; write tables and a figure.

    Parameters
    ----------
    config : dict or str
        A resolved config (``get_experiment(name, profile).settings``) or the name of a forgetting experiment
        (then ``profile`` picks the profile).
    out_dir : path-like or None, default=None
        Run directory (staged in ``<out_dir>.partial``, committed when complete): config.json, per_task.csv,
        per_class.csv, summary.csv, summary.json, report.md and figures/forgetting.png. None writes nothing.
    seeds : int, sequence of int or None, default=None
        None uses ``config["seeds"]``.
    device : str or torch.device, default="cpu"
    profile : str, default="quick"
        Only used when ``config`` is a name.
    data_dir : path-like or None, default=None
        Overrides ``config["data"]["data_dir"]`` (where MNIST is found).
    force : bool, default=False
        Overwrite results already in ``out_dir``.
    progress : bool, default=False
        A bar over the (seed, strategy) runs, naming the one in progress.

    Returns
    -------
    ForgettingResult

    Raises
    ------
    nnboundary.experiments.RunExistsError
        ``out_dir`` already holds results and ``force`` is False, or is not an nnboundary run directory
        (checked before any work; see :class:`~nnboundary.experiments.rundir.RunDir`).
    """
    t0 = time.perf_counter()
    cfg = (get_experiment(config, profile, kind="forgetting").settings if isinstance(config, str)
           else copy.deepcopy(dict(config)))
    if data_dir is not None:
        cfg.setdefault("data", {})["data_dir"] = str(data_dir)
    cfg = _settings_with_defaults(cfg)
    seed_values = seed_list(seeds, cfg.get("seeds", [0]))
    cfg["seeds"] = seed_values
    rd = None if out_dir is None else RunDir(out_dir, experiment=cfg.get("name", "forgetting"),
                                             profile=cfg.get("profile", profile))
    if rd is not None:
        rd.check(force=force)  # before any work
    dev = resolve_device(device)
    settings = IncrementalSettings.from_config(cfg)
    settings.check()
    split = load_task_split(cfg["data"], cfg["tasks"])
    strategies = [s for s in STRATEGIES if s in cfg.get("strategies", STRATEGIES)]
    with rd.open(force=force) if rd is not None else contextlib.nullcontext(None) as path:
        if path is not None:
            write_json(path / "config.json", {**cfg, "device": str(dev), "data_info": split.info})
        task_rows, class_rows = [], []
        bar = work_bar(len(seed_values) * len(strategies), cfg.get("name", "forgetting"), progress)
        for seed in seed_values:
            bar.set_postfix_str(f"seed {seed}: first task")
            base, flatten = build_network(cfg["model"], split.x_train.shape[1:], split.n_classes, seed)
            first_acc = train_first_task(base, split, settings, seed=seed, device=dev, flatten=flatten)
            for strategy in strategies:
                bar.set_postfix_str(f"seed {seed}: {strategy}")
                model = copy.deepcopy(base)
                records = run_strategy(split, strategy, model, settings, seed=seed, device=dev, flatten=flatten,
                                       first_task_trained=True)
                records[0].train_accuracy = first_acc
                tr, cl = _rows(records, split, strategy, seed)
                task_rows += tr
                class_rows += cl
                log.info("seed %d %s: final avg acc %.4f", seed, strategy, tr[-1]["avg_acc"])
                bar.update(1)
        bar.close()
        per_task, per_class = pd.DataFrame(task_rows), pd.DataFrame(class_rows)
        summary, final = summarize_forgetting(per_task)
        result = ForgettingResult(per_task, per_class, summary, final, cfg, None if rd is None else rd.path,
                                  wall_time_s=time.perf_counter() - t0)
        if path is not None:
            _write(result, path)
    return result


def forgetting_headline(final: Mapping[str, Any]) -> dict[str, Any]:
    """Flat headline numbers of a forgetting run: last-task mean avg. accuracy and forgetting per strategy,
    and the paired differences."""
    out: dict[str, Any] = {}
    for strategy, cols in final.get("strategies", {}).items():
        for col in ("avg_acc", "forgetting"):
            out[f"{strategy}/{col}"] = cols[col]["mean"]
    for pair, d in final.get("paired", {}).items():
        out[f"paired {pair}"] = d["mean"]
    return out


def _write(result: ForgettingResult, path: Path) -> None:
    from nnboundary.applications._figures import plot_forgetting
    from nnboundary.experiments.result import write_kind_report

    write_csv(path / "per_task.csv", result.per_task)
    write_csv(path / "per_class.csv", result.per_class)
    write_csv(path / "summary.csv", result.summary)
    write_jsonl(path / "metrics.jsonl", result.per_task.to_dict(orient="records"))  # one line per task learned
    write_json(path / "summary.json", jsonable({**result.final, "seeds": result.config["seeds"],
                                                "wall_time_s": result.wall_time_s}))
    (path / "figures").mkdir(exist_ok=True)
    plot_forgetting(result.per_task, path / "figures" / "forgetting.png",
                    f"{result.config.get('name', 'forgetting')} ({result.config.get('profile', '')}), "
                    f"{len(result.config['seeds'])} seed(s): mean ± std")
    write_kind_report(path, result.as_kind_result(), notes=[
        "Last task, mean over seeds. Per task and strategy: `per_task.csv`, `summary.csv`; per class: "
        "`per_class.csv`."])


# --------------------------------------------------------------------------------------- registration
def run(cfg: KindConfig, run_dir: str | Path, *, device: str = "cpu", data_dir: Any = None, progress: bool = False,
        force: bool = False) -> KindResult:
    """The forgetting kind's runner (see :func:`nnboundary.experiments.run_experiment`)."""
    return run_forgetting(copy.deepcopy(cfg.settings), run_dir, seeds=cfg.seed, device=device, data_dir=data_dir,
                          force=force, progress=progress).as_kind_result()


def _validate_settings(cfg: dict[str, Any]) -> None:
    IncrementalSettings.from_config(_settings_with_defaults(cfg)).check()


register_kind(Kind(
    "forgetting", run, _validate_settings,
    flags={"seed": "one seed (replaces the profile's seed list)", "force": "replace an earlier run directory",
           "device": "where to train", "data_dir": "folder with the real data files"}))
