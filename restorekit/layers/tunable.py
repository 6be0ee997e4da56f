"""Tunable layers: p expert parameter sets mixed by α = φ(ω), ω threaded through ``forward``.

Each tunable layer has the parameter names of its plain twin with a leading expert dimension p
(``weight (p, …)``, ``bias (p, …)``) plus its own affine map ``phi`` (R^p → R^p, no activation; paper Eq. 6).
That makes two conversions generic, by state dict: :func:`expand_state_dict` starts a tunable model from a
trained plain one (every expert equal to the trained tensor, φ the identity, so on the convex line
Σω = 1 the tunable model starts as the plain one for every ω), and :func:`fold_state_dict` mixes the experts
for one ω into the plain model's tensors, so inference at a fixed ω runs the plain model at its speed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorekit._checks import check
from restorekit.layers.blocks import ChannelNorm
from restorekit.ops import malleable_conv
from restorekit.ops.atom_conv import atom_conv
from restorekit.ops.fourier_bessel import fourier_bessel_bases
from restorekit.ops.tunable_conv import mix_experts, tunable_conv, tunable_prelu


class Phi(nn.Module):
    """The layer's affine map α = A·ω + c from the user's parameters to its mixing weights (identity at init).

    Shape:
        ``ω (B, p) → α (B, p)``
    """

    def __init__(self, params: int):
        super().__init__()
        self.weight = nn.Parameter(torch.eye(params))
        self.bias = nn.Parameter(torch.zeros(params))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return F.linear(w, self.weight, self.bias)


class Tunable(nn.Module):
    """Base of the layers whose ``forward(x, w)`` takes the interactive parameters ω ``(B, p)`` or ``(1, p)``."""


class TunableConv2d(Tunable):
    """A convolution with p expert kernels and biases (``ops.tunable_conv``).

    Shape:
        ``x (B, C_in, H, W), w (B, p) → (B, C_out, H', W')``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        params: int = 2,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
    ):
        super().__init__()
        self.stride, self.padding, self.groups = stride, padding, groups
        template = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups)
        self.weight = nn.Parameter(template.weight.detach().expand(params, *template.weight.shape).clone())
        self.bias = nn.Parameter(template.bias.detach().expand(params, -1).clone())
        self.phi = Phi(params)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return tunable_conv(x, self.weight, self.bias, self.phi(w), self.stride, self.padding, 1, self.groups)


class TunablePReLU(Tunable):
    """PReLU with p expert slope vectors. Shape: ``x (B, C, H, W), w (B, p) → (B, C, H, W)``."""

    def __init__(self, channels: int, params: int = 2, init: float = 0.1):
        super().__init__()
        self.weight = nn.Parameter(torch.full((params, channels), init))
        self.phi = Phi(params)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return tunable_prelu(x, self.weight, self.phi(w))


class TunableSequential(nn.Sequential):
    """``nn.Sequential`` that passes ω to its tunable members (pooling layers take only ``x``)."""

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for module in self:
            x = module(x, w) if isinstance(module, Tunable | TunableSequential) else module(x)
        return x


class TunableResidualBlock(Tunable):
    """Tunable twin of :class:`~restorekit.layers.blocks.ResidualBlock`."""

    def __init__(self, channels: int, params: int = 2):
        super().__init__()
        self.conv1 = TunableConv2d(channels, channels, 3, params, padding=1)
        self.act = TunablePReLU(channels, params)
        self.conv2 = TunableConv2d(channels, channels, 3, params, padding=1)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x, w), w), w)


class TunableInvertedBottleneck(Tunable):
    """Tunable twin of :class:`~restorekit.layers.blocks.InvertedBottleneck` (its mixer tunable too)."""

    def __init__(self, channels: int, expansion: int = 5, params: int = 2, mixer: Tunable | None = None):
        super().__init__()
        hidden = channels * expansion
        self.expand = TunableConv2d(channels, hidden, 1, params)
        self.act1 = TunablePReLU(hidden, params)
        self.mixer = mixer if mixer is not None else TunableConv2d(hidden, hidden, 3, params, padding=1, groups=hidden)
        self.act2 = TunablePReLU(hidden, params)
        self.project = TunableConv2d(hidden, channels, 1, params)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        hidden = self.act2(self.mixer(self.act1(self.expand(x, w), w), w), w)
        return x + self.project(hidden, w)


class TunableKernelPredictor(Tunable):
    """Tunable twin of :class:`~restorekit.layers.malle_conv.KernelPredictor`: ω steers the predicted kernels.

    Shape:
        ``x (B, C, H, W), w (B, p) → kernels (B, C·K², H/stride, W/stride), bias (B, C, H/stride, W/stride)``
    """

    def __init__(self, channels: int, width: int, kernel_size: int, avg_pool: int, max_pools: int, params: int = 2):
        super().__init__()
        self.channels, self.kernel_size = channels, kernel_size
        layers: list[nn.Module] = [nn.AvgPool2d(avg_pool, ceil_mode=True)] if avg_pool > 1 else []
        layers += [TunableConv2d(channels, width, 3, params, padding=1), TunablePReLU(width, params)]
        for _ in range(max_pools):
            layers += [TunableResidualBlock(width, params), nn.MaxPool2d(2, ceil_mode=True)]
        layers += [TunableResidualBlock(width, params)]
        self.body = TunableSequential(*layers)
        self.head = TunableConv2d(width, channels * (kernel_size**2 + 1), 1, params)
        taps = kernel_size**2
        order = torch.arange(channels * (taps + 1)).view(channels, taps + 1)
        self.register_buffer("order", torch.cat([order[:, :taps].flatten(), order[:, taps]]), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        head = self.head
        out = tunable_conv(self.body(x, w), head.weight[:, self.order], head.bias[:, self.order], head.phi(w))
        return out.split([self.channels * self.kernel_size**2, self.channels], dim=1)


class TunableMalleConv(Tunable):
    """Tunable twin of :class:`~restorekit.layers.malle_conv.MalleConv`. Shape: ``(B, C, H, W) → (B, C, H, W)``."""

    def __init__(self, channels: int, predictor_width: int, kernel_size: int = 3, stride: int = 8, params: int = 2):
        super().__init__()
        avg_pool = min(stride, 4)
        max_pools = (stride // avg_pool).bit_length() - 1
        self.predictor = TunableKernelPredictor(channels, predictor_width, kernel_size, avg_pool, max_pools, params)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        kernels, bias = self.predictor(x, w)
        return malleable_conv(x, kernels, bias)


class TunableAtomGenerator(Tunable):
    """Tunable twin of :class:`~restorekit.layers.acda.AtomGenerator`: ω steers the per-pixel atoms.

    Shape:
        ``x (B, C, H, W), w (B, p) → atoms (B, M, K², H, W)``
    """

    def __init__(self, channels: int, width: int, atoms: int, kernel_size: int, bases_per_scale: int, params: int = 2):
        super().__init__()
        bases = fourier_bessel_bases(kernel_size, bases_per_scale)
        self.register_buffer("bases", bases.flatten(1), persistent=False)  # (L, K²), rebuilt, never loaded
        self.atoms = atoms
        self.body = TunableSequential(
            TunableConv2d(channels, width, 3, params, padding=1),
            ChannelNorm(width),
            nn.Tanh(),
            TunableConv2d(width, atoms * len(bases), 3, params, padding=1),
            ChannelNorm(atoms * len(bases)),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        coefficients = self.body(x, w).view(batch, self.atoms, len(self.bases), height, width)
        return torch.einsum("bmlhw,lt->bmthw", coefficients, self.bases.to(coefficients.dtype))


class TunableACDAConv(Tunable):
    """Tunable twin of :class:`~restorekit.layers.acda.ACDAConv` (atom generator and coefficients tunable).

    Shape:
        ``x (B, C_in, H, W), w (B, p) → (B, C_out, H, W)``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        atoms: int = 6,
        bases_per_scale: int = 6,
        generator_width: int = 16,
        params: int = 2,
    ):
        super().__init__()
        self.generator = TunableAtomGenerator(in_channels, generator_width, atoms, kernel_size, bases_per_scale, params)
        self.coefficients = TunableConv2d(in_channels * atoms, out_channels, 1, params)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.coefficients(atom_conv(x, self.generator(x, w)), w)


class TunableDynamicBottleneck(Tunable):
    """Tunable twin of :class:`~restorekit.layers.acda.DynamicBottleneck` (no TVConv): an ACDA mixer, or with
    ``mixer="static"`` a plain K×K convolution (``atoms``, ``bases_per_scale`` and ``width`` unused then).

    Shape:
        ``x (B, C, H, W), w (B, p) → (B, C, H, W)``
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        atoms: int,
        bases_per_scale: int,
        width: int,
        params: int = 2,
        mixer: str = "acda",
    ):
        super().__init__()
        check(mixer in ("acda", "static"), "TunableDynamicBottleneck mixer", "acda or static", mixer)
        inner = channels // 2
        self.reduce = TunableConv2d(channels, inner, 1, params)
        self.act1 = TunablePReLU(inner, params)
        if mixer == "acda":
            self.mixer = TunableACDAConv(inner, inner, kernel_size, atoms, bases_per_scale, width, params)
        else:
            self.mixer = TunableConv2d(inner, inner, kernel_size, params, padding=kernel_size // 2)
        self.act2 = TunablePReLU(inner, params)
        self.expand = TunableConv2d(inner, channels, 1, params)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x + self.expand(self.act2(self.mixer(self.act1(self.reduce(x, w), w), w), w), w)


def expand_state_dict(model: nn.Module, plain: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict for the tunable ``model`` in which every expert equals the plain model's tensor.

    ``plain`` is the state dict of the plain twin (same names without the expert dimension); every ``phi``
    keeps the identity, so with Σω = 1 the tunable model computes exactly what the plain one does.
    """
    state = {}
    for key, value in model.state_dict().items():
        if key.rsplit(".", 2)[-2] == "phi":
            state[key] = value
        else:
            source = plain[key]
            state[key] = source.expand_as(value).clone() if source.shape != value.shape else source.clone()
    return state


def fold_into(model: nn.Module, plain: type[nn.Module], w: torch.Tensor | tuple[float, ...]) -> nn.Module:
    """The plain twin (class ``plain``, built from ``model``'s hyper-parameters but ``params``) that a tunable
    ``model`` computes at one setting ``w`` (p values), on its device, in eval mode, named ``model.name``.
    """
    params = model.hyperparameters["params"]
    w = torch.as_tensor(w, dtype=torch.float32)
    check(w.shape == (params,), "ω", f"{params} values", w.tolist())
    twin = plain(**{k: v for k, v in model.hyperparameters.items() if k != "params"})
    twin.load_state_dict(fold_state_dict(model, w), strict=True)
    twin = twin.to(next(model.parameters()).device)
    twin.name = model.name
    return twin.eval()


@torch.no_grad()
def fold_state_dict(model: nn.Module, w: torch.Tensor) -> dict[str, torch.Tensor]:
    """The plain twin's state dict at one setting ``w`` ``(p,)``: each tunable layer's experts mixed by φ(ω)."""
    state = dict(model.state_dict())
    for name, module in model.named_modules():
        if isinstance(module, TunableConv2d | TunablePReLU):
            prefix = f"{name}." if name else ""
            alpha = module.phi(w.to(module.weight)[None])
            for key, experts in module.named_parameters(recurse=False):
                state[prefix + key] = mix_experts(experts, alpha)[0]
            state.pop(prefix + "phi.weight")
            state.pop(prefix + "phi.bias")
    return state
