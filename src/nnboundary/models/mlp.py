"""Fully connected networks of the simulated-data experiments (``original_code.md`` §2.1–2.3).

Every classifier here follows the package convention::

    x (N, in_features) --body--> h = features(x) (N, D) --head: nn.Linear(D, K)--> logits (N, K)

``h`` is the *transformed space*: the output of the last hidden layer after its activation (D = 2 for
the paper's 2-D pictures). The one exception is :class:`AsymmetricMLP`, whose logits add a linear skip
from the raw input (documented there).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nnboundary.models._init import (
    check_init,
    init_generator,
    kaiming_,
    tf_truncated_normal_,
    torch_default_,
)

__all__ = [
    "ACTIVATIONS",
    "Square",
    "make_activation",
    "BodyHeadClassifier",
    "MaskedLinear",
    "MLP",
    "ConvMLP",
    "AsymmetricMLP",
]


# ---------------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------------
class Square(nn.Module):
    """Element-wise ``x ** 2`` (the "square" activation of the original experiments).

    Shape: any (N, *) -> same shape.
    """

    def forward(self, x: Tensor) -> Tensor:
        return x * x


#: Activation names accepted everywhere in :mod:`nnboundary.models`, mapped to module factories.
#: ``leaky_relu`` uses slope 0.1, the tflearn default used by the authors.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(negative_slope=0.1),
    "selu": nn.SELU,
    "tanh": nn.Tanh,
    "softsign": nn.Softsign,
    "square": Square,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module for ``name`` (one of :data:`ACTIVATIONS`).

    Raises
    ------
    ValueError
        If ``name`` is unknown; the message lists the valid names.
    """
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]()


# ---------------------------------------------------------------------------------------------------
# Small shared pieces
# ---------------------------------------------------------------------------------------------------
def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


def _check_n_classes(n_classes: object) -> int:
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(
            f"n_classes must be an int >= 2, got {n_classes!r}. A binary problem uses n_classes=2 "
            "(two logits, softmax cross-entropy), as in the original code."
        )
    return n_classes


def _activation_list(activations: str | Sequence[str], n_layers: int) -> list[str]:
    """Broadcast one activation name to ``n_layers`` or check a per-layer list's length."""
    names = [activations] * n_layers if isinstance(activations, str) else list(activations)
    if len(names) != n_layers:
        raise ValueError(
            f"Got {len(names)} activations for {n_layers} hidden layers; pass one name or one per "
            "hidden layer."
        )
    for a in names:
        make_activation(a)  # validates the name
    return names


class BodyHeadClassifier(nn.Module):
    """Base of the package's classifiers: ``logits = head(body(x))``.

    Subclasses set ``self.body`` (any module mapping the input to (N, D)) and ``self.head``
    (``nn.Linear(D, K)``, the last module applied) and implement :meth:`reset_parameters`.

    Shape: x (N, *) -> features (N, D), D = ``head.in_features`` -> logits (N, K), K = ``head.out_features``

    (No class-level annotations of ``body`` / ``head``: TorchScript reads them and cannot type ``nn.Module``.)
    """

    def features(self, x: Tensor) -> Tensor:
        """The transformed space: exactly the input of :attr:`head`. Shape (N, *) -> (N, D)."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits. Shape (N, *) -> (N, K)."""
        return self.head(self.features(x))

    @property
    def transformed_dim(self) -> int:
        """D, the width of the transformed space (``head.in_features``)."""
        return self.head.in_features

    @property
    def n_classes(self) -> int:
        """K, the number of logits (``head.out_features``)."""
        return self.head.out_features

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        raise NotImplementedError


def _init_tf_dense_net(
    model: nn.Module, init: str, generator: torch.Generator | None, *, std: float = 0.01, bias: float = 0.1
) -> None:
    """Initialise every Linear/Conv of an MLP-style model with scheme ``init``.

    ``"original"``: ``weight_variable``/``bias_variable`` of the authors' ``model_graph.py``: dense weights
    truncated normal with std 0.01, conv kernels truncated normal with He std sqrt(2 / fan_in), all
    biases 0.1.
    """
    for m in model.modules():
        if init == "torch":
            torch_default_(m, generator)
        elif init == "kaiming":
            kaiming_(m, generator)
        elif isinstance(m, nn.Linear):
            tf_truncated_normal_(m.weight, std, generator)
            if m.bias is not None:
                nn.init.constant_(m.bias, bias)
        elif isinstance(m, nn.Conv1d):
            tf_truncated_normal_(m.weight, (2.0 / m.weight[0].numel()) ** 0.5, generator)
            if m.bias is not None:
                nn.init.constant_(m.bias, bias)


def _fc_stack(in_features: int, widths: Sequence[int], activations: Sequence[str]) -> nn.Sequential:
    """``Linear -> activation`` for each width; names fc1, act1, fc2, act2, ..."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    d_in = in_features
    for i, (d_out, act) in enumerate(zip(widths, activations), start=1):
        layers[f"fc{i}"] = nn.Linear(d_in, d_out)
        layers[f"act{i}"] = make_activation(act)
        d_in = d_out
    return nn.Sequential(layers)


# ---------------------------------------------------------------------------------------------------
# MLP
# ---------------------------------------------------------------------------------------------------
class MLP(BodyHeadClassifier):
    """Fully connected classifier; its last hidden layer is the transformed space.

    The paper's 2-D-feature net is ``MLP(2, hidden=(2000, 2))``; the earlier experiments use
    ``hidden=(2000, 2000)`` (D = 2000), ``(2000,)`` ("1 FC") or ``(2000, 2000, 2000)``.

    Args:
        in_features: input dimension (2 for the simulated data).
        hidden: widths of the hidden layers; the last one is D. ``()`` gives a linear model whose
            transformed space is the input itself. Default ``(2000, 2000)``.
        activations: one name for all hidden layers or one per layer, from :data:`ACTIVATIONS`
            (relu, leaky_relu (slope 0.1), selu, tanh, softsign, square, sigmoid, identity).
            Default ``"relu"``.
        n_classes: K, number of logits. Default 2.
        init: ``"original"`` (truncated normal std 0.01, bias 0.1: the authors' TF init),
            ``"torch"`` (PyTorch defaults) or ``"kaiming"``. Default ``"original"``.
        seed: if given, parameters are drawn from a local ``torch.Generator(seed)``: the same seed gives
            bit-identical parameters and the global RNG is left untouched. Default None (global RNG).

    Attributes:
        body: ``nn.Sequential`` of ``fc{i}``/``act{i}``; (N, in_features) -> (N, D).
        head: ``nn.Linear(D, K)``, the last layer.

    Shape:
        Input (N, in_features); :meth:`features` (N, D); output logits (N, K).

    Examples::

        >>> net = MLP(2, hidden=(64, 2), activations="softsign", seed=0)
        >>> net(torch.zeros(5, 2)).shape, net.features(torch.zeros(5, 2)).shape
        (torch.Size([5, 2]), torch.Size([5, 2]))
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (2000, 2000),
        activations: str | Sequence[str] = "relu",
        n_classes: int = 2,
        init: str = "original",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.in_features = _check_positive_int("in_features", in_features)
        self.hidden = tuple(_check_positive_int("hidden width", h) for h in hidden)
        self.activations = tuple(_activation_list(activations, len(self.hidden)))
        self.init = check_init(init)
        d = self.hidden[-1] if self.hidden else self.in_features
        with init_generator(seed) as g:
            self.body = _fc_stack(self.in_features, self.hidden, self.activations)
            self.head = nn.Linear(d, _check_n_classes(n_classes))
            self.reset_parameters(g)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise all parameters in place with scheme :attr:`init`."""
        _init_tf_dense_net(self, self.init, generator)

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, activations={self.activations}, init={self.init!r}"


# ---------------------------------------------------------------------------------------------------
# FC + Conv1D
# ---------------------------------------------------------------------------------------------------
class ConvMLP(BodyHeadClassifier):
    """The original's "1 FC + 1 Conv1D" net (commit 8314904, ``original_code.md`` §2.2).

    ``x -> Linear(in, W) -> act -> view as a 1-channel signal of length W -> zero-pad -> Conv1d(1, C,
    kernel_size, stride 1) -> act -> flatten -> head``. The transformed space is the flattened
    convolution output, D = C·W (64 000 for the original W = 2000, C = 32).

    Padding is TF's 'SAME': ``(k - 1) // 2`` zeros on the left and ``k // 2`` on the right, so the
    signal keeps length W (with the even k = 10 the right side gets one more zero).
    The flattening order is channel-major (PyTorch) rather than TF's position-major; this permutes the
    D feature coordinates and changes nothing else.

    Args:
        in_features: input dimension.
        fc_width: W, width of the fully connected layer. Default 2000.
        conv_channels: C, number of convolution filters. Default 32.
        kernel_size: convolution kernel length. Default 10.
        activation: activation after the FC and after the convolution. Default ``"relu"``.
        n_classes: K. Default 2.
        init: ``"original"`` (dense: truncated normal std 0.01; conv: truncated normal std
            sqrt(2 / kernel_size); biases 0.1), ``"torch"`` or ``"kaiming"``. Default ``"original"``.
        seed: local-generator seed, as in :class:`MLP`. Default None.

    Shape:
        Input (N, in_features); features (N, C·W); output (N, K).
    """

    def __init__(
        self,
        in_features: int,
        fc_width: int = 2000,
        conv_channels: int = 32,
        kernel_size: int = 10,
        activation: str = "relu",
        n_classes: int = 2,
        init: str = "original",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.in_features = _check_positive_int("in_features", in_features)
        self.fc_width = _check_positive_int("fc_width", fc_width)
        self.conv_channels = _check_positive_int("conv_channels", conv_channels)
        self.kernel_size = _check_positive_int("kernel_size", kernel_size)
        self.activation = activation
        self.init = check_init(init)
        with init_generator(seed) as g:
            self.body = nn.Sequential(
                OrderedDict(
                    fc1=nn.Linear(self.in_features, self.fc_width),
                    act1=make_activation(activation),
                    to_signal=nn.Unflatten(1, (1, self.fc_width)),  # (N, W) -> (N, 1, W)
                    pad=nn.ConstantPad1d(((self.kernel_size - 1) // 2, self.kernel_size // 2), 0.0),  # TF 'SAME'
                    conv=nn.Conv1d(1, self.conv_channels, self.kernel_size),  # (N, C, W)
                    act2=make_activation(activation),
                    flatten=nn.Flatten(),  # (N, C*W)
                )
            )
            self.head = nn.Linear(self.conv_channels * self.fc_width, _check_n_classes(n_classes))
            self.reset_parameters(g)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise all parameters in place with scheme :attr:`init`."""
        _init_tf_dense_net(self, self.init, generator)

    def extra_repr(self) -> str:
        return (
            f"fc_width={self.fc_width}, conv_channels={self.conv_channels}, "
            f"kernel_size={self.kernel_size}, activation={self.activation!r}, init={self.init!r}"
        )


# ---------------------------------------------------------------------------------------------------
# Asymmetric network
# ---------------------------------------------------------------------------------------------------
class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed 0/1 mask: ``y = x (W ⊙ M)ᵀ + b``.

    Masked entries of :attr:`weight` are zeroed at init and receive zero gradient, so they stay exactly
    zero under any optimiser (weight decay included): ``weight`` can be read as the effective weight.

    Args:
        in_features, out_features, bias: as for ``nn.Linear``.
        mask: bool tensor of shape (out_features, in_features); True = trainable connection.
    """

    mask: Tensor

    def __init__(self, in_features: int, out_features: int, mask: Tensor, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        if tuple(mask.shape) != (out_features, in_features):
            raise ValueError(
                f"mask has shape {tuple(mask.shape)}, expected (out_features, in_features) = "
                f"({out_features}, {in_features})."
            )
        self.register_buffer("mask", mask.to(torch.bool).clone())
        self.apply_mask_()

    @torch.no_grad()
    def apply_mask_(self) -> None:
        """Zero the masked weights in place (call after any re-initialisation)."""
        self.weight.mul_(self.mask)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, "mask"):  # nn.Linear.__init__ calls this before the mask exists
            self.apply_mask_()

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class AsymmetricMLP(nn.Module):
    """The asymmetric binary network of ``original_code.md`` §2.3 (``model_graph_asym``).

    ``h = body(x)`` is an MLP (default FC2000 ReLU -> FC2000 ReLU). Class 0's logit reads only the first
    ``split`` units of ``h``; class 1's logit reads the remaining ``D - split`` units **and the raw input
    x** (a linear skip connection to one class only); a shared bias (2,) is added::

        logits[:, 0] = h[:, :split] · w0            + b[0]
        logits[:, 1] = h[:, split:] · w1  +  x · v  + b[1]

    In module terms ``logits = head(features(x)) + skip(x)`` where

    * ``features(x) = h`` (N, D) is the **transformed space**: the last hidden layer after its
      activation, and exactly the input of :attr:`head` (a forward pre-hook on ``head`` sees it);
    * ``head`` is a :class:`MaskedLinear` (D -> 2) holding w0, w1 and the bias b, with the block mask
      above (row 0 zero on ``split:``, row 1 zero on ``:split``);
    * ``skip`` is a :class:`MaskedLinear` (in_features -> 2, no bias) holding v in row 1; row 0 is
      masked to zero.

    So, unlike the other models, **the logits are not a function of the transformed space alone**: an
    SVM fitted on ``features(x)`` is not comparable with ``head`` alone. The exact linear last-layer
    view is on ``joint_features(x) = [h, x]`` (N, D + in_features) with weight :attr:`joint_weight`
    (2, D + in_features) and bias ``head.bias``.

    Args:
        in_features: input dimension. Default 2.
        hidden: hidden widths; D = ``hidden[-1]``. Default ``(2000, 2000)``.
        split: number of hidden units that feed class 0; ``0 < split < D``. Default 1500.
        activations: as for :class:`MLP`. Default ``"relu"``.
        init: ``"original"`` (all weights, skip included, truncated normal std 0.01, bias 0.1),
            ``"torch"`` or ``"kaiming"``. Default ``"original"``.
        seed: local-generator seed. Default None.

    Shape:
        Input (N, in_features); features (N, D); joint_features (N, D + in_features); logits (N, 2).
    """

    def __init__(
        self,
        in_features: int = 2,
        hidden: Sequence[int] = (2000, 2000),
        split: int = 1500,
        activations: str | Sequence[str] = "relu",
        init: str = "original",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.in_features = _check_positive_int("in_features", in_features)
        self.hidden = tuple(_check_positive_int("hidden width", h) for h in hidden)
        if not self.hidden:
            raise ValueError("AsymmetricMLP needs at least one hidden layer, e.g. hidden=(2000, 2000).")
        d = self.hidden[-1]
        if isinstance(split, bool) or not isinstance(split, int) or not 0 < split < d:
            raise ValueError(f"split must be an int in [1, {d - 1}] (0 < split < hidden[-1]), got {split!r}.")
        self.split = split
        self.activations = tuple(_activation_list(activations, len(self.hidden)))
        self.init = check_init(init)
        head_mask = torch.zeros(2, d, dtype=torch.bool)
        head_mask[0, :split] = True
        head_mask[1, split:] = True
        skip_mask = torch.zeros(2, self.in_features, dtype=torch.bool)
        skip_mask[1] = True
        with init_generator(seed) as g:
            self.body = _fc_stack(self.in_features, self.hidden, self.activations)
            self.skip = MaskedLinear(self.in_features, 2, skip_mask, bias=False)  # registered before head:
            self.head = MaskedLinear(d, 2, head_mask)  # head stays the last Linear in .modules()
            self.reset_parameters(g)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise all parameters in place with scheme :attr:`init`; masks are re-applied."""
        _init_tf_dense_net(self, self.init, generator)
        self.skip.apply_mask_()
        self.head.apply_mask_()

    def features(self, x: Tensor) -> Tensor:
        """Transformed space h, the input of :attr:`head`. Shape (N, in_features) -> (N, D)."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``head(h) + skip(x)``. Shape (N, in_features) -> (N, 2)."""
        s = self.skip(x)  # computed first so that `head` is the last module applied
        return self.head(self.features(x)) + s

    def joint_features(self, x: Tensor) -> Tensor:
        """``[h, x]``, on which the logits are exactly linear. Shape (N, in_features) -> (N, D + in_features)."""
        return torch.cat([self.features(x), x], dim=1)

    @property
    def joint_weight(self) -> Tensor:
        """Effective weight on :meth:`joint_features`, shape (2, D + in_features); bias is ``head.bias``."""
        return torch.cat([self.head.weight * self.head.mask, self.skip.weight * self.skip.mask], dim=1)

    @property
    def transformed_dim(self) -> int:
        """D = ``hidden[-1]``."""
        return self.head.in_features

    @property
    def n_classes(self) -> int:
        """Always 2."""
        return 2

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, split={self.split}, activations={self.activations}, init={self.init!r}"
