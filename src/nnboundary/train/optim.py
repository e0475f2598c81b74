"""Optimizers by name, with the original code's defaults and no weight decay.

================  ============================================================================
``"sgd"``         plain gradient descent, ``torch.optim.SGD``
``"momentum"``    heavy ball, momentum 0.9 (TF1 ``MomentumOptimizer`` semantics; not Nesterov)
``"nesterov"``    Nesterov momentum 0.9
``"adam"``        ``torch.optim.Adam``, betas (0.9, 0.999), eps 1e-8 (TF1 defaults)
``"rmsprop"``     ``torch.optim.RMSprop``, decay (``alpha``) 0.9, eps 1e-10 (TF1 defaults)
``"loss_based"``  opt-in: gradient descent with the loss-based step size of Lyu & Li (2020),
                  :class:`LossBasedGD` (full batch; needs ``step(closure)``, which the Trainer gives)
================  ============================================================================

Weight decay is 0 unless asked for: the implicit-bias theory (and the original runs) have none, and any
decay changes which solution the head converges to. Small differences from TF1 that remain: TF1's Adam
adds ``eps`` without bias correction, and TF1's RMSProp starts its squared average at 1 and puts ``eps``
inside the square root; PyTorch starts at 0 and adds ``eps`` outside.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["make_optimizer", "available_optimizers", "LossBasedGD"]

class LossBasedGD(torch.optim.Optimizer):
    """Gradient descent with step size ``alpha / L``, grown on success, shrunk and undone on failure.

    After Lyu & Li (2020, "Gradient descent maximizes the margin of homogeneous neural networks"): once
    the data are fitted the loss ``L`` decays like ``1/t`` and plain GD slows down with it; dividing the
    step by ``L`` keeps the normalised progress (and the margin's growth) going. Each :meth:`step`:

    1. ``L0 = closure()`` (the loss at the current parameters, no gradient needed);
    2. ``theta <- theta - (alpha / L0) * grad``, ``L1 = closure()``;
    3. if ``L1 < L0``: keep it, ``alpha <- alpha * up``; otherwise restore ``theta``,
       ``alpha <- alpha / down`` and try again (at most ``max_retries`` times).

    Why it was slow from the start, and the warm-up (measured, three-blobs quick net, float64, full batch,
    2 CPU cores): started from the initialisation with ``alpha = 0.1``, ``alpha`` grew to 0.26 in the first
    10 steps, then collapsed through failed steps to 3e-4 by step 3000 while the loss was still 0.09-0.3: in
    the early, non-convex phase the loss is far from zero, so ``1/L`` buys nothing, and the largest step that
    still lowers the loss is set by the curvature of the feature-learning phase; one failure (``/2``) undoes
    seven successes (``*1.1``), so ``alpha`` settles at that edge with about one failed try every eight steps.
    That is plain, sharpness-limited GD, and GD fits these data more slowly than Adam. Not the cause: the
    Trainer's closure does not recompute gradients (its first call returns the step's loss; every retry is one
    forward pass without gradient), and the cross-entropy did not underflow (the loss was 0.09; the float64
    logit-gap CE of :mod:`nnboundary.train.losses` is exact down to about 1e-300). The remedy: ``warmup="adam"``
    fits the data with Adam (``warmup_lr``) until ``L <= switch_loss``, then the loss-based rule takes over
    (for good: the phase is saved with the optimizer's state). Measured with the warm-up (``switch_loss=0.5``,
    all points fitted): blobs reach CE 1e-12 at step 137 (``up=1.1``), the activation study's square-net arm
    at step 231; three-blobs reaches 1.1e-3 at step 3000 with ``up=1.1`` and 1.7e-4 with ``up=2`` (the ReLU
    2-unit bottleneck stays sharpness-limited; ``up=2`` costs about one failed try per step there, and 20 000
    such steps ended at 9.6e-5). Heavy-ball momentum on the loss-based direction (restarted on a failed try)
    fixes that: three-blobs at step 3000 reaches 1.2e-5 with ``momentum=0.9`` and 9.3e-8 with ``momentum=0.98``
    (``up=1.1``, one failed try per ~7 steps).

    The loss falls very fast under this rule: a float32 model stalls once its gradients underflow
    (losses near 1e-45); use ``dtype=float64`` to go further. A step with ``L0 = 0`` or non-finite does
    nothing.

    ``lr`` is the initial ``alpha``; the current one is ``param_groups[0]["lr"]`` (saved and restored
    with the optimizer's state dict, so a resumed run continues exactly), ``phase`` (``"warmup"`` or
    ``"loss_based"``), ``failed_tries`` (all failed tries so far) and ``last_tries`` (tries of the last step)
    sit beside it. Meant for full-batch training: the closure's forward passes run in train mode, on the
    batch the gradient was taken on. The Trainer's closure restores the model's buffers after each extra pass,
    so BatchNorm's running statistics see each step's batch once; dropout, which draws a new mask per pass,
    makes the loss comparison noisy (our image models have none).

    Parameters
    ----------
    params : iterable of Tensor
    lr : float
        Initial ``alpha`` (> 0).
    up : float, default=1.1
        Factor applied to ``alpha`` after a successful step (>= 1).
    down : float, default=2.0
        Divisor applied to ``alpha`` after a failed step (> 1).
    max_retries : int, default=30
        Failed tries per step before giving up (the parameters are then left unchanged).
    warmup : {None, "adam"}, default=None
        None: loss-based from the first step. ``"adam"``: Adam steps (betas 0.9/0.999, eps 1e-8) until the
        loss is at most ``switch_loss``.
    warmup_lr : float, default=1e-3
        Adam's learning rate in the warm-up.
    switch_loss : float, default=0.1
        The loss at which the warm-up ends (a mean CE below ``log(2) / N`` means every point is fitted).
    momentum : float, default=0.0
        Heavy ball on the loss-based direction: ``d <- grad / L + momentum * d_prev``, step ``alpha * d``; a
        failed try drops ``d_prev`` (restart). Gradient descent with momentum keeps the max-margin limit on
        separable data (Wang et al. 2022, for linear models) and helps where the terminal phase is
        sharpness-limited (measured below).
    """

    needs_closure = True

    def __init__(self, params: Iterable[torch.Tensor], lr: float, *, up: float = 1.1, down: float = 2.0,
                 max_retries: int = 30, weight_decay: float = 0.0, warmup: str | None = None,
                 warmup_lr: float = 1e-3, switch_loss: float = 0.1, momentum: float = 0.0) -> None:
        if up < 1 or down <= 1:
            raise ValueError(f"LossBasedGD needs up >= 1 and down > 1, got up={up}, down={down}.")
        if weight_decay:
            raise ValueError("LossBasedGD has no weight decay; leave weight_decay=0.")
        if warmup not in (None, "adam"):
            raise ValueError(f"LossBasedGD warmup must be None or 'adam', got {warmup!r}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"LossBasedGD momentum must lie in [0, 1), got {momentum}.")
        if not (warmup_lr > 0 and switch_loss > 0):
            raise ValueError(f"warmup_lr and switch_loss must be > 0, got {warmup_lr}, {switch_loss}.")
        super().__init__(params, {"lr": float(lr), "up": float(up), "down": float(down),
                                  "max_retries": int(max_retries), "warmup": warmup, "warmup_lr": float(warmup_lr),
                                  "switch_loss": float(switch_loss), "momentum": float(momentum),
                                  "phase": "warmup" if warmup else "loss_based", "failed_tries": 0,
                                  "last_tries": 0})
        self._adam: torch.optim.Adam | None = None

    def _warmup_optimizer(self) -> torch.optim.Adam:
        if self._adam is None:
            params = [p for g in self.param_groups for p in g["params"]]
            self._adam = torch.optim.Adam(params, lr=self.param_groups[0]["warmup_lr"], betas=(0.9, 0.999), eps=1e-8)
        return self._adam

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """The optimizer's state plus the warm-up Adam's (while it exists)."""
        out = super().state_dict()
        if self._adam is not None:
            out["warmup_state"] = self._adam.state_dict()
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        state = dict(state_dict)
        warm = state.pop("warmup_state", None)
        super().load_state_dict(state)
        if warm is not None:
            self._warmup_optimizer().load_state_dict(warm)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One update; ``closure()`` returns the loss at the current parameters. Returns the final loss
        (in the warm-up: the loss before the Adam step)."""
        if closure is None:
            raise RuntimeError("LossBasedGD.step needs a closure that returns the loss (the Trainer passes one).")
        loss0 = closure().detach().to(torch.float64)
        group0 = self.param_groups[0]
        if group0["phase"] == "warmup":
            if not bool(loss0 <= group0["switch_loss"]):
                self._warmup_optimizer().step()
                return loss0
            for group in self.param_groups:
                group["phase"] = "loss_based"
            self._adam = None
        if not bool(torch.isfinite(loss0) & (loss0 > 0)):       # 0 (underflow) or nan: no usable step size
            return loss0
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        saved = [p.detach().clone() for p in params]
        for tries in range(1, group0["max_retries"] + 2):
            directions: list[tuple[torch.Tensor, torch.Tensor]] = []
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    d = p.grad.to(torch.float64) / loss0       # float64: 1/L may exceed float32's range
                    velocity = self.state[p].get("velocity")
                    if group["momentum"] and velocity is not None:
                        d = d + group["momentum"] * velocity.to(torch.float64)
                    directions.append((p, d))
                    p.sub_((d * group["lr"]).to(p.dtype))
            loss1 = closure().detach().to(torch.float64)
            if bool(loss1 < loss0):                         # also False for nan
                for group in self.param_groups:
                    group["lr"] *= group["up"]
                    group["last_tries"] = tries
                    group["failed_tries"] += tries - 1
                if group0["momentum"]:
                    for p, d in directions:
                        self.state[p]["velocity"] = d.to(p.dtype)
                return loss1
            for p, old in zip(params, saved):
                p.copy_(old)
                self.state[p].pop("velocity", None)        # a failed try restarts the momentum
            for group in self.param_groups:
                group["lr"] /= group["down"]
        for group in self.param_groups:
            group["last_tries"] = group0["max_retries"] + 1
            group["failed_tries"] += group0["max_retries"] + 1
        return loss0


_DEFAULTS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "sgd": (torch.optim.SGD, {}),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "adam": (torch.optim.Adam, {"betas": (0.9, 0.999), "eps": 1e-8}),
    "rmsprop": (torch.optim.RMSprop, {"alpha": 0.9, "eps": 1e-10}),
    "loss_based": (LossBasedGD, {}),
}
_ALIASES = {"gd": "sgd", "heavy_ball": "momentum", "rms_prop": "rmsprop"}


def available_optimizers() -> list[str]:
    """Optimizer names accepted by :func:`make_optimizer`."""
    return sorted(_DEFAULTS)


def make_optimizer(name: str, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], lr: float,
                   **kwargs: Any) -> torch.optim.Optimizer:
    """Build an optimizer by name.

    Parameters
    ----------
    name : {"sgd", "momentum", "nesterov", "adam", "rmsprop", "loss_based"}
        See the module docstring for the defaults each name sets.
    params : iterable of Tensor or of param-group dicts
        What to optimize, e.g. ``model.parameters()`` or ``head.parameters()``.
    lr : float
        Learning rate, > 0.
    **kwargs
        Passed to the torch optimizer and override the defaults (``momentum=0.99``,
        ``betas=(0.9, 0.99)``, ``weight_decay=1e-4``, ...).

    Returns
    -------
    optimizer : torch.optim.Optimizer

    Raises
    ------
    ValueError
        Unknown name (with suggestions), ``lr <= 0``, or no parameters to optimize.
    """
    if not isinstance(name, str):
        raise TypeError(f"Optimizer name must be a string, got {type(name).__name__}.")
    key = name.lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _DEFAULTS:
        close = difflib.get_close_matches(key, list(_DEFAULTS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown optimizer {name!r}.{hint} Available: {', '.join(available_optimizers())}.")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}.")
    params = list(params)
    if not params:
        raise ValueError(f"No parameters to optimize with {key!r}. Check that the model has trainable "
                         "parameters (requires_grad=True).")
    cls, defaults = _DEFAULTS[key]
    options = {"weight_decay": 0.0, **defaults, **kwargs}
    try:
        return cls(params, lr=float(lr), **options)
    except TypeError as exc:
        raise TypeError(f"Bad keyword for optimizer {key!r} ({cls.__name__}): {exc}") from exc
