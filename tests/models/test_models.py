"""Tests of nnboundary.models: shapes, the head/features convention, inits, seeding, dead units, registry."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from nnboundary.models import (
    ACTIVATIONS,
    MLP,
    AsymmetricMLP,
    ConvMLP,
    DenseNet,
    MaskedLinear,
    ResNetMNIST,
    build_model,
    dead_units,
    list_models,
    make_activation,
)
from nnboundary.models._init import TRUNCATED_STD_FACTOR


TINY_STAGES = ((2, 8, 1), (4, 16, 1), (8, 32, 1))

# (id, factory(seed) -> model, input shape without N, transformed_dim D, n_classes K)
CASES: list[tuple[str, Callable[[int | None], nn.Module], tuple[int, ...], int, int]] = [
    ("mlp", lambda s: MLP(2, hidden=(16, 2), n_classes=2, seed=s), (2,), 2, 2),
    ("mlp_3class", lambda s: MLP(5, hidden=(8, 6, 3), activations="tanh", n_classes=3, seed=s), (5,), 3, 3),
    ("conv_mlp", lambda s: ConvMLP(2, fc_width=12, conv_channels=3, kernel_size=4, seed=s), (2,), 36, 2),
    ("asym_mlp", lambda s: AsymmetricMLP(2, hidden=(10, 8), split=5, seed=s), (2,), 8, 2),
    (
        "resnet_1ch_28",
        lambda s: ResNetMNIST(2, in_channels=1, width=8, stages=TINY_STAGES, fc_width=16, seed=s),
        (1, 28, 28), 2, 2,
    ),
    (
        "resnet_3ch_32",
        lambda s: ResNetMNIST(3, in_channels=3, width=8, stages=TINY_STAGES, fc_width=None, transformed_dim=4,
                              init="kaiming", seed=s),
        (3, 32, 32), 4, 3,
    ),
    (
        "resnet_tflearn",
        lambda s: ResNetMNIST(2, width=8, stages=TINY_STAGES, fc_width=16, variant="tflearn", seed=s),
        (1, 28, 28), 2, 2,
    ),
    (
        "densenet_1ch_28",
        lambda s: DenseNet(depth=7, growth_rate=4, in_channels=1, n_classes=3, seed=s),
        (1, 28, 28), 2, 3,
    ),
    (
        "densenet_3ch_32",
        lambda s: DenseNet(depth=10, growth_rate=4, in_channels=3, compression=0.5, init="torch", seed=s),
        (3, 32, 32), 2, 2,
    ),
    (
        "densenet_pool4",
        lambda s: DenseNet(depth=7, growth_rate=4, in_channels=3, final_pool=4, input_size=32, transformed_dim=3,
                           seed=s),
        (3, 32, 32), 3, 2,
    ),
]
IDS = [c[0] for c in CASES]
BN_CASES = [c for c in CASES if c[0].startswith(("resnet_1", "resnet_3", "densenet"))]


def _assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    # torch.allclose, not torch.testing.assert_close: the latter costs seconds of imports on first use
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert torch.allclose(actual, expected, rtol=1e-5, atol=1e-6), (actual - expected).abs().max()


def _inputs(shape: tuple[int, ...], n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _alive_model(factory: Callable[[int | None], nn.Module], x: torch.Tensor) -> nn.Module:
    """The model of the first seed whose transformed units are all non-zero on x, in train and eval mode.

    A 2-unit ReLU transformed layer is often born with a dead unit (that is what ``dead_units`` is for,
    and it depends on the BN mode); a dead layer blocks every gradient below it.
    """
    for seed in range(50):
        model = factory(seed)
        if not any(dead_units(model.train(mode).features(x), criterion="zero").any() for mode in (True, False)):
            return factory(seed)  # fresh copy: the probe above moved the BN running statistics
    raise AssertionError("no seed in 0..49 gives a model without dead units")


# ---------------------------------------------------------------------------------------------------
# The head / features convention, for every model
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, factory, shape, D, K", CASES, ids=IDS)
def test_output_and_feature_shapes(name, factory, shape, D, K):
    model = factory(0)
    x = _inputs(shape)
    assert model(x).shape == (6, K)
    assert model.features(x).shape == (6, D)
    assert model.transformed_dim == D and model.n_classes == K
    assert isinstance(model.head, nn.Linear) and model.head.in_features == D and model.head.out_features == K


@pytest.mark.parametrize("name, factory, shape, D, K", CASES, ids=IDS)
def test_features_equal_head_input(name, factory, shape, D, K):
    x = _inputs(shape)
    model = _alive_model(factory, x).eval()  # non-zero features, so the comparison has teeth
    seen: list[torch.Tensor] = []
    handle = model.head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    try:
        model(x)
    finally:
        handle.remove()
    assert len(seen) == 1
    assert torch.equal(model.features(x), seen[0])


@pytest.mark.parametrize("name, factory, shape, D, K", CASES, ids=IDS)
def test_head_is_last_linear_and_last_module_applied(name, factory, shape, D, K):
    model = factory(0).eval()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears[-1] is model.head
    called: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda m, _a, _o: called.append(m)) for m in model.modules() if m is not model]
    try:
        model(_inputs(shape))
    finally:
        for h in handles:
            h.remove()
    leaves = [m for m in called if not list(m.children())]
    assert leaves[-1] is model.head


LINEAR_TRANSFORM_CASES = [c for c in CASES if c[0] != "conv_mlp"]  # ConvMLP's last hidden layer is a conv


@pytest.mark.parametrize(
    "name, factory, shape, D, K", LINEAR_TRANSFORM_CASES, ids=[c[0] for c in LINEAR_TRANSFORM_CASES]
)
def test_head_follows_the_transformed_layer(name, factory, shape, D, K):
    """The last Linear of the body produces the D-dim transformed space the head reads."""
    model = factory(0)
    body_linears = [m for m in model.body.modules() if isinstance(m, nn.Linear)]
    assert body_linears[-1].out_features == D == model.head.in_features


def test_conv_mlp_transformed_space_is_flattened_convolution():
    model = ConvMLP(3, fc_width=7, conv_channels=5, kernel_size=10, seed=0)  # even kernel: asymmetric 'SAME'
    assert model.transformed_dim == 5 * 7
    h = model.features(_inputs((3,)))
    assert h.shape == (6, 35) and (h >= 0).all()  # ReLU after the convolution


@pytest.mark.parametrize("name, factory, shape, D, K", CASES, ids=IDS)
def test_gradient_reaches_every_parameter(name, factory, shape, D, K):
    x = _inputs(shape, n=8)
    model = _alive_model(factory, x).train()
    loss = nn.functional.cross_entropy(model(x), torch.arange(8) % K)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"no gradient reaches {pname}"


# ---------------------------------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, factory, shape, D, K", CASES, ids=IDS)
def test_same_seed_bit_identical_and_global_rng_untouched(name, factory, shape, D, K):
    state = torch.get_rng_state()
    a, b, c = factory(7), factory(7), factory(8)
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())


def test_unseeded_construction_uses_global_rng():
    torch.manual_seed(3)
    a = MLP(2, hidden=(8, 2))
    torch.manual_seed(3)
    b = MLP(2, hidden=(8, 2))
    c = MLP(2, hidden=(8, 2))
    assert torch.equal(a.body.fc1.weight, b.body.fc1.weight)
    assert not torch.equal(b.body.fc1.weight, c.body.fc1.weight)


def test_seed_must_be_int():
    with pytest.raises(TypeError, match="seed"):
        MLP(2, hidden=(4,), seed=1.5)


# ---------------------------------------------------------------------------------------------------
# BatchNorm in train and eval mode
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, factory, shape, D, K", BN_CASES, ids=[c[0] for c in BN_CASES])
def test_batchnorm_train_and_eval(name, factory, shape, D, K):
    x = _inputs(shape, n=5)
    model = _alive_model(factory, x)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.running_mean.clone()
    model.train()
    out_train = model(x)
    assert out_train.shape == (5, K) and not torch.equal(bn.running_mean, before)  # stats were updated
    model.eval()
    out_eval = model(x)
    # eval: each sample's output is independent of the rest of the batch
    _assert_close(model(x[:2]), out_eval[:2])
    assert not torch.allclose(out_eval, out_train)


def test_tflearn_variant_reproduces_frozen_batchnorm():
    """The original never switched tflearn's BN to training mode: train() and eval() give the same output."""
    model = ResNetMNIST(width=8, stages=TINY_STAGES, fc_width=16, variant="tflearn", seed=0)
    x = _inputs((1, 28, 28), n=4)
    out_train = model.train()(x)
    out_eval = model.eval()(x)
    _assert_close(out_train, out_eval)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
            assert torch.equal(m.running_var, torch.ones_like(m.running_var))


# ---------------------------------------------------------------------------------------------------
# Fidelity to the original architectures (numbers derived in original_code.md §2.4/2.5 from checkpoints)
# ---------------------------------------------------------------------------------------------------
def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_tflearn_resnet_has_the_checkpoint_parameter_count():
    model = ResNetMNIST(n_classes=2, in_channels=1, variant="tflearn", init="torch", seed=0)
    assert _n_params(model) == 321_824
    blocks = list(model.body.stages)
    assert len(blocks) == 9
    assert [b.has_skip for b in blocks] == [False] * 3 + [True, False, False, True, False, False]


def test_preact_resnet_default_shapes_and_skips():
    model = ResNetMNIST(seed=0)
    blocks = list(model.body.stages)
    assert len(blocks) == 9
    # projection exactly where the shape changes: first block of stages 2 and 3
    assert [b.shortcut is not None for b in blocks] == [False] * 3 + [True, False, False, True, False, False]
    assert model.body.fc[0].in_features == 256 and model.body.fc[0].out_features == 200
    x = _inputs((1, 28, 28), n=2)
    assert model.body.stages(model.body.stem(x)).shape == (2, 256, 7, 7)


@pytest.mark.parametrize(
    "in_channels, n_classes, size, n_params", [(3, 2, 32, 1_018_824), (1, 3, 28, 1_015_851)]
)
def test_densenet40_has_the_checkpoint_parameter_count(in_channels, n_classes, size, n_params):
    model = DenseNet(depth=40, growth_rate=12, in_channels=in_channels, n_classes=n_classes,
                     final_pool=4, input_size=size, init="torch", seed=0)
    assert model.layers_per_block == 12
    assert model.body.final[0].num_features == 448
    assert _n_params(model) == n_params


# ---------------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------------
REFERENCE_ACTIVATIONS = {
    "relu": lambda t: t.clamp(min=0),
    "leaky_relu": lambda t: torch.where(t > 0, t, 0.1 * t),
    "selu": lambda t: 1.0507009873554805 * torch.where(t > 0, t, 1.6732632423543772 * (torch.exp(t) - 1)),
    "tanh": lambda t: (torch.exp(t) - torch.exp(-t)) / (torch.exp(t) + torch.exp(-t)),
    "softsign": lambda t: t / (1 + t.abs()),
    "square": lambda t: t**2,
    "sigmoid": lambda t: 1 / (1 + torch.exp(-t)),
    "identity": lambda t: t,
}


def test_reference_covers_all_activations():
    assert set(REFERENCE_ACTIVATIONS) == set(ACTIVATIONS)


@pytest.mark.parametrize("act", sorted(REFERENCE_ACTIVATIONS))
def test_activation_values(act):
    t = torch.linspace(-3, 3, 13, dtype=torch.float64)
    _assert_close(make_activation(act)(t), REFERENCE_ACTIVATIONS[act](t))


@pytest.mark.parametrize("act", sorted(REFERENCE_ACTIVATIONS))
def test_mlp_applies_the_activation_to_every_hidden_layer(act):
    model = MLP(3, hidden=(5, 2), activations=act, seed=0).double()
    x = _inputs((3,)).double()
    f = REFERENCE_ACTIVATIONS[act]
    h1 = f(x @ model.body.fc1.weight.T + model.body.fc1.bias)
    h2 = f(h1 @ model.body.fc2.weight.T + model.body.fc2.bias)
    _assert_close(model.features(x), h2)
    _assert_close(model(x), h2 @ model.head.weight.T + model.head.bias)


def test_per_layer_activations():
    model = MLP(2, hidden=(4, 3, 2), activations=["square", "tanh", "softsign"], seed=0)
    assert [type(model.body[i]).__name__ for i in (1, 3, 5)] == ["Square", "Tanh", "Softsign"]


def test_mlp_without_hidden_layers_is_linear():
    model = MLP(4, hidden=(), n_classes=3, seed=0)
    x = _inputs((4,))
    _assert_close(model.features(x), x)
    assert model.transformed_dim == 4


# ---------------------------------------------------------------------------------------------------
# Init schemes
# ---------------------------------------------------------------------------------------------------
def test_original_mlp_init_matches_tf_truncated_normal():
    model = MLP(2, hidden=(2000, 2000), seed=0)
    w = model.body.fc2.weight.detach().double()  # 4e6 draws: the std is known to ~0.05 %
    # TF truncated_normal(stddev=0.01) redraws outside ±2σ, so the realised std is 0.01 · 0.8796
    assert w.std().item() == pytest.approx(0.01 * TRUNCATED_STD_FACTOR, rel=5e-3)
    assert w.abs().max().item() <= 0.02 and w.mean().abs().item() < 1e-4
    for lin in (model.body.fc1, model.body.fc2, model.head):
        assert torch.all(lin.bias == 0.1)
        assert lin.weight.abs().max().item() <= 0.02


def test_truncated_std_factor_is_the_truncated_normal_std():
    phi2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
    big_phi = 0.5 * (1 + math.erf(2 / math.sqrt(2)))
    assert TRUNCATED_STD_FACTOR == pytest.approx(math.sqrt(1 - 4 * phi2 / (2 * big_phi - 1)), rel=1e-12)


def test_torch_and_kaiming_inits():
    torch_model = MLP(2, hidden=(400, 300), init="torch", seed=0)
    w = torch_model.body.fc2.weight
    bound = 1 / math.sqrt(400)
    assert w.abs().max().item() <= bound and w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert torch_model.body.fc2.bias.abs().max().item() <= bound
    he = MLP(2, hidden=(400, 300), init="kaiming", seed=0)
    assert he.body.fc2.weight.std().item() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    assert torch.all(he.body.fc2.bias == 0)


def test_original_conv_net_inits():
    resnet = ResNetMNIST(width=8, stages=TINY_STAGES, fc_width=16, seed=0)
    assert torch.all(resnet.head.bias == 0.01) and resnet.head.weight.abs().max().item() <= 0.1
    assert torch.all(resnet.body.fc[0].bias == 0) and resnet.body.fc[0].weight.abs().max().item() <= 0.04
    stem = resnet.body.stem[0].weight
    assert stem.abs().max().item() <= math.sqrt(3 / 9)  # uniform_scaling, fan_in = 3·3·1
    dense = DenseNet(depth=7, growth_rate=4, in_channels=1, seed=0)
    lin = dense.body.transform[0]
    assert torch.all(lin.bias == 0.01) and lin.weight.abs().max().item() <= math.sqrt(3 / lin.in_features)


def test_reset_parameters_with_generator_is_reproducible():
    model = DenseNet(depth=7, growth_rate=4, in_channels=1, seed=0)
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_parameters(torch.Generator().manual_seed(0))
    assert all(torch.equal(ref[k], v) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------------------------------------
# Asymmetric network
# ---------------------------------------------------------------------------------------------------
def test_asymmetric_logits_are_head_of_features_plus_skip():
    model = AsymmetricMLP(3, hidden=(12, 10), split=6, seed=0)
    x = _inputs((3,))
    h = model.features(x)
    _assert_close(model(x), model.head(h) + model.skip(x))
    # the exact linear last-layer view on [h, x]
    joint = model.joint_features(x)
    assert joint.shape == (6, 13)
    _assert_close(model(x), joint @ model.joint_weight.T + model.head.bias)
    # class 0 reads h[:, :6] only, class 1 reads h[:, 6:] and x
    W = model.joint_weight
    assert torch.all(W[0, 6:] == 0) and torch.all(W[1, :6] == 0)
    assert torch.all(W[0, :6] != 0) and torch.all(W[1, 6:] != 0)


def test_asymmetric_mask_survives_training_with_weight_decay():
    model = AsymmetricMLP(2, hidden=(8, 6), split=2, seed=0)
    x, y = _inputs((2,)), torch.tensor([0, 1, 0, 1, 0, 1])
    for _ in range(3):  # SGD with L2 weight decay, written out (torch.optim's first step imports for seconds)
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        assert torch.all(model.head.weight.grad[~model.head.mask] == 0)
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * (p.grad + 0.1 * p)
    assert torch.all(model.head.weight[0, 2:] == 0) and torch.all(model.head.weight[1, :2] == 0)
    assert torch.all(model.skip.weight[0] == 0) and torch.all(model.skip.weight[1] != 0)
    assert torch.all(model.head.weight[0, :2] != 0) and torch.all(model.head.weight[1, 2:] != 0)


def test_asymmetric_split_validated():
    with pytest.raises(ValueError, match="split"):
        AsymmetricMLP(2, hidden=(8, 6), split=6)


def test_masked_linear_rejects_wrong_mask_shape():
    with pytest.raises(ValueError, match="mask has shape"):
        MaskedLinear(3, 2, torch.ones(3, 2, dtype=torch.bool))


# ---------------------------------------------------------------------------------------------------
# Dead units
# ---------------------------------------------------------------------------------------------------
def _model_with_dead_unit() -> MLP:
    model = MLP(2, hidden=(3,), seed=0)
    with torch.no_grad():
        model.body.fc1.weight[1] = 0.0
        model.body.fc1.bias[1] = -1.0  # ReLU(-1) = 0 for every input: unit 1 is dead
        model.body.fc1.weight[[0, 2]] = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        model.body.fc1.bias[[0, 2]] = 5.0  # units 0 and 2 stay alive (and vary) on N(0, 1) inputs
    return model


def test_dead_units_on_a_model():
    model = _model_with_dead_unit().train()
    x = _inputs((2,), n=50)
    dead = dead_units(model, x, batch_size=7)
    assert dead.dtype == bool and dead.tolist() == [False, True, False]
    assert model.training  # mode restored
    np.testing.assert_array_equal(dead_units(model.features(x).detach()), dead)


def test_dead_units_via_head_hook_when_model_has_no_features_method():
    class Plain(nn.Module):
        def __init__(self, inner: MLP) -> None:
            super().__init__()
            self.body, self.head = inner.body, inner.head

        def forward(self, x):
            return self.head(self.body(x))

    model = Plain(_model_with_dead_unit())
    assert dead_units(model, _inputs((2,), n=20).numpy(), batch_size=8).tolist() == [False, True, False]
    assert not model.head._forward_pre_hooks  # hook removed


def test_dead_units_criteria():
    H = np.array([[0.0, 5.0, 1.0, 1e-9], [0.0, 5.0, 2.0, -1e-9], [0.0, 5.0, 3.0, 0.0]])
    assert dead_units(H).tolist() == [True, True, False, False]
    assert dead_units(H, criterion="zero").tolist() == [True, False, False, False]
    assert dead_units(H, criterion="zero", atol=1e-8).tolist() == [True, False, False, True]
    assert dead_units(torch.tensor(H)).tolist() == [True, True, False, False]


def test_dead_units_errors():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        dead_units(np.zeros(3))
    with pytest.raises(ValueError, match="without inputs"):
        dead_units(MLP(2, hidden=(3,), seed=0))
    with pytest.raises(ValueError, match="criterion"):
        dead_units(np.zeros((2, 2)), criterion="dead")
    with pytest.raises(TypeError, match="features"):
        dead_units(nn.Linear(2, 2), torch.zeros(3, 2))


# ---------------------------------------------------------------------------------------------------
# Registry and input validation
# ---------------------------------------------------------------------------------------------------
def test_build_model_from_plain_dicts():
    assert list_models() == ["asym_mlp", "conv_mlp", "densenet", "mlp", "resnet_mnist"]
    configs = {
        "mlp": dict(in_features=2, hidden=[8, 2], activations="softsign", seed=0),
        "conv_mlp": dict(in_features=2, fc_width=6, conv_channels=2, seed=0),
        "asym_mlp": dict(in_features=2, hidden=[6, 4], split=2, seed=0),
        "resnet_mnist": dict(width=4, stages=[[2, 4, 1], [2, 8, 1]], fc_width=None, seed=0),
        "densenet": dict(depth=7, growth_rate=2, in_channels=1, seed=0),
    }
    for name, kwargs in configs.items():
        model = build_model(name, **kwargs)
        x = _inputs((1, 28, 28) if name in ("resnet_mnist", "densenet") else (2,), n=3)
        assert model(x).shape == (3, 2), name
    assert torch.equal(build_model("mlp", **configs["mlp"]).head.weight, MLP(2, (8, 2), "softsign", seed=0).head.weight)


def test_build_model_errors_help():
    with pytest.raises(ValueError, match="Did you mean 'mlp'"):
        build_model("mpl", in_features=2)
    with pytest.raises(TypeError, match="Accepted keywords"):
        build_model("mlp", in_features=2, widths=(3,))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MLP(2, hidden=(4,), activations="gelu"), "Unknown activation"),
        (lambda: MLP(2, hidden=(4, 2), activations=["relu"]), "1 activations for 2 hidden layers"),
        (lambda: MLP(2, hidden=(4,), init="xavier"), "Unknown init scheme"),
        (lambda: MLP(2, hidden=(4,), n_classes=1), "n_classes"),
        (lambda: MLP(0, hidden=(4,)), "in_features"),
        (lambda: DenseNet(depth=41), "depth must be"),
        (lambda: DenseNet(depth=7, compression=0.0), "compression"),
        (lambda: DenseNet(depth=7, final_pool=4), "input_size"),
        (lambda: DenseNet(depth=7, final_pool=16, input_size=28), "final_pool"),
        (lambda: ResNetMNIST(variant="v2"), "variant"),
        (lambda: ResNetMNIST(stages=[(4, 8)]), "bottleneck, out_channels, n_blocks"),
        (lambda: ResNetMNIST(width=4, stages=[(2, 7, 1)], variant="tflearn"), "even width change"),
    ],
)
def test_bad_arguments_raise_helpful_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
