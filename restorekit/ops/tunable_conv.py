"""Tunable convolution: p expert kernels mixed per sample by interactive parameters.

Maths (Maggioni et al., "Tunable Convolutions with Parametric Multi-Loss Optimization", CVPR 2023, Eq. 5–6).
A layer holds p kernels ``W_1 … W_p`` and biases ``b_1 … b_p``; the user's parameters ω ∈ R^p are mapped by
the layer's affine ``φ`` to mixing weights ``α = φ(ω)``, and the layer convolves with

    W(α) = Σ_i α_i W_i,    b(α) = Σ_i α_i b_i.

Convolution is linear in its kernel, so one mixed convolution costs what a plain one does. Each sample of
a batch may carry its own α (training samples ω per image): the per-sample kernels then run as one grouped
convolution over the batch folded into channels. With one α for the whole batch (inference), the kernels
are mixed once and a plain convolution runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from restorekit._checks import check, check_shape


def mix_experts(experts: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Mix ``p`` expert tensors with per-sample weights.

    Args:
        experts: ``(p, *S)``, any trailing shape S (kernels, biases, PReLU slopes, scales).
        alpha: ``(B, p)`` mixing weights.

    Returns:
        ``(B, *S)``: ``out[b] = Σ_i alpha[b, i] · experts[i]``.

    Example:
        >>> mix_experts(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0.5, 0.5]]))
        tensor([[2., 3.]])
    """
    return (alpha @ experts.flatten(1)).view(alpha.shape[0], *experts.shape[1:])


def tunable_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    alpha: torch.Tensor,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Convolve each sample with its own mixture of ``p`` expert kernels.

    Args:
        x: Input, ``(B, C_in, H, W)``.
        weight: Expert kernels, ``(p, C_out, C_in / groups, K, K)`` (regular, depthwise or pointwise).
        bias: Expert biases ``(p, C_out)`` or ``None``.
        alpha: Mixing weights, ``(B, p)`` (one row per sample) or ``(1, p)`` (one mixture for the batch).
        stride, padding, dilation, groups: As in ``F.conv2d``.

    Returns:
        ``(B, C_out, H', W')``.

    Example:
        >>> x, w = torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 3, 3)
        >>> tunable_conv(x, w, None, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), padding=1).shape
        torch.Size([2, 6, 8, 8])
    """
    _validate(x, weight, bias, alpha, groups)
    batch = x.shape[0]
    kernels = mix_experts(weight, alpha)
    biases = mix_experts(bias, alpha) if bias is not None else None
    if alpha.shape[0] == 1:
        return F.conv2d(x, kernels[0], None if biases is None else biases[0], stride, padding, dilation, groups)
    out = F.conv2d(
        x.reshape(1, -1, *x.shape[-2:]), kernels.flatten(0, 1), None, stride, padding, dilation, groups * batch
    )
    out = out.view(batch, -1, *out.shape[-2:])
    return out if biases is None else out + biases[:, :, None, None]


def tunable_conv_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    alpha: torch.Tensor,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Pure-PyTorch oracle: a loop over samples, each mixing its kernels explicitly (Eq. 5) and convolving.

    Shapes as in :func:`tunable_conv`.

    Example:
        >>> x, w = torch.randn(1, 2, 5, 5), torch.randn(2, 3, 2, 1, 1)
        >>> tunable_conv_reference(x, w, None, torch.tensor([[1.0, 0.0]])).allclose(F.conv2d(x, w[0]))
        True
    """
    outputs = []
    for b in range(x.shape[0]):
        a = alpha[b if alpha.shape[0] > 1 else 0]
        kernel = sum(a[i] * weight[i] for i in range(weight.shape[0]))
        offset = None if bias is None else sum(a[i] * bias[i] for i in range(bias.shape[0]))
        outputs.append(F.conv2d(x[b : b + 1], kernel, offset, stride, padding, dilation, groups))
    return torch.cat(outputs)


def tunable_prelu(x: torch.Tensor, slopes: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """PReLU whose per-channel slopes are a per-sample mixture of ``p`` expert slope vectors.

    Args:
        x: ``(B, C, H, W)``.
        slopes: ``(p, C)`` expert slopes.
        alpha: ``(B, p)`` or ``(1, p)``.

    Returns:
        ``(B, C, H, W)``: ``x`` where positive, ``slope(α)·x`` elsewhere.

    Example:
        >>> tunable_prelu(-torch.ones(1, 2, 1, 1), torch.tensor([[0.1, 0.2]]), torch.ones(1, 1)).flatten()
        tensor([-0.1000, -0.2000])
    """
    check_shape(x, "B C H W", "tunable_prelu x")
    check(slopes.dim() == 2 and slopes.shape[1] == x.shape[1], "tunable_prelu slopes", "(p, C)", tuple(slopes.shape))
    mixed = mix_experts(slopes, alpha)
    if alpha.shape[0] == 1:
        return F.prelu(x, mixed[0])
    return torch.where(x >= 0, x, x * mixed[:, :, None, None])


def _validate(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, alpha: torch.Tensor, groups: int
) -> None:
    sizes = check_shape(x, "B C H W", "tunable_conv x")
    check(
        weight.dim() == 5 and weight.shape[2] * groups == sizes["C"],
        "tunable_conv weight",
        f"(p, C_out, C_in/groups = {sizes['C'] // max(groups, 1)}, K, K)",
        tuple(weight.shape),
    )
    experts, channels_out = weight.shape[:2]
    check(
        alpha.dim() == 2 and alpha.shape[1] == experts and alpha.shape[0] in (1, sizes["B"]),
        "tunable_conv alpha",
        f"(B, p) or (1, p) with B={sizes['B']}, p={experts}",
        tuple(alpha.shape),
    )
    if bias is not None:
        check(bias.shape == (experts, channels_out), "tunable_conv bias", (experts, channels_out), tuple(bias.shape))
