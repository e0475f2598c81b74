"""What the runner plugs into the training loop, and the model view the analysis reads.

* :func:`analysis_view` - the module whose last ``nn.Linear`` is the layer to compare with the SVM.
  For every model but :class:`~nnboundary.models.AsymmetricMLP` that is the model itself. The
  asymmetric net's logits are ``head(h) + skip(x)``, linear in the joint features ``[h, x]``, so the
  view is ``Linear(D + d, 2)`` (a copy of ``joint_weight`` and the shared bias) applied to
  ``joint_features(x)``.
* :class:`SnapshotHook` - a :class:`~nnboundary.train.TrainCallback` that saves the model's weights at
  chosen steps for the snapshot figures. (The alignment curves come from
  :class:`~nnboundary.tracking.AlignmentTracker`, itself a ``TrainCallback``, with ``view=`` the
  :func:`analysis_view` below.)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from nnboundary.train import TrainCallback

__all__ = ["JointLinearView", "SnapshotHook", "analysis_view", "load_snapshot", "snapshot_steps"]


# ------------------------------------------------------------------------------------------- model views
class JointLinearView(nn.Module):
    """An :class:`~nnboundary.models.AsymmetricMLP` seen as one linear layer on ``[h, x]``.

    ``forward(x) = joint_head(model.joint_features(x))`` equals ``model(x)``; ``joint_head`` is a
    *copy* of the current joint weights (2, D + d) and bias (2,), so build a new view after each
    update.

    Shape: x (N, d) -> joint features (N, D + d) -> logits (N, 2).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        W = model.joint_weight.detach()  # (2, D + d)
        self.joint_head = nn.Linear(W.shape[1], W.shape[0], device=W.device, dtype=W.dtype)
        with torch.no_grad():
            self.joint_head.weight.copy_(W)
            self.joint_head.bias.copy_(model.head.bias.detach())

    def forward(self, x: Tensor) -> Tensor:
        return self.joint_head(self.model.joint_features(x))


def analysis_view(model: nn.Module) -> tuple[nn.Module, str | None]:
    """``(module, head name)`` to hand to :func:`nnboundary.analyze` for ``model`` as it is now."""
    if hasattr(model, "joint_features") and hasattr(model, "joint_weight"):
        return JointLinearView(model), "joint_head"
    return model, None


# ------------------------------------------------------------------------------------------- callbacks
class SnapshotHook(TrainCallback):
    """Save ``model.state_dict()`` at the given steps to ``directory/step_<step>.pt`` (atomically).

    Step 0 is the initialisation (saved when training starts from scratch). Files already on disk
    stay there, so a resumed run keeps the snapshots taken before the interruption.
    """

    state_key = "snapshots"

    def __init__(self, directory: str | os.PathLike[str], steps: Iterable[int]) -> None:
        self.directory = Path(directory)
        self.steps = frozenset(int(s) for s in steps)

    def on_start(self, step: int, model: nn.Module, *, total_steps: int | None = None) -> None:
        if step == 0 and 0 in self.steps:
            self._save(0, model)

    def wants(self, step: int) -> bool:
        return step in self.steps

    def on_step(self, step: int, model: nn.Module, *, loss: float, accuracy: float) -> None:
        self._save(step, model)

    def _save(self, step: int, model: nn.Module) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"step_{step:09d}.pt"
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save({k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}, tmp)
        os.replace(tmp, path)


def snapshot_steps(directory: str | os.PathLike[str]) -> list[int]:
    """Steps of the snapshots saved in ``directory``, sorted."""
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted(int(p.stem.split("_")[1]) for p in d.glob("step_*.pt"))


def load_snapshot(model: nn.Module, directory: str | os.PathLike[str], step: int) -> nn.Module:
    """Load the snapshot of ``step`` into ``model`` (in place) and return it."""
    state = torch.load(Path(directory) / f"step_{step:09d}.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model
