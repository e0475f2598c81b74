"""The head's own implicit bias on fixed features: continue training the head alone and time its approach.

A network's last layer can be far from the max-margin SVM of its features for two reasons: the features still
move (each evaluation's SVM is a new target; :class:`~nnboundary.tracking.AlignmentTracker` records
``svm_step_angle_deg`` and ``feature_change``), or the features have settled and gradient descent on the head is
simply slow — on fixed separable features the head's direction approaches the SVM's only like ``c / log t``
(Soudry et al. 2018). :func:`continue_head` measures the second: it freezes the final features, keeps training
only the head from where the network left it (full batch, float64, the loss-based step size of Lyu & Li 2020),
records the angle to the SVM of those features on log-spaced steps and fits ``angle(t) ≈ c / log t``.

The runner calls it at the end of a simulated run when the config's ``head_continuation_steps`` is > 0 and
writes the result to the run's summary under ``head_alone``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from nnboundary.metrics import cross_entropy, direction_angle, fit_inverse_log, inverse_log_fit_holds
from nnboundary.tracking import is_log_step
from nnboundary.train import FLOAT64_LOSS_FLOOR, TrainCallback

__all__ = ["LOSS_FLOOR", "HeadAngleRecorder", "continue_head"]

#: Below this mean loss float64 no longer resolves the head's progress (:data:`nnboundary.train.FLOAT64_LOSS_FLOOR`):
#: the continuation stops there, later points are left out of the fit and the first such step is reported as
#: ``loss_floor_step``.
LOSS_FLOOR = FLOAT64_LOSS_FLOOR


class _FrozenFeatures(nn.Module):
    """A model whose feature map is the identity on given features and whose ``head`` is a linear layer.

    Lets :func:`nnboundary.experiments.bias.train_head` (the one head-only trainer) train a head on an (N, D)
    feature matrix directly.
    """

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        super().__init__()
        W = np.atleast_2d(np.asarray(W, dtype=np.float64))  # (K, D)
        b = np.atleast_1d(np.asarray(b, dtype=np.float64))  # (K,)
        self.features = nn.Identity()
        self.head = nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(W))
            self.head.bias.copy_(torch.from_numpy(b))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(h))


class HeadAngleRecorder(TrainCallback):
    """Records ``(step, angle to V in degrees, loss)`` of a linear head on log-spaced steps, 0 and the last.

    Parameters
    ----------
    V : ndarray of shape (K, D) or (1, D)
        The SVM weights to compare the head's direction with (:func:`nnboundary.metrics.direction_angle`).
    """

    def __init__(self, V: np.ndarray) -> None:
        self.V = np.atleast_2d(np.asarray(V, dtype=np.float64))
        self.total: int | None = None
        self.rows: list[tuple[int, float, float]] = []

    def _angle(self, head: nn.Module) -> float:
        W = head.weight.detach().to("cpu", torch.float64).numpy()
        return direction_angle(W, self.V)

    def on_start(self, step: int, model: nn.Module, *, total_steps: int | None = None) -> None:
        self.total = total_steps
        if step == 0:
            self.rows.append((0, self._angle(model), float("nan")))

    def wants(self, step: int) -> bool:
        return step == self.total or is_log_step(step)

    def on_step(self, step: int, model: nn.Module, *, loss: float, accuracy: float) -> None:
        self.rows.append((int(step), self._angle(model), float(loss)))

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [list(r) for r in self.rows]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = [(int(s), float(a), float(l)) for s, a, l in state.get("rows", [])]


def continue_head(H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray, V: np.ndarray, *, steps: int,
                  lr: float = 0.1, seed: int = 0, fraction: float = 0.5, device: str | torch.device = "cpu",
                  progress: bool = False) -> dict[str, Any]:
    """Train only the head ``(W, b)`` on the fixed features ``H`` for ``steps`` steps; fit its angle to ``V``.

    The head starts where it is (no re-initialisation) and is trained by
    :func:`nnboundary.experiments.bias.train_head` with the loss-based step size (``optimizer="loss_based"``,
    initial ``alpha = lr``), full batch, in float64. Its angle to the SVM direction ``V`` is recorded on the
    log-spaced steps 1, 2, 5, 10, ... (and 0 and the last); ``angle(t) ≈ c / log t`` is fitted by
    :func:`nnboundary.metrics.fit_inverse_log` to the later ``fraction`` of them and judged by
    :func:`nnboundary.metrics.inverse_log_fit_holds`.

    Cost: ``steps`` full-batch passes of an (N, D) × (D, K) product (more on the steps whose first try fails);
    memory: a float64 copy of H (8·N·D bytes).

    Parameters
    ----------
    H : ndarray of shape (N, D)
        The frozen final features of the training points.
    y : ndarray of shape (N,), labels in 0..K-1
    W, b : ndarray of shape (K, D), (K,)
        The head as the network left it (K = 1: a single logit).
    V : ndarray of shape (K, D) or (1, D)
        The SVM weights of these features (the run's main SVM).
    steps : int (>= 1)
    lr : float, default=0.1
    seed : int, default=0
    fraction : float in (0, 1], default=0.5
    device : str or torch.device, default="cpu"
    progress : bool, default=False

    Returns
    -------
    dict
        ``steps``, ``optimizer``, ``lr``; ``angle_start`` / ``angle_end`` (degrees, before the first and after the
        last step), ``loss_start`` / ``loss_end``; ``c``, ``r2``, ``rel_rms``, ``n_used``, ``step_min``,
        ``step_max``, ``span_decades`` of the fit and ``holds``; ``loss_floor_step`` (the first recorded step whose
        loss is below :data:`LOSS_FLOOR`, None if none; the fit stops before it); ``curve``:
        ``[[step, angle, loss before that step's update], ...]`` (the loss of step 0 is NaN); ``wall_time_s``.
    """
    from nnboundary.experiments.bias import train_head  # the one head-only trainer

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}.")
    H = np.asarray(H, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if H.ndim != 2 or y.shape != (H.shape[0],):
        raise ValueError(f"H must have shape (N, D) and y shape (N,), got {H.shape} and {y.shape}.")
    t0 = time.perf_counter()
    model = _FrozenFeatures(W, b)
    recorder = HeadAngleRecorder(V)
    run = train_head(model, y=y, H=H, optimizer="loss_based", lr=lr, steps=steps, batch_size=None, seed=seed,
                     reinit=None, input="features", device=device, progress=progress, dtype="float64",
                     callbacks=[recorder], target_loss=LOSS_FLOOR)
    curve = np.array(recorder.rows, dtype=np.float64).reshape(-1, 3)  # (T, 3): step, angle, loss
    floor = np.flatnonzero(curve[:, 2] < LOSS_FLOOR)  # the loss of step t is the one before update t
    floor_step = int(curve[floor[0], 0]) if floor.size else None
    usable = curve if floor_step is None else curve[curve[:, 0] < floor_step]
    fit = fit_inverse_log(usable[:, 0], usable[:, 1], fraction=fraction)
    return {"steps": steps, "steps_run": int(curve[-1, 0]), "optimizer": "loss_based", "lr": float(lr),
            "angle_start": float(curve[0, 1]), "angle_end": direction_angle(run["W"], V),
            "loss_start": _mean_loss(H, y, W, b), "loss_end": _mean_loss(H, y, run["W"], run["b"]),
            **{k: fit[k] for k in ("c", "r2", "rel_rms", "n_used", "step_min", "step_max", "span_decades")},
            "holds": inverse_log_fit_holds(fit), "loss_floor_step": floor_step, "curve": curve.tolist(),
            "wall_time_s": round(time.perf_counter() - t0, 3)}


def _mean_loss(H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray) -> float:
    """Mean cross-entropy of the head (W, b) on (H, y), float64 (tiny losses keep their precision)."""
    return float(np.mean(cross_entropy(H @ np.atleast_2d(W).T + np.atleast_1d(b), y)))
