"""Training: losses, optimizers, and a resumable, deterministic loop.

>>> from nnboundary.train import fit
>>> result = fit(model, X, y, loss="cross_entropy", optimizer="adam", lr=1e-4, steps=20_000,
...              checkpoint_dir="runs/blobs/ckpt")                                # doctest: +SKIP
>>> result.final_loss, result.history[-1]                                         # doctest: +SKIP

* :func:`make_loss` - cross-entropy (float64 logit-gap form, the default), plain CE, multi-class hinge,
  the original's one-vs-rest hinge, MSE / L1 on one-hot labels, softmax log loss, mean pairwise squared
  error.
* :func:`make_optimizer` - sgd, momentum (heavy ball 0.9), nesterov, adam, rmsprop; no weight decay.
* :class:`Trainer` / :func:`fit` - full batch, seeded minibatches or a DataLoader; log-spaced atomic
  checkpoints (tensors + JSON, no pickle) and bit-exact resume; head-only training with an optional head
  re-initialisation; settings in one frozen :class:`TrainConfig`; callbacks subclass :class:`TrainCallback`.

This package imports nothing from the modules to its right (models, features, tracking, ...).
"""

from .checkpoint import (CheckpointError, CheckpointExistsError, checkpoint_path, latest_checkpoint, list_checkpoints,
                         load_checkpoint, load_weights, save_checkpoint)
from .loop import TrainCallback, TrainConfig, Trainer, TrainResult, evaluate, fit
from .losses import (FLOAT64_LOSS_FLOOR, ClassificationLoss, MulticlassHinge, StableCrossEntropy, available_losses, make_loss,
                     stable_cross_entropy)
from .optim import available_optimizers, make_optimizer
from .schedule import log_schedule, resolve_schedule

__all__ = [
    "fit", "Trainer", "TrainConfig", "TrainResult", "TrainCallback", "evaluate",
    "FLOAT64_LOSS_FLOOR", "make_loss", "available_losses", "stable_cross_entropy", "ClassificationLoss", "StableCrossEntropy",
    "MulticlassHinge", "make_optimizer", "available_optimizers", "log_schedule", "resolve_schedule",
    "CheckpointError", "CheckpointExistsError", "checkpoint_path", "list_checkpoints", "latest_checkpoint", "save_checkpoint",
    "load_checkpoint", "load_weights",
]
