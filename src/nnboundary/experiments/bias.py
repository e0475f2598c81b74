"""The bias experiment: does a re-initialised, retrained last layer find the SVM's direction *and* bias?

The paper's README shows it on MNIST 0/1 (``original_code.md`` §5.3 (c), checklist item 23; ``paper.md``
§6.1): after whole-network training the last layer's boundary in the 2-D transformed space matches the
SVM's in direction and offset; after re-initialising the last layer and retraining only it on the frozen
features, the direction still matches but the boundary shifts towards one class.

:func:`run_bias_reinit` measures it. For each trained network (one per network seed) it freezes the
feature map, extracts the training and test features once, and compares with the max-margin SVMs

(a) ``joint``: the head trained together with the network;
(b) ``reinit-<optimizer>``: the head re-initialised (seeded) and trained alone with SGD, momentum and
    Adam, each with a fresh optimizer, for several head seeds;
(c) ``svm``: the head set to the free-bias SVM solution (and ``svm-regularized``: to the
    regularised-bias one) — the reference: angle 0 and offset 0 by construction.

Per condition it reports the angle to the SVM direction, the bias offset relative to the free-bias
SVM, the regularised-bias SVM, the midpoint of the gap between the classes and the midpoint of the
class means, the margin ratio and the test accuracy, as mean, std, min and max over the seeds
(``bias_table.csv``), every single run (``bias_runs.csv``), a three-panel figure (SVM | NN jointly
trained | NN re-initialised) and ``report.md``.

Head-training lengths (issue 13): an optimizer whose spec lists ``lengths`` (see :func:`length_study`: the
loss-based step size in float64, 10³, 10⁴, 10⁵ steps) gives one condition per length, ``reinit-<opt>@<steps>``,
and every head is also compared with the jointly trained head (:data:`JOINT_METRICS`: the angle between the two
heads and the differences of their bias offsets), so that "does a re-initialised head's bias converge to the joint
head's, and how fast?" is answered per length (``summary["lengths"]``, a table in ``report.md``).

The head can be retrained in two equivalent ways (``head.input``): on the extracted features
(``"features"``, default: the frozen feature map is evaluated once, so thousands of epochs cost
seconds) or on the images through the whole network with the feature map frozen
(``"model"``: :class:`nnboundary.train.Trainer` with ``train_only_head=True``, as the original did).
Either way the feature map's weights and BatchNorm buffers are compared bit for bit before and after
(``feature_map_identical``).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from nnboundary.experiments.images import (
    ExperimentConfigError,
    dead_units_note,
    load_image_data,
    load_trained_model,
    QUICK_LABEL,
    run_image_experiment,
    validate_model_section,
    validate_train_section,
    write_json,
)
from nnboundary._jsonio import atomic_write, to_jsonable
from nnboundary.device import resolve_device
from nnboundary.experiments.registry import (CONVERGE_STEPS, CONVERGE_TARGET_LOSS, PROFILES, Kind, KindConfig, Profile,
                                             converge_optimizer, experiment_kind, get_experiment, register_kind,
                                             register_settings)
from nnboundary.experiments.result import KindResult
from nnboundary.experiments.rundir import RunDir, default_run_dir
from nnboundary.models import build_model, dead_units, tf_truncated_normal_, torch_default_
from nnboundary.train import FLOAT64_LOSS_FLOOR, fit

__all__ = [
    "HEAD_METRICS",
    "JOINT_METRICS",
    "HEAD_LENGTHS",
    "length_study",
    "length_rows",
    "validate_bias_config",
    "run_bias_reinit",
    "compare_heads",
    "train_head",
    "reinit_head_",
    "svm_head",
    "feature_map_state",
    "same_state",
    "aggregate_bias_runs",
]

logger = logging.getLogger(__name__)

#: Numbers reported per head (columns of ``bias_runs.csv``; aggregated in ``bias_table.csv``).
HEAD_METRICS: tuple[str, ...] = (
    "angle_deg", "angle_deg_reg", "bias_offset", "bias_offset_reg", "bias_offset_gap", "bias_offset_means",
    "margin_ratio", "margin_ratio_reg", "test_accuracy", "accuracy", "loss", "agreement_test", "weight_norm",
    "bias_norm",
)
#: Numbers of a retrained head against the jointly trained head of the same network (``bias_runs.csv``).
JOINT_METRICS: tuple[str, ...] = ("angle_to_joint_deg", "offset_minus_joint", "offset_reg_minus_joint")
_HEAD_KEYS = {"input", "reinit", "batch_size", "steps", "seeds", "optimizers", "lr_scale", "dtype"}
_SPEC_KEYS = {"lengths", "dtype"}  # keys of an optimizer's spec that are not training settings

_BLOBS_DATA = {"name": "blobs_large", "test_fraction": 0.1, "seed": 10}


#: The simulated network's training in the converge profile: the simulated kind's converge rule
#: (:func:`nnboundary.experiments.registry.converge_rule`: full batch, Adam warm-up then loss-based steps with
#: momentum, stop at CE <= CONVERGE_TARGET_LOSS or a 20 000-step budget).
_CONVERGE_NETWORK_TRAIN = {**converge_optimizer(1e-3), "steps": CONVERGE_STEPS, "target_loss": CONVERGE_TARGET_LOSS}

#: The head-training lengths of the length study (issue 13), see :func:`length_study`.
HEAD_LENGTHS: tuple[int, ...] = (1_000, 10_000, 100_000)


def length_study(lengths: tuple[int, ...] = HEAD_LENGTHS, lr: float = 1.0) -> dict[str, Any]:
    """The ``head.optimizers`` entry of the head-training-length study: a re-initialised head trained full batch in
    float64 with the loss-based step size (Lyu & Li 2020) for each of ``lengths``, one result row per length
    (condition ``reinit-loss_based@<steps>``). Use it as ``{"head": {"input": "features", "optimizers":
    {"loss_based": length_study()}}}`` (settings override, or a profile's optimizers). Cost: sum(lengths) full-batch
    head steps per head seed, each O(N D K) (about 3 ms at N = 900, D = 2 on one CPU core)."""
    return {"lr": float(lr), "lengths": [int(n) for n in lengths], "dtype": "float64", "batch_size": None,
            "target_loss": FLOAT64_LOSS_FLOOR}


def _settings(p: Profile, *, paper_label: str, network: dict[str, Any], network_seeds: list[int],
          head_batch_size: int | None, head_steps: int, notes: str | None = None) -> dict[str, Any]:
    """A bias experiment's settings: its network and head budget around the head retraining every bias experiment
    shares (paper: the original's lr 1e-4 for all three optimizers; quick: full batch, lrs scaled by the feature
    size; smoke: through the whole network, small figure)."""
    head = {"input": p.pick(paper="features", quick="features", smoke="model"), "reinit": "original",
            "batch_size": head_batch_size, "steps": head_steps,
            "seeds": p.pick(paper=[0, 1, 2, 3, 4], quick=[0, 1, 2], smoke=[0, 1]),
            "lr_scale": p.pick(paper="none", quick="features"),
            "optimizers": p.pick(paper={"sgd": {"lr": 1e-4}, "momentum": {"lr": 1e-4}, "adam": {"lr": 1e-4}},
                                 quick={"sgd": {"lr": 1.0}, "momentum": {"lr": 0.1}, "adam": {"lr": 0.01}},
                                 smoke={"sgd": {"lr": 0.5}, "momentum": {"lr": 0.05}, "adam": {"lr": 0.01}},
                                 converge={"loss_based": length_study()})}
    return {"label": p.pick(paper=paper_label, quick=QUICK_LABEL, smoke="smoke (seconds; tests only)",
                            converge="converge (network trained to CE <= 1e-250 or its budget; heads re-initialised and "
                                     "trained 10^3 / 10^4 / 10^5 loss-based float64 steps, to the float64 loss floor)"),
            "network": network, "network_seeds": network_seeds, "head": head,
            "figure_optimizer": p.pick(paper="momentum", quick="momentum", converge="loss_based"),
            **({} if notes is None else {"notes": notes}),
            **p.pick(paper={}, quick={}, smoke={"figure": {"resolution": 60, "dpi": 50}})}


@register_settings("bias", "bias-reinit-mnist01",
                   "Bias experiment on MNIST 0 vs 1 (ResNet): joint head vs re-initialised head vs SVM",
                   source="original_code.md §5.3 (c), §6; checklist item 23; paper.md §6.1",
                   reference={"finding": "re-initialised head: direction matches the SVM, boundary shifted towards "
                                         "the origin cluster (figure NN_transform_reinitailize.png; no numbers)"})
def _bias_reinit_mnist01(p: Profile) -> dict[str, Any]:
    return _settings(
        p, paper_label="paper (original head-only optimizer and lr; GPU-sized network)",
        network={"image_experiment": "mnist01-resnet", "profile": p.name}, network_seeds=[0],
        head_batch_size=p.pick(paper=870, quick=None, smoke=16), head_steps=p.pick(paper=39_000, quick=3000, smoke=10),
        notes=p.pick(paper="Head-only training for 3000 of the original's 13-step epochs (39 000 updates of ≈870 "
                           "images) with lr 1e-4, as in the reinit run of original_code.md §6.",
                     quick="The network of mnist01-resnet/quick; heads retrained full-batch for 3000 updates with "
                           "lrs scaled by the feature size (lr_scale='features').",
                     smoke=None))


@register_settings("bias", "bias-reinit-blobs", "Bias experiment on two blobs (×100), MLP FC → 2-unit ReLU → head",
                   source="checklist items 14 and 23; original_code.md §1.1, §2.2",
                   reference={"finding": "not run by the authors on simulated data; the MNIST finding is the "
                                         "reference"})
def _bias_reinit_blobs(p: Profile) -> dict[str, Any]:
    adam = {"optimizer": "adam", "lr": p.pick(paper=1e-4, quick=1e-3, smoke=1e-2),
            "batch_size": p.pick(paper=200, quick=100, smoke=None), "steps": p.pick(paper=50_001, quick=3000, smoke=200)}
    return _settings(
        p, paper_label="paper-sized (item 14's network and training; head-only as item 23)",
        network={"simulated": {**_BLOBS_DATA, "n_samples": p.pick(paper=5000, quick=1000, smoke=200)},
                 "model": {"name": "mlp", "kwargs": {"hidden": [p.pick(paper=2000, quick=100, smoke=16), 2],
                                                     "activations": "relu"}},
                 "train": p.pick(paper=adam, quick=adam, smoke=adam, converge=_CONVERGE_NETWORK_TRAIN)},
        network_seeds=p.pick(paper=[0, 1, 2], quick=[0, 1], smoke=[0]),
        head_batch_size=p.pick(paper=200, quick=None, smoke=50), head_steps=p.pick(paper=50_000, quick=3000, smoke=20))


# ------------------------------------------------------------------------------------------------
# Config validation
# ------------------------------------------------------------------------------------------------


def _int_list(value: Any, where: str) -> None:
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        raise ExperimentConfigError(f"{where} must be a non-empty list of ints >= 0, got {value!r}.")


def _validate_network(net: Any) -> None:
    if not isinstance(net, dict):
        raise ExperimentConfigError(f"network must be a dict, got {type(net).__name__}.")
    if "image_experiment" in net:
        if set(net) - {"image_experiment", "profile"}:
            raise ExperimentConfigError(f"network with image_experiment takes only 'profile'; got {sorted(net)}.")
        try:
            kind = experiment_kind(net["image_experiment"])
        except ValueError as err:
            raise ExperimentConfigError(f"network: {err}") from None
        if kind != "image":
            raise ExperimentConfigError(f"network.image_experiment must be an image experiment, got "
                                        f"{net['image_experiment']!r} ({kind}).")
        if net.get("profile", "quick") not in PROFILES:
            raise ExperimentConfigError(f"network.profile must be one of {PROFILES}, got {net['profile']!r}.")
        return
    from nnboundary.data import SIMULATED

    for key in ("simulated", "model", "train"):
        if key not in net:
            raise ExperimentConfigError(f"network needs 'image_experiment', or 'simulated', 'model' and 'train'; "
                                        f"missing {key!r}.")
    sim = net["simulated"]
    if not isinstance(sim, dict) or sim.get("name") not in SIMULATED:
        raise ExperimentConfigError(f"network.simulated.name must be one of {list(SIMULATED)}, got {sim!r}.")
    validate_model_section(net["model"], "network.model")
    validate_train_section(net["train"], "network.train")


def validate_bias_config(cfg: dict[str, Any]) -> None:
    """Check a resolved bias-experiment configuration; raise :class:`ExperimentConfigError` if it is bad."""
    allowed = {"label", "network", "network_seeds", "head", "figure_optimizer", "figure", "notes", "experiment",
               "profile", "title", "source", "reference"}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ExperimentConfigError(f"config has unknown keys {unknown}; allowed: {sorted(allowed)}.")
    if not isinstance(cfg.get("label"), str) or not cfg["label"]:
        raise ExperimentConfigError(f"label must be a non-empty string, got {cfg.get('label')!r}.")
    _validate_network(cfg.get("network"))
    _int_list(cfg.get("network_seeds"), "network_seeds")
    head = cfg.get("head")
    if not isinstance(head, dict) or set(head) - _HEAD_KEYS:
        raise ExperimentConfigError(f"head must be a dict with keys from {sorted(_HEAD_KEYS)}, got {head!r}.")
    if head.get("input", "features") not in ("features", "model"):
        raise ExperimentConfigError(f"head.input must be 'features' or 'model', got {head.get('input')!r}.")
    if head.get("reinit", "original") not in ("original", "torch"):
        raise ExperimentConfigError(f"head.reinit must be 'original' or 'torch', got {head.get('reinit')!r}.")
    if head.get("lr_scale", "none") not in ("none", "features"):
        raise ExperimentConfigError(f"head.lr_scale must be 'none' or 'features', got {head.get('lr_scale')!r}.")
    _int_list(head.get("seeds"), "head.seeds")
    if head.get("dtype", "float32") not in ("float32", "float64"):
        raise ExperimentConfigError(f"head.dtype must be 'float32' or 'float64', got {head.get('dtype')!r}.")
    if head.get("dtype", "float32") == "float64" and head.get("input", "features") != "features":
        raise ExperimentConfigError("head.dtype='float64' needs head.input='features' (a float64 copy of the whole "
                                    "network would not be bit-identical to the float32 feature map).")
    opts = head.get("optimizers")
    if not isinstance(opts, dict) or not opts:
        raise ExperimentConfigError("head.optimizers must map optimizer names to {'lr': ...}.")
    for opt, spec in opts.items():
        if not isinstance(spec, dict):
            raise ExperimentConfigError(f"head.optimizers.{opt} must be a dict such as {{'lr': 0.1}}, got {spec!r}.")
        dtype = spec.get("dtype", head.get("dtype", "float32"))
        if dtype not in ("float32", "float64"):
            raise ExperimentConfigError(f"head.optimizers.{opt}.dtype must be 'float32' or 'float64', got {dtype!r}.")
        if dtype == "float64" and head.get("input", "features") != "features":
            raise ExperimentConfigError(f"head.optimizers.{opt}.dtype='float64' needs head.input='features' (a "
                                        "float64 copy of the whole network would not match the float32 feature map).")
        if "lengths" in spec:
            lengths = spec["lengths"]
            _int_list(lengths, f"head.optimizers.{opt}.lengths")
            if 0 in lengths or len(set(lengths)) != len(lengths):
                raise ExperimentConfigError(f"head.optimizers.{opt}.lengths must be distinct step counts >= 1, "
                                            f"got {lengths!r}.")
        train = {k: v for k, v in spec.items() if k not in _SPEC_KEYS}
        validate_train_section({"optimizer": opt, "steps": head.get("steps"), "batch_size": head.get("batch_size"),
                                **train}, f"head.optimizers.{opt}")
    if cfg.get("figure_optimizer", next(iter(opts))) not in opts:
        raise ExperimentConfigError(f"figure_optimizer must be one of {sorted(opts)}, got {cfg['figure_optimizer']!r}.")
    fig = cfg.get("figure", {})
    if not isinstance(fig, dict) or set(fig) - {"resolution", "dpi"} or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in fig.values()):
        raise ExperimentConfigError(f"figure must be a dict of positive ints 'resolution' and 'dpi', got {fig!r}.")


# ------------------------------------------------------------------------------------------------
# Heads
# ------------------------------------------------------------------------------------------------
def feature_map_state(model: nn.Module, head: str = "head") -> dict[str, Tensor]:
    """A copy of every parameter and buffer of ``model`` outside its head (weights and BN statistics)."""
    prefix = f"{head}."
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith(prefix)}


def same_state(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    """True iff both dicts hold the same names with bit-identical tensors (same dtype, shape and values)."""
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


@torch.no_grad()
def reinit_head_(head: nn.Linear, scheme: str = "original", seed: int = 0) -> nn.Linear:
    """Re-initialise a linear head in place from a local generator seeded with ``seed``.

    ``"original"``: the original's ``dense_custom`` layer (weights truncated normal with std 0.05, bias
    0.01; ``original_code.md`` §2.4, checklist item 23). ``"torch"``: ``nn.Linear``'s default.
    """
    g = torch.Generator().manual_seed(int(seed))
    fresh = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)  # CPU, float32
    if scheme == "original":
        tf_truncated_normal_(fresh.weight, 0.05, g)
        if fresh.bias is not None:
            fresh.bias.fill_(0.01)
    elif scheme == "torch":
        torch_default_(fresh, g)
    else:
        raise ValueError(f"Unknown head re-initialisation {scheme!r}; use 'original' or 'torch'.")
    head.weight.copy_(fresh.weight)
    if head.bias is not None:
        head.bias.copy_(fresh.bias)
    return head


def svm_head(svm: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The head ``(W (K, D), b (K,))`` that makes the same decisions as a fitted linear SVM, at its scale.

    A binary SVM ``v·h + c`` becomes the two logits ``(−v/2)·h − c/2`` and ``(v/2)·h + c/2``, whose
    difference is the SVM's decision value; a multi-class one is used as it is.
    """
    V = np.atleast_2d(np.asarray(svm.coef_, dtype=np.float64))
    c = np.atleast_1d(np.asarray(svm.intercept_, dtype=np.float64))
    if n_classes == 2 and V.shape[0] == 1:
        return np.vstack([-V / 2, V / 2]), np.array([-c[0] / 2, c[0] / 2])
    return V.copy(), c.copy()


def _scaled_lr(lr: float, optimizer: str, H: np.ndarray, rule: str) -> float:
    """``lr`` divided by the feature size: mean ‖(h, 1)‖² for (momentum) SGD, its square root for Adam.

    Makes one configuration usable on features of any scale: gradient descent on a linear head changes
    the logits by about ``lr · ‖h‖²`` per step, Adam by about ``lr · ‖h‖``.
    """
    if rule == "none":
        return float(lr)
    size = float(np.mean(np.sum(H * H, axis=1)) + 1.0)
    return float(lr / (math.sqrt(size) if optimizer in ("adam", "rmsprop") else size))


def train_head(model: nn.Module, *, y: np.ndarray, H: np.ndarray | None = None, X: Any = None,
               optimizer: str, lr: float, steps: int, batch_size: int | None, seed: int,
               reinit: str | None = "original", input: str = "features", device: str | torch.device = "cpu",
               optimizer_kwargs: dict[str, Any] | None = None, progress: bool = False,
               dtype: Any = "float32", callbacks: Any = (), target_loss: float | None = None) -> dict[str, Any]:
    """Re-initialise ``model.head`` (in a copy) and train only it on the frozen feature map.

    Parameters
    ----------
    model : nn.Module
        A trained classifier with ``.head`` (``nn.Linear``) and ``.features``; not modified.
    y : ndarray of shape (N,)
    H : ndarray of shape (N, D), optional
        The frozen features of the training inputs (eval mode); required for ``input="features"``.
    X : ndarray or Tensor of shape (N, ...), optional
        The training inputs; required for ``input="model"``.
    optimizer, lr, steps, batch_size, optimizer_kwargs :
        Head-only training (a fresh optimizer; :func:`nnboundary.train.fit`).
    seed : int
        Seeds the re-initialisation and the minibatch order.
    reinit : {"original", "torch"} or None, default="original"
        See :func:`reinit_head_`; None continues from the head as it is (no re-initialisation).
    input : {"features", "model"}, default="features"
        Train a copy of the head on ``H``, or a copy of the whole model on ``X`` with
        ``train_only_head=True`` (the feature map in eval mode: no BatchNorm updates).
    device : str or torch.device, default="cpu"
    dtype : {"float32", "float64"}, default="float32"
        Training precision (:class:`nnboundary.train.TrainConfig`); the features are cast to it. float64
        (``input="features"`` only) lets the loss-based step size go on far below float32's smallest losses.
    callbacks : sequence of TrainCallback, default=()
        Passed to :func:`nnboundary.train.fit` (they see the head, or the whole copy for ``input="model"``).
    target_loss : float or None, default=None
        Stop once the full-batch loss is at most this (the length study and the head-alone continuation stop at
        :data:`nnboundary.train.FLOAT64_LOSS_FLOOR`, beyond which float64 resolves no further progress).

    Returns
    -------
    dict
        ``W`` (K, D), ``b`` (K,), ``final_loss``, ``final_accuracy``, ``wall_time_s``, ``history``
        (``[(step, batch loss, batch accuracy)]``), ``feature_map_identical`` (whether every parameter and buffer outside the head of the trained
        copy is bit-identical before and after training) and ``model`` (that copy, with the new head).
    """
    work = copy.deepcopy(model)
    before = feature_map_state(work)
    common = dict(optimizer=optimizer, lr=lr, steps=steps, batch_size=batch_size, seed=seed, device=device,
                  progress=progress, optimizer_kwargs=optimizer_kwargs, dtype=dtype, callbacks=callbacks,
                  target_loss=target_loss)
    if input == "features":
        if H is None:
            raise ValueError("input='features' needs the frozen features H of shape (N, D).")
        head = work.head if reinit is None else reinit_head_(work.head, reinit, seed)
        result = fit(head, torch.from_numpy(np.ascontiguousarray(H, dtype=np.float32 if dtype == "float32"
                                                                 else np.float64)), y, **common)
    elif input == "model" and str(dtype).replace("torch.", "") != "float32":
        raise ValueError("input='model' trains in the network's float32; dtype='float64' needs input='features'.")
    elif input == "model":
        if X is None:
            raise ValueError("input='model' needs the training inputs X.")
        result = fit(work, X, y, train_only_head=True,
                     reinit_head=False if reinit is None else (lambda h: reinit_head_(h, reinit, seed)), **common)
        head = work.head
    else:
        raise ValueError(f"input must be 'features' or 'model', got {input!r}.")
    W = head.weight.detach().to("cpu", torch.float64).numpy().copy()
    b = head.bias.detach().to("cpu", torch.float64).numpy().copy()
    return {"W": W, "b": b, "final_loss": result.final_loss, "final_accuracy": result.final_accuracy,
            "wall_time_s": result.wall_time_s, "feature_map_identical": same_state(before, feature_map_state(work)),
            "history": list(result.history), "model": work}


def _head_row(analysis: Any) -> dict[str, Any]:
    s = analysis.summary
    return {k: s.get(k, float("nan")) for k in HEAD_METRICS}


def _retrain_heads(model: nn.Module, X: Any, y: np.ndarray, H: np.ndarray, head_cfg: dict[str, Any], *,
                   device: Any, progress: bool):
    """Yield ``(condition, optimizer, head seed, lr used, head steps, train_head result)`` for every optimizer,
    head-training length and head seed.

    An optimizer whose spec lists ``lengths`` is trained once per length (condition ``reinit-<opt>@<steps>``,
    each from the same re-initialisation: full batch, so a length's head is the same as the longer runs' head at
    that step); the others train ``steps`` updates (condition ``reinit-<opt>``).
    """
    for opt, spec in head_cfg["optimizers"].items():
        lr = _scaled_lr(spec["lr"], opt, H, head_cfg.get("lr_scale", "none"))
        lengths = spec.get("lengths")
        for steps in lengths or [spec.get("steps", head_cfg["steps"])]:
            condition = f"reinit-{opt}@{steps}" if lengths else f"reinit-{opt}"
            for seed in head_cfg["seeds"]:
                run = train_head(model, y=y, H=H, X=X, optimizer=opt, lr=lr, steps=steps,
                                 batch_size=spec.get("batch_size", head_cfg.get("batch_size")), seed=seed,
                                 reinit=head_cfg.get("reinit", "original"), input=head_cfg.get("input", "features"),
                                 device=device, optimizer_kwargs=spec.get("optimizer_kwargs"), progress=progress,
                                 dtype=spec.get("dtype", head_cfg.get("dtype", "float32")),
                                 target_loss=spec.get("target_loss"))
                run.pop("model")
                yield condition, opt, seed, lr, steps, run


def _joint_numbers(W: np.ndarray, row: dict[str, Any], W0: np.ndarray, joint: dict[str, Any]) -> dict[str, Any]:
    """A head against the jointly trained head: direction angle and the differences of the bias offsets (both in
    units of the SVM's margin, so heads of any scale compare)."""
    from nnboundary.metrics import direction_angle

    return {"angle_to_joint_deg": direction_angle(W, W0),
            "offset_minus_joint": row["bias_offset"] - joint["bias_offset"],
            "offset_reg_minus_joint": row["bias_offset_reg"] - joint["bias_offset_reg"]}


def compare_heads(model: nn.Module, X: Any, y: np.ndarray, X_test: Any, y_test: np.ndarray,
                  head_cfg: dict[str, Any], *, device: str | torch.device = "cpu", network_seed: int = 0,
                  progress: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Conditions (a), (b) and (c) of the bias experiment for one trained network.

    Parameters
    ----------
    model : nn.Module
        Trained, with ``.head`` and ``.features``; not modified.
    X, y : training inputs (N, ...) and labels (N,)
    X_test, y_test : test inputs and labels
    head_cfg : dict
        The ``head`` section of a bias config (optimizers, lrs, steps, batch size, seeds, input, reinit,
        lr_scale).
    device : str or torch.device, default="cpu"
    network_seed : int, default=0
        Recorded in the rows.

    Returns
    -------
    rows : list of dict
        One per head: ``condition``, ``optimizer``, ``network_seed``, ``head_seed``, ``lr``, the
        :data:`HEAD_METRICS`, ``final_loss`` and ``feature_map_identical`` (retrained heads).
    extras : dict
        ``H``, ``y`` (training features and labels), ``svm`` (fitted free-bias SVM), ``support``,
        ``heads`` (condition -> (W, b) of the first head seed), ``dead_units``, ``feature_norm``.
    """
    from nnboundary.analysis import analyze_features
    from nnboundary.features import extract_features, head_params

    model = model.to(device).eval()
    state0 = feature_map_state(model)
    tr = extract_features(model, X, "head", y=y, device=device, progress=progress)
    te = extract_features(model, X_test, "head", y=y_test, device=device)
    H, Ht = tr.features, te.features
    K = model.head.out_features

    W0, b0 = head_params(model.head)
    joint = analyze_features(H, y, W0, b0, H_test=Ht, y_test=y_test, grid_resolution=50)
    svms = {"svm": joint.svm, "svm_fitted": True,  # every head is compared with the same SVMs, fitted once
            "svm_regularized": False if joint.svm_regularized is None else joint.svm_regularized}

    def row(condition: str, W: np.ndarray, b: np.ndarray, **extra: Any) -> dict[str, Any]:
        """The numbers of one head against the SVMs fitted once, above."""
        a = analyze_features(H, y, W, b, H_test=Ht, y_test=y_test, grid_resolution=50, **svms)
        return {"network_seed": network_seed, "condition": condition, "optimizer": extra.pop("optimizer", ""),
                "head_seed": extra.pop("head_seed", None), "lr": extra.pop("lr", None), **_head_row(a), **extra}

    heads = {"joint": (W0, b0), "svm": svm_head(joint.svm, K)}
    if joint.svm_regularized is not None:
        heads["svm-regularized"] = svm_head(joint.svm_regularized, K)
    rows = [row(cond, *heads[cond]) for cond in heads]
    joint_row = rows[0]
    for r, cond in zip(rows, heads):
        r.update(_joint_numbers(heads[cond][0], r, W0, joint_row))
    history: list[dict[str, Any]] = []
    figure_steps: dict[str, int] = {}
    for condition, opt, seed, lr, steps, run in _retrain_heads(model, X, y, H, head_cfg, device=device,
                                                               progress=progress):
        history += [{"network_seed": network_seed, "condition": condition, "head_seed": seed, "step": int(t),
                     "train_loss": loss, "train_accuracy": acc} for t, loss, acc in run.pop("history")]
        r = row(condition, run["W"], run["b"], optimizer=opt, head_seed=seed, lr=lr, head_steps=steps,
                final_loss=run["final_loss"], head_wall_time_s=run["wall_time_s"],
                feature_map_identical=run["feature_map_identical"])
        rows.append({**r, **_joint_numbers(run["W"], r, W0, joint_row)})
        if seed == head_cfg["seeds"][0] and steps >= figure_steps.get(opt, 0):  # the figure: the longest length
            heads[f"reinit-{opt}"], figure_steps[opt] = (run["W"], run["b"]), steps
    if not same_state(state0, feature_map_state(model)):
        raise RuntimeError("The feature map of the trained network changed during the bias experiment; "
                           "this is a bug in nnboundary, please report it.")
    extras = {"H": H, "y": np.asarray(y), "svm": joint.svm, "support": joint.support, "heads": heads,
              "dead_units": dead_units(H), "feature_norm": float(np.sqrt(np.mean(np.sum(H * H, axis=1)))),
              "joint_summary": joint.summary, "history": history}
    return rows, extras


def _condition_key(condition: str) -> tuple[str, int]:
    """Sort key of ``reinit-<opt>`` / ``reinit-<opt>@<steps>``: by optimizer, then numerically by length."""
    opt, _, steps = condition.partition("@")
    return opt, int(steps) if steps else -1


def aggregate_bias_runs(runs: pd.DataFrame, *, by_network: bool = False) -> pd.DataFrame:
    """Mean, std, min, max and count of :data:`HEAD_METRICS` per condition, in a fixed condition order.

    Parameters
    ----------
    runs : DataFrame
        One row per head (``bias_runs.csv``), with ``condition`` and ``network_seed`` columns.
    by_network : bool, default=False
        Aggregate per ``(network_seed, condition)`` (over head seeds only) instead of per condition
        (over networks and head seeds).

    Returns
    -------
    DataFrame
        Index ``condition`` (or ``(network_seed, condition)``); columns ``<metric>_<statistic>``.
    """
    cols = [c for c in (*HEAD_METRICS, *JOINT_METRICS, "head_steps", "final_loss", "head_wall_time_s") if c in runs]
    keys = ["network_seed", "condition"] if by_network else ["condition"]
    agg = runs.groupby(keys, sort=False)[cols].agg(["mean", "std", "min", "max", "count"])
    agg.columns = [f"{m}_{s}" for m, s in agg.columns]
    order = ["joint", *sorted((c for c in runs["condition"].unique() if c.startswith("reinit-")), key=_condition_key),
             "svm", "svm-regularized"]
    if not by_network:
        return agg.reindex([c for c in order if c in agg.index])
    index = [(n, c) for n in runs["network_seed"].unique() for c in order if (n, c) in agg.index]
    return agg.reindex(pd.MultiIndex.from_tuples(index, names=keys))


# ------------------------------------------------------------------------------------------------
# Networks
# ------------------------------------------------------------------------------------------------
def _image_network(net: dict[str, Any], seed: int, out: Path, *, model_dir: Any, device: Any, data_dir: Any,
                   progress: bool) -> tuple[nn.Module, tuple, dict[str, Any]]:
    if model_dir is None:  # a run directory of its own inside this run's staging folder
        model_dir = out / f"network-seed{seed}"
        run_image_experiment(net["image_experiment"], net.get("profile", "quick"), model_dir, seed=seed,
                             device=device, data_dir=data_dir, progress=progress)
    model, run_cfg = load_trained_model(model_dir, device=device)
    ds = load_image_data(run_cfg, data_dir=data_dir, seed=run_cfg["seed"])
    info = {"run_dir": str(model_dir), "experiment": run_cfg["experiment"], "profile": run_cfg["profile"],
            "seed": run_cfg["seed"], "n_train": int(len(ds.y_train)), "n_test": int(len(ds.y_test))}
    return model, (ds.x_train, ds.y_train, ds.x_test, ds.y_test), info


def _simulated_network(net: dict[str, Any], seed: int, *, device: Any,
                       progress: bool) -> tuple[nn.Module, tuple, dict[str, Any]]:
    from nnboundary.data import make_simulated, train_test_split

    sim = dict(net["simulated"])
    name, frac, data_seed = sim.pop("name"), sim.pop("test_fraction", 0.1), sim.pop("seed", 0)
    train, test = train_test_split(make_simulated(name, seed=data_seed, **sim), test_fraction=frac, seed=0)
    model = build_model(net["model"]["name"], in_features=train.n_features, n_classes=train.n_classes, seed=seed,
                        **net["model"].get("kwargs", {}))
    result = fit(model, train.X.astype(np.float32), train.y, seed=seed, device=device, progress=progress,
                 **net["train"])
    info = {"data": net["simulated"], "n_train": train.n_samples, "n_test": test.n_samples, "seed": seed,
            "final_loss": result.final_loss, "final_accuracy": result.final_accuracy,
            "train_wall_time_s": result.wall_time_s}
    return model.eval(), (train.X.astype(np.float32), train.y, test.X.astype(np.float32), test.y), info


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------
def run_bias_reinit(name: str = "bias-reinit-mnist01", profile: str = "quick",
                    out_dir: str | os.PathLike[str] | None = None, *, seed: int | None = None,
                    device: str | torch.device = "cpu", data_dir: str | os.PathLike[str] | None = None,
                    force: bool = False, model_dir: str | os.PathLike[str] | None = None,
                    overrides: dict[str, Any] | None = None, progress: bool = False) -> dict[str, Any]:
    """Run the bias experiment: jointly trained head vs re-initialised, retrained heads vs the SVM.

    Parameters
    ----------
    name : str, default="bias-reinit-mnist01"
        A bias experiment (``list_experiments(kind="bias")``).
    profile : {"smoke", "quick", "paper"}, default="quick"
    out_dir : path-like or None, default=None
        Run folder; None: ``runs/<name>-<profile>``.
    seed : int or None, default=None
        If given, a single network seed replacing the profile's ``network_seeds``.
    device : str or torch.device, default="cpu"
    data_dir : path-like or None, default=None
        Where the image data are (image networks only).
    force : bool, default=False
        Replace the results of a previous run in ``out_dir`` (and of the networks trained in it).
    model_dir : path-like or None, default=None
        A finished :func:`~nnboundary.experiments.images.run_image_experiment` folder whose network to
        use instead of training one (image networks only; one network).
    overrides : dict or None, default=None
        Merged into the profile's settings (``get_experiment(name, profile, settings=overrides)``).
    progress : bool, default=False

    Returns
    -------
    summary : dict
        ``table`` (condition -> ``<metric>_<mean|std|min|max|count>``), ``networks`` (per network:
        its settings, dead units, feature scale), ``feature_map_identical`` (all retrained heads),
        ``figures`` and the resolved config.

    Raises
    ------
    FileExistsError
        ``out_dir`` is not empty and ``force`` is not set.
    ExperimentConfigError
        Invalid profile or overrides, or ``model_dir`` with a simulated network.
    nnboundary.data.DatasetNotFoundError
        Image data not found.
    """
    cfg = get_experiment(name, profile, kind="bias", settings=overrides).settings
    return _run_resolved(cfg, out_dir, seed=seed, device=device, data_dir=data_dir, force=force,
                         model_dir=model_dir, progress=progress)


def _run_resolved(cfg: dict[str, Any], out_dir: Any, *, seed: int | None, device: Any, data_dir: Any, force: bool,
                  model_dir: Any, progress: bool) -> dict[str, Any]:
    name, profile = cfg["experiment"], cfg["profile"]
    net = cfg["network"]
    if model_dir is not None and "image_experiment" not in net:
        raise ExperimentConfigError(f"model_dir applies to image networks only; {name!r} trains a simulated one.")
    seeds = [seed] if seed is not None else list(cfg["network_seeds"])
    if model_dir is not None:
        seeds = seeds[:1]
    rd = RunDir(out_dir or default_run_dir(name, profile), experiment=name, profile=profile)
    rd.check(force=force)
    resolve_device(device)
    t0 = time.perf_counter()
    with rd.open(force=force) as out:
        write_json(out / "config.json", {**cfg, "network_seeds_run": seeds, "device": str(device),
                                         "model_dir": None if model_dir is None else str(model_dir)})
        rows, networks, first, history = [], [], None, []
        for s in seeds:
            if "image_experiment" in net:
                model, data, info = _image_network(net, s, out, model_dir=model_dir, device=device,
                                                   data_dir=data_dir, progress=progress)
            else:
                model, data, info = _simulated_network(net, s, device=device, progress=progress)
            net_rows, extras = compare_heads(model, *data, cfg["head"], device=device, network_seed=s,
                                             progress=progress)
            rows += net_rows
            history += extras.pop("history")
            networks.append({**info, "dead_units": extras["dead_units"].tolist(),
                             "dead_units_note": dead_units_note(extras["dead_units"]),
                             "feature_norm_rms": extras["feature_norm"], "joint": extras["joint_summary"]})
            first = first or extras
        runs = pd.DataFrame(rows)
        runs.to_csv(out / "bias_runs.csv", index=False)
        atomic_write(out / "metrics.jsonl", lambda fh: fh.write(  # the retrained heads' training curves
            "".join(json.dumps(to_jsonable(r), allow_nan=False) + "\n" for r in history)))
        table = aggregate_bias_runs(runs)
        table.to_csv(out / "bias_table.csv")
        per_network = aggregate_bias_runs(runs, by_network=True)
        per_network.to_csv(out / "bias_table_by_network.csv")
        figures = _bias_figure(first, cfg, out / "figures")
        retrained = runs[runs["condition"].str.startswith("reinit-")]
        summary = {"experiment": name, "profile": profile, "label": cfg["label"], "title": cfg["title"],
                   "device": str(device), "network_seeds": seeds, "networks": networks,
                   "table": {c: table.loc[c].to_dict() for c in table.index},
                   "table_by_network": {f"{n}/{c}": per_network.loc[(n, c)].to_dict() for n, c in per_network.index},
                   "feature_map_identical": bool(retrained["feature_map_identical"].all()),
                   "n_heads_retrained": int(len(retrained)), "lengths": length_rows(table), "figures": figures,
                   "wall_time_s": time.perf_counter() - t0, "config": cfg}
        write_json(out / "summary.json", summary)
        (out / "report.md").write_text(bias_report(summary, table, per_network))
    return summary


def run(cfg: KindConfig, run_dir: str | os.PathLike[str], *, device: str = "cpu", data_dir: Any = None,
        progress: bool = False, force: bool = False) -> KindResult:
    """The bias kind's runner (see :func:`nnboundary.experiments.run_experiment`)."""
    summary = _run_resolved(copy.deepcopy(cfg.settings), run_dir, seed=cfg.seed, device=device, data_dir=data_dir,
                            force=force, model_dir=None, progress=progress)
    return KindResult(cfg.name, cfg.profile, "bias", Path(run_dir), list(summary["network_seeds"]),
                      bias_headline(summary), float(summary["wall_time_s"]), summary)


def bias_headline(summary: dict[str, Any]) -> dict[str, Any]:
    """Flat headline numbers of a bias run: per condition, the mean angle to the SVM and the mean bias offset."""
    out: dict[str, Any] = {}
    for condition, row in summary.get("table", {}).items():
        for metric in ("angle_deg_mean", "bias_offset_mean", "test_accuracy_mean"):
            if metric in row:
                out[f"{condition}/{metric}"] = row[metric]
    return out


def _bias_figure(extras: dict[str, Any], cfg: dict[str, Any], fig_dir: Path) -> dict[str, str]:
    """SVM | NN (joint) | NN (re-initialised with ``figure_optimizer``) for the first network and head seed."""
    from nnboundary.plot import plot_three_panel_bias

    H = extras["H"]
    if H.shape[1] != 2:
        return {}
    fig_dir.mkdir(parents=True, exist_ok=True)
    heads = extras["heads"]
    opt = cfg.get("figure_optimizer") or next(iter(cfg["head"]["optimizers"]))
    V = np.atleast_2d(extras["svm"].coef_)
    c = np.atleast_1d(extras["svm"].intercept_)
    path = plot_three_panel_bias(
        (V, c), heads["joint"], heads[f"reinit-{opt}"], H, extras["y"], fig_dir / "bias_three_panel.png",
        support=extras["support"],
        titles=("SVM (free bias)", "NN (trained jointly)", f"NN (head re-initialised, {opt})"),
        **{"resolution": 300, "dpi": 120, **cfg.get("figure", {})})
    return {"bias_three_panel": str(Path(path).relative_to(fig_dir.parent))}  # relative to the run dir


def _pm(table: pd.DataFrame, key: Any, metric: str, spec: str = ".3g") -> str:
    row = table.loc[key]
    mean, std = row[f"{metric}_mean"] + 0.0, row[f"{metric}_std"]       # + 0.0: no "-0" in the table
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:{spec}}" + (f" ± {std:{spec}}" if np.isfinite(std) and row[f"{metric}_count"] > 1 else "")


_REPORT_COLUMNS = (("angle to SVM (°)", "angle_deg"), ("angle to reg.-bias SVM (°)", "angle_deg_reg"),
                   ("offset vs SVM", "bias_offset"), ("offset vs reg.-bias SVM", "bias_offset_reg"),
                   ("offset vs gap midpoint", "bias_offset_gap"), ("offset vs class-mean midpoint", "bias_offset_means"),
                   ("margin ratio", "margin_ratio"), ("test accuracy", "test_accuracy"))


def _markdown_table(table: pd.DataFrame, label: str) -> str:
    cols = [*_REPORT_COLUMNS, ("n", None)]
    lines = ["| " + label + " | " + " | ".join(c[0] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for key in table.index:
        cells = [_pm(table, key, m, ".4g" if m == "test_accuracy" else ".3g") if m else
                 str(int(table.loc[key, "angle_deg_count"])) for _, m in cols]
        name = " / ".join(str(k) for k in key) if isinstance(key, tuple) else str(key)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


_LENGTH_COLUMNS = ("angle_deg", "angle_deg_reg", "bias_offset", "bias_offset_reg", "angle_to_joint_deg",
                   "offset_minus_joint", "offset_reg_minus_joint", "final_loss", "head_wall_time_s")


def length_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per (optimizer, head-training length) of the ``reinit-<opt>@<steps>`` conditions of ``table``:
    ``optimizer``, ``head_steps``, ``n`` and the means of :data:`_LENGTH_COLUMNS` (angle and offset to both SVMs,
    to the joint head, final loss, wall time of one head). Empty when no optimizer lists ``lengths``."""
    out = []
    for condition in table.index:
        if not (isinstance(condition, str) and condition.startswith("reinit-") and "@" in condition):
            continue
        opt, _, steps = condition[len("reinit-"):].partition("@")
        row = table.loc[condition]
        out.append({"condition": condition, "optimizer": opt, "head_steps": int(steps),
                    "n": int(row["angle_deg_count"]),
                    **{m: float(row[f"{m}_mean"]) for m in _LENGTH_COLUMNS if f"{m}_mean" in row}})
    return out


def _lengths_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    heads = ("optimizer", "head steps", "angle to SVM (°)", "angle to reg.-bias SVM (°)", "offset vs SVM",
             "offset vs reg.-bias SVM", "angle to joint head (°)", "offset − joint's", "reg. offset − joint's",
             "final loss", "wall time of one head (s)", "n")
    lines = ["| " + " | ".join(heads) + " |", "|---" * len(heads) + "|"]
    for r in rows:
        cells = [r["optimizer"], str(r["head_steps"]), *(f"{r.get(m, float('nan')):.3g}" for m in _LENGTH_COLUMNS),
                 str(r["n"])]
        lines.append("| " + " | ".join(cells) + " |")
    return ("\n\nHead-training lengths (mean over all networks and head seeds; each length trains a fresh "
            "re-initialised head): does the re-initialised head's bias converge to the joint head's?\n\n"
            + "\n".join(lines))


def bias_report(summary: dict[str, Any], table: pd.DataFrame, per_network: pd.DataFrame | None = None) -> str:
    """Markdown report of a bias run: the tables (mean ± std over seeds) and the figure."""
    nets = "\n".join(f"- network seed {n['seed']}: {n['dead_units_note']} RMS feature norm "
                     f"{n['feature_norm_rms']:.3g}." for n in summary["networks"])
    figs = "\n".join(f"![{k}](figures/{Path(v).name})" for k, v in summary["figures"].items())
    by_net = ""
    if per_network is not None and len(summary["networks"]) > 1:
        by_net = ("\n\nPer network (mean ± std over the head seeds):\n\n"
                  + _markdown_table(per_network, "network / condition"))
    return (f"# {summary['title']}\n\nProfile **{summary['profile']}**: {summary['label']}; device "
            f"{summary['device']}; network seeds {summary['network_seeds']}; "
            f"{summary['n_heads_retrained']} heads retrained; feature map bit-identical after head "
            f"training: **{summary['feature_map_identical']}**.\n\n"
            "Offsets are in units of the reference SVM's margin along its normal (0 = on the reference, ±1 = "
            "on a supporting line, > 0 = towards class 1); the gap midpoint is halfway between the closest "
            "points of the two classes, the class-mean midpoint halfway between the class means. "
            "Mean ± std over all networks and head seeds:\n\n"
            + _markdown_table(table, "condition") + _lengths_markdown(length_rows(table)) + by_net
            + f"\n\n{nets}\n\n{figs}\n")


# ------------------------------------------------------------------------------------------------
# Registration: the bias kind and its experiments
# ------------------------------------------------------------------------------------------------
register_kind(Kind(
    "bias", run, validate_bias_config, name_key="experiment",
    flags={"seed": "one network seed (replaces network_seeds)", "force": "replace an earlier run directory",
           "device": "where to train", "data_dir": "folder with the real data files",
           "steps": "updates of each retrained head (head.steps)"},
    settings_for={"steps": lambda v: {"head": {"steps": v}}}))
