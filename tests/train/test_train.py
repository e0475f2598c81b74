"""Tests for nnboundary.train: losses, optimizers, schedules, checkpoints and the training loop."""

from __future__ import annotations

import dataclasses
import math
from itertools import combinations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnboundary.train import (CheckpointExistsError, TrainCallback, TrainConfig, Trainer, available_losses,
                              available_optimizers, fit, list_checkpoints, load_checkpoint,
                              load_weights, log_schedule, make_loss, make_optimizer, resolve_schedule,
                              save_checkpoint, stable_cross_entropy)



# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------
def _blobs(n: int = 60, seed: int = 0, k: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """k well separated Gaussian blobs in 2-D; X (n, 2) float32, y (n,) int64."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    centers = torch.stack([torch.cos(2 * math.pi * y / k), torch.sin(2 * math.pi * y / k)], dim=1) * 3
    return centers + 0.3 * torch.randn(n, 2, generator=g), y


class TinyNet(nn.Module):
    """features: Linear-BatchNorm-ReLU-Dropout-Linear-ReLU (D=2); head: Linear(2, K)."""

    def __init__(self, k: int = 2, seed: int = 0, batchnorm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        layers: list[nn.Module] = [nn.Linear(2, 16)]
        if batchnorm:
            layers.append(nn.BatchNorm1d(16))
        layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 2), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(2, k)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _mlp(seed: int = 0, k: int = 2) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, k))


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


# ------------------------------------------------------------------------------------------------
# losses
# ------------------------------------------------------------------------------------------------
def test_stable_ce_matches_cross_entropy_at_moderate_logits():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(20, 4, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 4, (20,), generator=g)
    for reduction in ("mean", "sum", "none"):
        torch.testing.assert_close(stable_cross_entropy(z, y, reduction), F.cross_entropy(z, y, reduction=reduction),
                                   rtol=1e-12, atol=1e-12)


def test_stable_ce_keeps_gradient_where_float32_ce_is_exactly_zero():
    z32 = torch.tensor([[80.0, 0.0], [0.0, 79.0]], requires_grad=True)
    y = torch.tensor([0, 1])
    plain = F.cross_entropy(z32, y)
    plain.backward()
    assert plain.item() == 0.0                       # float32 CE has underflowed to exactly 0
    assert z32.grad[0, 0] == 0 and z32.grad[1, 1] == 0   # and the true-class gradient vanished

    z = z32.detach().clone().requires_grad_(True)
    loss = make_loss("cross_entropy")(z, y)
    loss.backward()
    expected = (math.exp(-80) + math.exp(-79)) / 2   # log(1 + e^-g) = e^-g at this size
    assert loss.dtype == torch.float64
    assert loss.item() > 0 and math.isclose(loss.item(), expected, rel_tol=1e-6)
    grad = z.grad
    assert torch.isfinite(grad).all() and (grad != 0).all()
    assert grad[0, 0] < 0 and grad[0, 1] > 0           # pushes the true logit up, the other down
    assert math.isclose(grad[0, 0].item(), -math.exp(-80) / 2, rel_tol=1e-5)
    torch.testing.assert_close(grad.sum(dim=1), torch.zeros(2), atol=1e-40, rtol=0)


def test_stable_ce_float64_logits_far_beyond_float32_range():
    z = torch.tensor([[300.0, 0.0, -5.0]], dtype=torch.float64, requires_grad=True)
    loss = stable_cross_entropy(z, torch.tensor([0]))
    loss.backward()
    assert math.isclose(loss.item(), math.exp(-300) + math.exp(-305), rel_tol=1e-9)
    assert z.grad[0, 0] < 0 and math.isclose(z.grad[0, 1].item(), math.exp(-300), rel_tol=1e-9)


def test_hinge_weston_watkins_equals_torch_multi_margin():
    g = torch.Generator().manual_seed(2)
    z, y = torch.randn(15, 3, generator=g), torch.randint(0, 3, (15,), generator=g)
    for p in (1, 2):
        loss = make_loss("hinge", multiclass="weston_watkins", margin=0.5, p=p)
        torch.testing.assert_close(loss(z, y), F.multi_margin_loss(z, y, p=p, margin=0.5))


def test_hinge_crammer_singer_uses_the_runner_up():
    z = torch.tensor([[2.0, 1.5, -1.0], [0.0, 3.0, 0.5], [5.0, 0.0, 0.0]])
    y = torch.tensor([0, 0, 0])
    # per sample: max(0, 1 + max_{k != y} z_k - z_y) = 0.5, 4.0, 0.0
    per = make_loss("hinge", reduction="none")(z, y)
    torch.testing.assert_close(per, torch.tensor([0.5, 4.0, 0.0]))


def test_hinge_ovr_is_the_original_per_unit_hinge():
    z = torch.tensor([[0.5, -2.0], [1.0, 3.0]])
    y = torch.tensor([0, 0])
    # unit signs (+1, -1): sample 0 -> (0.5, 0) ; sample 1 -> (0, 4) ; means 0.25, 2.0
    torch.testing.assert_close(make_loss("hinge_ovr", reduction="none")(z, y), torch.tensor([0.25, 2.0]))


def test_mse_and_l1_on_one_hot():
    g = torch.Generator().manual_seed(3)
    z, y = torch.randn(10, 3, generator=g), torch.randint(0, 3, (10,), generator=g)
    onehot = F.one_hot(y, 3).float()
    torch.testing.assert_close(make_loss("mse")(z, y), F.mse_loss(z, onehot))
    torch.testing.assert_close(make_loss("abd")(z, y), F.l1_loss(z, onehot))
    torch.testing.assert_close(make_loss("l1", reduction="sum")(z, y), F.l1_loss(z, onehot) * 3 * 10 / 3)


def test_log_loss_is_softmax_based_and_stable():
    g = torch.Generator().manual_seed(4)
    z, y = torch.randn(12, 3, generator=g, dtype=torch.float64), torch.randint(0, 3, (12,), generator=g)
    p, e = z.softmax(1), F.one_hot(y, 3).double()
    naive = (-(e * p.log() + (1 - e) * (1 - p).log())).mean()
    torch.testing.assert_close(make_loss("log_loss")(z, y), naive)
    z2 = torch.randn(12, 2, generator=g, dtype=torch.float64)        # K = 2: equals cross-entropy
    torch.testing.assert_close(make_loss("log_loss")(z2, y % 2), F.cross_entropy(z2, y % 2))
    extreme = torch.tensor([[500.0, -500.0, 0.0]], requires_grad=True)
    loss = make_loss("log_loss")(extreme, torch.tensor([0]))
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0 and torch.isfinite(extreme.grad).all()


def test_mpse_is_the_mean_over_class_pairs():
    g = torch.Generator().manual_seed(5)
    z, y = torch.randn(6, 4, generator=g), torch.randint(0, 4, (6,), generator=g)
    d = z - F.one_hot(y, 4).float()
    brute = torch.stack([torch.stack([(d[n, i] - d[n, j]) ** 2 for i, j in combinations(range(4), 2)]).mean()
                         for n in range(6)])
    loss = make_loss("mpse", reduction="none")
    torch.testing.assert_close(loss(z, y), brute)
    torch.testing.assert_close(loss(z + 7.0, y), brute, rtol=1e-4, atol=1e-4)   # shift invariant


@pytest.mark.parametrize("name", available_losses())
def test_every_loss_reduces_and_trains(name):
    z = torch.randn(8, 3, requires_grad=True)
    y = torch.arange(8) % 3
    mean, total = make_loss(name)(z, y), make_loss(name, reduction="sum")(z, y)
    assert mean.shape == () and make_loss(name, reduction="none")(z, y).shape == (8,)
    torch.testing.assert_close(total.double(), mean.double() * 8)
    X, yb = _blobs(30, k=3)
    result = fit(_mlp(k=3), X, yb, loss=name, optimizer="adam", lr=0.05, steps=40, progress=False)
    assert result.history[-1][1] < result.history[0][1]


def test_make_loss_errors():
    with pytest.raises(ValueError, match="cross_entropy"):
        make_loss("cross_entropyy")
    with pytest.raises(ValueError, match="reduction"):
        make_loss("mse", reduction="avg")
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        make_loss("cross_entropy")(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        make_loss("mse")(torch.zeros(4, 2), torch.zeros(4))


# ------------------------------------------------------------------------------------------------
# optimizers and schedules
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", available_optimizers())
def test_every_optimizer_builds_without_weight_decay_and_trains(name):
    opt = make_optimizer(name, _mlp().parameters(), lr=0.01)
    assert all(group.get("weight_decay", 0) == 0 for group in opt.param_groups)
    X, y = _blobs(30)
    result = fit(_mlp(), X, y, optimizer=name, lr=0.05, steps=30, progress=False)
    assert result.history[-1][1] < result.history[0][1]


def test_momentum_is_heavy_ball():
    w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = make_optimizer("momentum", [w], lr=0.1)
    assert opt.param_groups[0]["momentum"] == 0.9 and not opt.param_groups[0]["nesterov"]
    # loss = w^2 / 2, grad = w. TF1 Momentum: a <- 0.9 a + g ; w <- w - lr a
    a, expected = 0.0, 1.0
    for _ in range(3):
        opt.zero_grad()
        (w ** 2 / 2).sum().backward()
        opt.step()
        a = 0.9 * a + expected
        expected = expected - 0.1 * a
    assert math.isclose(w.item(), expected, rel_tol=1e-12)


def test_make_optimizer_errors():
    with pytest.raises(ValueError, match="adam"):
        make_optimizer("adma", _mlp().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        make_optimizer("sgd", _mlp().parameters(), lr=0.0)
    with pytest.raises(ValueError, match="No parameters"):
        make_optimizer("sgd", [], lr=0.1)


def test_schedules():
    assert log_schedule(120) == [1, 2, 5, 10, 20, 50, 100, 120]
    assert log_schedule(100) == [1, 2, 5, 10, 20, 50, 100]
    assert log_schedule(0) == []
    assert resolve_schedule(4, 10) == {4, 8, 10}
    assert resolve_schedule([0, 3, 11], 10) == {3}
    assert resolve_schedule(None, 10) == frozenset()
    with pytest.raises(ValueError):
        resolve_schedule("lin", 10)


# ------------------------------------------------------------------------------------------------
# the loop: learning, determinism, data inputs
# ------------------------------------------------------------------------------------------------
def test_loss_decreases_and_separable_problem_is_fit():
    X, y = _blobs(60)
    result = fit(_mlp(), X, y, optimizer="sgd", lr=0.5, steps=200, progress=False)
    losses = [loss for _, loss, _ in result.history]
    assert losses[-1] < 0.1 * losses[0]
    assert result.final_accuracy == 1.0 and result.final_on == "train_set"
    assert result.steps == 200 and result.history[-1][0] == 200
    assert result.settings["loss"] == "cross_entropy" and result.settings["n_samples"] == 60


def test_same_seed_gives_identical_weights_and_seed_changes_order():
    X, y = _blobs(50)

    def run(seed: int) -> dict:
        model = TinyNet(seed=0, dropout=0.2)
        torch.manual_seed(123)          # dropout uses the global RNG: the caller's job
        fit(model, X, y, optimizer="adam", lr=0.01, steps=25, batch_size=8, seed=seed, progress=False)
        return model.state_dict()

    first = run(0)
    _assert_same_state(first, run(0))
    assert not torch.equal(first["head.weight"], run(1)["head.weight"])


def test_minibatch_epochs_cover_each_sample_once():
    X, y = _blobs(10)
    seen: list[torch.Tensor] = []
    model = nn.Linear(2, 2)
    original = model.forward
    model.forward = lambda x: (seen.append(x.detach().clone()), original(x))[1]   # type: ignore[method-assign]
    result = fit(model, X, y, lr=0.1, epochs=2, batch_size=4, progress=False)
    assert result.steps == 6                           # ceil(10 / 4) = 3 steps per epoch
    batches = seen[:6]                                  # the final evaluation forward comes after
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    for epoch in (batches[:3], batches[3:]):
        rows = sorted(map(tuple, torch.cat(epoch).tolist()))
        assert rows == sorted(map(tuple, X.tolist()))


def test_dataset_and_dataloader_inputs_and_float64():
    X, y = _blobs(40)
    ds = TensorDataset(X, y)
    model = _mlp()
    result = fit(model, ds, lr=0.2, steps=30, batch_size=8, dtype="float64", progress=False)
    assert next(model.parameters()).dtype == torch.float64 and result.final_on == "train_set"
    loader = DataLoader(ds, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    result = fit(_mlp(), loader, lr=0.2, epochs=3, progress=False)
    assert result.steps == 3 * 3 and result.final_on == "last_batch"
    assert result.history[-1][1] < result.history[0][1]


def test_input_errors():
    X, y = _blobs(20)
    with pytest.raises(ValueError, match="N = len"):
        fit(_mlp(), X[:10], y, lr=0.1, steps=1, progress=False)
    with pytest.raises(ValueError, match="exactly one"):
        fit(_mlp(), X, y, lr=0.1, steps=1, epochs=1, progress=False)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        fit(_mlp(), X, y, lr=0.1, steps=1, resume=True, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        fit(_mlp(), X, y, lr=0.1, steps=1, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="y is missing"):
        fit(_mlp(), X, lr=0.1, steps=1, progress=False)


def test_nonfinite_loss_raises_with_advice():
    X, y = _blobs(20)
    nan_loss = lambda logits, labels: logits.sum() * float("nan")  # noqa: E731
    with pytest.raises(FloatingPointError, match="step 1"):
        fit(_mlp(), X, y, loss=nan_loss, lr=0.1, steps=5, progress=False)


def test_progress_bar_shows_loss(capsys):
    X, y = _blobs(20)
    fit(_mlp(), X, y, lr=0.1, steps=5, progress=True)
    err = capsys.readouterr().err
    assert "5/5" in err and "loss=" in err


# ------------------------------------------------------------------------------------------------
# checkpoints and resume
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [None, 8])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_is_bit_identical(tmp_path, batch_size, optimizer):
    X, y = _blobs(30)
    kw = dict(optimizer=optimizer, lr=0.05, batch_size=batch_size, seed=3, progress=False)

    def fresh() -> TinyNet:
        model = TinyNet(seed=0, dropout=0.1)
        torch.manual_seed(7)
        return model

    full = fresh()
    fit(full, X, y, steps=40, **kw)

    part = fresh()
    fit(part, X, y, steps=17, checkpoint_dir=tmp_path, **kw)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1, 2, 5, 10, 17]
    torch.manual_seed(999)              # resume must restore the global RNG (dropout) itself
    resumed = TinyNet(seed=5, dropout=0.1)
    result = fit(resumed, X, y, steps=40, checkpoint_dir=tmp_path, resume=True, **kw)
    assert result.start_step == 17 and result.steps == 40
    _assert_same_state(full.state_dict(), resumed.state_dict())


def test_resume_after_crash_mid_run(tmp_path):
    X, y = _blobs(30)
    kw = dict(optimizer="momentum", lr=0.05, batch_size=7, seed=1, progress=False, steps=40,
              checkpoint_dir=tmp_path)

    class Crash(TrainCallback):
        def on_step(self, step, model, *, loss, accuracy):
            if step == 25:
                raise KeyboardInterrupt

    full = _mlp()
    fit(full, X, y, **{**kw, "checkpoint_dir": None})
    with pytest.raises(KeyboardInterrupt):
        fit(_mlp(), X, y, callbacks=[Crash()], **kw)
    assert list_checkpoints(tmp_path)[-1][0] == 20
    resumed = _mlp(seed=9)
    fit(resumed, X, y, resume=True, **kw)
    _assert_same_state(full.state_dict(), resumed.state_dict())
    assert [s for s, _ in list_checkpoints(tmp_path)][-1] == 40


def test_resume_with_dataloader_is_bit_identical(tmp_path):
    X, y = _blobs(30)
    ds = TensorDataset(X, y)

    def loader() -> DataLoader:
        return DataLoader(ds, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(4))

    full = _mlp()
    fit(full, loader(), optimizer="adam", lr=0.05, steps=20, progress=False)
    fit(_mlp(), loader(), optimizer="adam", lr=0.05, steps=9, checkpoint_dir=tmp_path, progress=False)
    resumed = _mlp(seed=3)
    fit(resumed, loader(), optimizer="adam", lr=0.05, steps=20, checkpoint_dir=tmp_path, resume=True,
        progress=False)
    _assert_same_state(full.state_dict(), resumed.state_dict())


def test_refuses_to_overwrite_checkpoints(tmp_path):
    X, y = _blobs(20)
    fit(_mlp(), X, y, lr=0.1, steps=5, checkpoint_dir=tmp_path, progress=False)
    before = {p.name: p.read_bytes() for _, p in list_checkpoints(tmp_path)}
    with pytest.raises(CheckpointExistsError, match="resume=True"):
        fit(_mlp(), X, y, lr=0.1, steps=5, checkpoint_dir=tmp_path, progress=False)
    assert {p.name: p.read_bytes() for _, p in list_checkpoints(tmp_path)} == before


def test_resume_refuses_different_settings(tmp_path):
    X, y = _blobs(20)
    fit(_mlp(), X, y, lr=0.1, steps=5, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="lr=0.1"):
        fit(_mlp(), X, y, lr=0.2, steps=10, checkpoint_dir=tmp_path, resume=True, progress=False)


def test_checkpoint_contents_and_load_weights(tmp_path):
    X, y = _blobs(20)
    model = _mlp()
    result = fit(model, X, y, lr=0.1, steps=12, checkpoint_dir=tmp_path, checkpoint_schedule=4,
                 progress=False)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 8, 12]
    assert len(result.checkpoints) == 3
    payload = load_checkpoint(list_checkpoints(tmp_path)[-1][1])
    assert payload["step"] == 12 and {"model", "optimizer", "rng", "stream", "history"} <= payload.keys()
    snapshot = _mlp(seed=1)
    assert load_weights(snapshot, tmp_path, step=4) == 4
    assert not torch.equal(snapshot[0].weight, model[0].weight)
    assert load_weights(snapshot, tmp_path) == 12
    _assert_same_state(snapshot.state_dict(), model.state_dict())
    with pytest.raises(FileNotFoundError, match=r"\[4, 8, 12\]"):
        load_weights(snapshot, tmp_path, step=5)


def test_save_checkpoint_is_atomic(tmp_path):
    target = tmp_path / "step_0000000001.pt"
    with pytest.raises(Exception):
        save_checkpoint(target, {"format": 1, "bad": lambda: None})     # lambdas cannot be pickled
    assert list(tmp_path.iterdir()) == []


def test_keep_checkpoints(tmp_path):
    X, y = _blobs(20)
    fit(_mlp(), X, y, lr=0.1, steps=50, checkpoint_dir=tmp_path, keep_checkpoints=2, progress=False)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [20, 50]


# ------------------------------------------------------------------------------------------------
# head-only training
# ------------------------------------------------------------------------------------------------
def test_train_only_head_freezes_feature_map_params_and_buffers():
    X, y = _blobs(40)
    model = TinyNet(seed=0, batchnorm=True, dropout=0.3)
    model.train()
    before = {k: v.clone() for k, v in model.body.state_dict().items()}
    head_before = model.head.weight.detach().clone()
    seen = []

    class Probe(TrainCallback):
        def on_step(self, step, model, *, loss, accuracy):
            seen.append((all(not p.requires_grad for p in model.body.parameters()),
                         not model.body.training, model.head.training))

    fit(model, X, y, lr=0.1, steps=20, batch_size=10, train_only_head=True, callbacks=[Probe()],
        progress=False)
    _assert_same_state(before, model.body.state_dict())      # weights AND BatchNorm running stats
    assert not torch.equal(head_before, model.head.weight)
    assert seen and all(all(flags) for flags in seen)
    assert all(p.requires_grad for p in model.parameters()) and model.training   # restored afterwards


def test_reinit_head_uses_init_and_fresh_head_only_optimizer():
    X, y = _blobs(20)
    model = TinyNet(seed=0)
    used = {}

    def factory(params, lr):
        used["params"] = list(params)
        return torch.optim.SGD(used["params"], lr=lr)

    fit(model, X, y, lr=0.1, steps=0, train_only_head=True, reinit_head=lambda h: nn.init.zeros_(h.weight),
        optimizer=factory, progress=False)
    assert torch.equal(model.head.weight, torch.zeros_like(model.head.weight))
    assert {id(p) for p in used["params"]} == {id(p) for p in model.head.parameters()}

    w = model.head.weight.detach().clone()
    fit(model, X, y, lr=0.1, steps=0, reinit_head=True, head="head", progress=False)
    assert not torch.equal(w, model.head.weight)


def test_head_training_uses_the_one_head_discovery():
    """train finds the head with nnboundary.models.heads.find_head (tested in tests/models/test_heads.py)."""
    import nnboundary.train.loop as loop
    from nnboundary.models import heads
    assert loop.find_head is heads.find_head


# ------------------------------------------------------------------------------------------------
# callbacks
# ------------------------------------------------------------------------------------------------
def test_callbacks_contract_and_state(tmp_path):
    X, y = _blobs(20)

    class Recorder(TrainCallback):
        state_key = "recorder"

        def __init__(self):
            self.steps, self.ended, self.started = [], None, None

        def on_start(self, step, model, *, total_steps):
            self.started = (step, total_steps)

        def wants(self, step):
            return step % 3 == 0

        def on_step(self, step, model, *, loss, accuracy):
            assert isinstance(loss, float) and 0 <= accuracy <= 1
            self.steps.append(step)

        def on_end(self, step, model, *, result):
            self.ended = (step, result.final_loss)

        def state_dict(self):
            return {"steps": list(self.steps)}

        def load_state_dict(self, state):
            self.steps = list(state["steps"])

    class EndOnly(TrainCallback):        # does not override on_step: never asked per step
        def __init__(self):
            self.asked, self.ended = 0, False

        def wants(self, step):
            self.asked += 1
            return True

        def on_end(self, step, model, *, result):
            self.ended = True

    rec, end_only = Recorder(), EndOnly()
    result = fit(_mlp(), X, y, lr=0.1, steps=10, callbacks=[rec, end_only], checkpoint_dir=tmp_path,
                 progress=False)
    assert rec.steps == [3, 6, 9] and rec.ended == (10, result.final_loss) and rec.started == (0, 10)
    assert end_only.ended and end_only.asked == 0

    rec2 = Recorder()
    fit(_mlp(), X, y, lr=0.1, steps=13, callbacks=[rec2, EndOnly()], checkpoint_dir=tmp_path, resume=True,
        progress=False)
    assert rec2.steps == [3, 6, 9, 12] and rec2.started == (10, 13)   # state restored from the step-10 checkpoint

    class DuckTyped:                     # the old duck-typed protocol is refused, by name
        def on_step(self, step, model, **extra):
            pass

    with pytest.raises(TypeError, match="TrainCallback.*DuckTyped"):
        fit(_mlp(), X, y, lr=0.1, steps=1, callbacks=[DuckTyped()], progress=False)


def test_train_config_is_frozen_and_the_only_validator():
    config = TrainConfig(lr=0.1, steps=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0
    for bad, match in (({"lr": -1.0, "steps": 5}, "lr"), ({"lr": 0.1}, "exactly one"),
                       ({"lr": 0.1, "steps": 5, "batch_size": 0}, "batch_size"),
                       ({"lr": 0.1, "steps": 5, "resume": True}, "checkpoint_dir"),
                       ({"lr": 0.1, "steps": 5, "on_nonfinite": "ignore"}, "on_nonfinite")):
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)
        with pytest.raises(ValueError, match=match):     # fit builds the same config: same message
            fit(_mlp(), *_blobs(10), progress=False, **bad)
    with pytest.raises(TypeError, match="TrainConfig"):
        Trainer({"lr": 0.1, "steps": 5})
    with pytest.raises(TypeError, match="no_such_setting"):
        fit(_mlp(), *_blobs(10), lr=0.1, steps=1, no_such_setting=3)


# ------------------------------------------------------------------------------------------------
# loss-based step size (opt-in)
# ------------------------------------------------------------------------------------------------
def test_loss_based_gd_grows_alpha_keeps_loss_decreasing_and_resumes(tmp_path):
    X, y = _blobs(40)
    kw = dict(optimizer="loss_based", lr=0.1, progress=False, log_every=1)
    model = _mlp()
    result = fit(model, X, y, steps=30, **kw)
    losses = [loss for _, loss, _ in result.history]
    assert all(b <= a for a, b in zip(losses, losses[1:]))           # failed tries are rolled back
    assert losses[-1] < 1e-20 and result.final_accuracy == 1.0     # plain GD at lr 0.1: nowhere near
    fit(_mlp(), X, y, steps=12, checkpoint_dir=tmp_path, **kw)
    resumed = _mlp(seed=2)
    fit(resumed, X, y, steps=30, checkpoint_dir=tmp_path, resume=True, **kw)
    _assert_same_state(model.state_dict(), resumed.state_dict())


def test_loss_based_gd_trial_passes_leave_batchnorm_statistics_alone():
    """The line search's extra forward passes run in train mode; BatchNorm's running statistics must still see
    each step's batch once, however many tries a step took."""
    X, y = _blobs(40)

    def bn_net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))

    model = bn_net()
    fit(model, X, y, optimizer="loss_based", lr=100.0, steps=1, progress=False)  # lr 100: several failed tries
    reference = bn_net()
    reference.train()
    with torch.no_grad():
        reference(torch.as_tensor(X, dtype=torch.float32))  # the step's one train-mode pass
    bn, ref = model[1], reference[1]
    assert int(bn.num_batches_tracked) == 1
    torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(bn.running_var, ref.running_var, rtol=0, atol=1e-6)


def test_loss_based_gd_rolls_back_a_failed_step():
    w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = make_optimizer("loss_based", [w], lr=100.0)        # alpha / L * grad = 100: overshoots
    loss = lambda: (w ** 2).sum()                            # noqa: E731
    loss().backward()
    new_loss = opt.step(loss)
    # step = alpha / L0 * grad = 2 alpha: fails (|w| grows) until alpha = 100 / 2**7 < 1, then succeeds
    alpha = 100.0 / 2 ** 7
    assert math.isclose(w.item(), 1 - 2 * alpha, rel_tol=1e-12) and math.isclose(new_loss.item(), (1 - 2 * alpha) ** 2)
    assert math.isclose(opt.param_groups[0]["lr"], alpha * 1.1)   # grown after the success
    with pytest.raises(RuntimeError, match="closure"):
        opt.step()


def test_tracker_state_survives_resume_even_if_its_key_changes(tmp_path):
    X, y = _blobs(20)

    class KeyedTracker(TrainCallback):   # like AlignmentTracker: state_key names the head found on first use
        def __init__(self):
            self.head, self.steps = None, []

        @property
        def state_key(self):
            return f"Tracker{{head={self.head}}}"

        def on_step(self, step, model, *, loss, accuracy):
            self.head = "head"
            self.steps.append(step)

        def wants(self, step):
            return step % 4 == 0

        def state_dict(self):
            return {"steps": list(self.steps)}

        def load_state_dict(self, state):
            self.steps = list(state["steps"])

    fit(_mlp(), X, y, lr=0.1, steps=10, callbacks=[KeyedTracker()], checkpoint_dir=tmp_path, progress=False)
    tracker = KeyedTracker()
    fit(_mlp(), X, y, lr=0.1, steps=17, callbacks=[tracker], checkpoint_dir=tmp_path, resume=True,
        progress=False)
    assert tracker.steps == [4, 8, 12, 16]
