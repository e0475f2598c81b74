"""Training to the limit: stop at a target loss (reported, resumable), the loss-based step size with its warm-up,
and the float64 logit-gap cross-entropy where the usual one rounds to zero."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnboundary.train import TrainCallback, fit, make_optimizer
from nnboundary.train.losses import stable_cross_entropy


def _blobs(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    return (2.0 * y - 1).unsqueeze(1) * torch.tensor([[3.0, 0.0]]) + 0.3 * torch.randn(n, 2, generator=g), y


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))


_LB = dict(optimizer="loss_based", lr=0.1, dtype="float64", progress=False, log_every=1)


class _LastStep(TrainCallback):
    """Like the AlignmentTracker: wants only the budget's last step; records what it saw."""

    def __init__(self) -> None:
        self.total, self.seen, self.end = None, [], None

    def on_start(self, step, model, *, total_steps):
        self.total = total_steps

    def wants(self, step):
        return step == self.total

    def on_step(self, step, model, *, loss, accuracy):
        self.seen.append(step)

    def on_end(self, step, model, *, result):
        self.end = step


def _same(a: nn.Module, b: nn.Module) -> None:
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k


def test_stops_at_the_target_and_says_so_and_the_last_step_reaches_the_callbacks() -> None:
    X, y = _blobs()
    cb = _LastStep()
    result = fit(_mlp(), X, y, steps=500, target_loss=1e-12, callbacks=[cb], **_LB)
    assert result.stop_reason == "target_loss" and result.budget_steps == 500
    assert result.steps < 500 and result.final_loss <= 1e-12 and result.stop_loss <= 1e-12
    assert result.history[-1][0] == result.steps                 # the stopping step is in the history
    assert cb.seen == [result.steps] and cb.end == result.steps
    assert result.settings["target_loss"] == 1e-12


def test_budget_is_the_deterministic_limit() -> None:
    X, y = _blobs()
    a = fit(_mlp(), X, y, steps=7, target_loss=1e-300, **_LB)
    b = fit(_mlp(), X, y, steps=7, target_loss=1e-300, **_LB)
    assert a.stop_reason == "budget" and a.steps == a.budget_steps == 7 and a.final_loss > 1e-300
    assert a.final_loss == b.final_loss


def test_minibatch_target_is_checked_on_the_whole_training_set_after_each_epoch() -> None:
    X, y = _blobs()
    result = fit(_mlp(), X, y, steps=2000, batch_size=10, optimizer="adam", lr=0.05, target_loss=1e-3,
                 progress=False, dtype="float64")
    assert result.stop_reason == "target_loss" and result.steps % 4 == 0 and result.final_loss <= 1e-3


def test_wall_clock_cap_is_reported_as_not_reproducible() -> None:
    X, y = _blobs()
    with pytest.warns(RuntimeWarning, match="not reproducible"):
        result = fit(_mlp(), X, y, steps=50, max_wall_s=0.0, **_LB)
    assert result.stop_reason == "wall_clock" and result.steps == 1


def test_target_loss_is_refused_with_a_dataloader_and_checked() -> None:
    X, y = _blobs()
    with pytest.raises(ValueError, match="DataLoader"):
        fit(_mlp(), DataLoader(TensorDataset(X, y), batch_size=8), steps=3, lr=0.1, target_loss=1e-3, progress=False)
    with pytest.raises(ValueError, match="target_loss"):
        fit(_mlp(), X, y, steps=3, lr=0.1, target_loss=-1.0)


def test_resume_after_an_early_stop_changes_nothing_and_an_interrupted_run_stops_at_the_same_step(tmp_path) -> None:
    X, y = _blobs()
    kw = dict(steps=500, target_loss=1e-12, **_LB)
    ref = _mlp()
    done = fit(ref, X, y, checkpoint_dir=tmp_path / "a", **kw)
    again = _mlp(seed=3)
    resumed = fit(again, X, y, checkpoint_dir=tmp_path / "a", resume=True, **kw)
    assert resumed.stop_reason == "target_loss" and resumed.steps == done.steps == resumed.start_step
    _same(ref, again)
    fit(_mlp(), X, y, checkpoint_dir=tmp_path / "b", **{**kw, "steps": 5})       # interrupted: budget 5
    later = _mlp(seed=4)
    cont = fit(later, X, y, checkpoint_dir=tmp_path / "b", resume=True, **kw)
    assert cont.stop_reason == "target_loss" and cont.steps == done.steps and cont.start_step == 5
    _same(ref, later)


def test_loss_based_gd_reaches_1e_12_in_float64_in_few_steps_monotonically() -> None:
    X, y = _blobs()
    result = fit(_mlp(), X, y, steps=60, target_loss=1e-12, **_LB)
    losses = [loss for _, loss, _ in result.history]
    assert result.stop_reason == "target_loss" and result.steps < 60
    assert all(b < a for a, b in zip(losses, losses[1:]))


def test_warmup_runs_adam_until_the_switch_loss_then_stays_loss_based_and_resumes_exactly(tmp_path) -> None:
    X, y = _blobs()
    kw = dict(_LB, optimizer_kwargs={"warmup": "adam", "warmup_lr": 0.01, "switch_loss": 0.3}, log_every=1)
    model = _mlp()
    w0 = [p.detach().clone() for p in model.parameters()]
    opt = make_optimizer("loss_based", model.double().parameters(), lr=0.1, warmup="adam", warmup_lr=0.01,
                         switch_loss=0.3)
    X64 = X.double()
    loss = F.cross_entropy(model(X64), y)
    loss.backward()
    opt.step(lambda: F.cross_entropy(model(X64), y))
    adam_model = _mlp().double()
    adam = torch.optim.Adam(adam_model.parameters(), lr=0.01)
    F.cross_entropy(adam_model(X64), y).backward()
    adam.step()
    _same(model, adam_model)                                   # the first step is exactly Adam's
    assert opt.param_groups[0]["phase"] == "warmup" and w0
    result = fit(_mlp(), X, y, steps=300, target_loss=1e-12, **kw)
    losses = [loss for _, loss, _ in result.history]
    switch = next(i for i, v in enumerate(losses) if v <= 0.3)
    assert result.stop_reason == "target_loss"
    assert all(b < a for a, b in zip(losses[switch:], losses[switch + 1:]))   # loss-based: every step lowers it
    ref = _mlp()
    fit(ref, X, y, steps=40, **kw)
    fit(_mlp(), X, y, steps=3, checkpoint_dir=tmp_path, **kw)               # still in the Adam warm-up
    resumed = _mlp(seed=5)
    fit(resumed, X, y, steps=40, checkpoint_dir=tmp_path, resume=True, **kw)
    _same(ref, resumed)


def test_loss_based_gd_rejects_an_unknown_warmup() -> None:
    with pytest.raises(ValueError, match="warmup"):
        make_optimizer("loss_based", [nn.Parameter(torch.zeros(1))], lr=0.1, warmup="sgd")


def test_stable_cross_entropy_equals_torch_where_exact_and_stays_positive_where_torch_rounds_to_zero() -> None:
    g = torch.Generator().manual_seed(0)
    z = (3 * torch.randn(200, 4, generator=g)).double()
    y = torch.randint(0, 4, (200,), generator=g)
    ours, theirs = stable_cross_entropy(z, y, "none"), F.cross_entropy(z, y, reduction="none")
    # torch's form, logsumexp(z) - z_y, loses ~eps * |z| / loss to cancellation: it is exact to 1e-12 above 1e-3
    exact = theirs >= 1e-3
    assert exact.sum() > 150 and torch.allclose(ours[exact], theirs[exact], rtol=1e-12, atol=0)
    assert torch.allclose(stable_cross_entropy(z, y), F.cross_entropy(z, y), rtol=1e-12)
    gaps = torch.tensor([40.0, 100.0, 700.0], dtype=torch.float64)      # true logit ahead by these gaps
    zz = torch.stack([gaps, torch.zeros(3, dtype=torch.float64)], dim=1).requires_grad_(True)
    yy = torch.zeros(3, dtype=torch.long)
    ours = stable_cross_entropy(zz, yy, "none")
    assert torch.all(F.cross_entropy(zz, yy, reduction="none") == 0)   # 1 + tiny == 1 in the usual form
    assert torch.allclose(ours, torch.exp(-gaps), rtol=1e-12)          # log1p(e^-g) = e^-g to 1e-300
    ours.sum().backward()
    assert torch.all(zz.grad[:, 0] < 0) and torch.all(zz.grad[:, 1] > 0)
    assert torch.allclose(zz.grad[:, 1], torch.exp(-gaps), rtol=1e-12)


def test_loss_based_momentum_is_monotone_restarts_on_failure_and_resumes_exactly(tmp_path) -> None:
    X, y = _blobs()
    kw = dict(_LB, optimizer_kwargs={"momentum": 0.98})
    result = fit(_mlp(), X, y, steps=200, target_loss=1e-12, **kw)
    losses = [loss for _, loss, _ in result.history]
    assert result.stop_reason == "target_loss" and all(b < a for a, b in zip(losses, losses[1:]))
    ref = _mlp()
    fit(ref, X, y, steps=30, **kw)
    fit(_mlp(), X, y, steps=11, checkpoint_dir=tmp_path, **kw)
    resumed = _mlp(seed=6)
    fit(resumed, X, y, steps=30, checkpoint_dir=tmp_path, resume=True, **kw)   # the velocity is in the checkpoint
    _same(ref, resumed)
    w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = make_optimizer("loss_based", [w], lr=100.0, momentum=0.9)
    loss = lambda: (w ** 2).sum()                            # noqa: E731
    loss().backward()
    opt.step(loss)                                           # fails 7 times (see the test without momentum) ...
    assert opt.param_groups[0]["failed_tries"] == 7 and opt.param_groups[0]["last_tries"] == 8
    assert "velocity" in opt.state[w]                        # ... and keeps the successful direction
    with pytest.raises(ValueError, match="momentum"):
        make_optimizer("loss_based", [w], lr=0.1, momentum=1.0)
