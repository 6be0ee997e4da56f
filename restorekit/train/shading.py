"""Synthetic lens shading: noise that grows toward the corners of the frame, as a camera's shading correction makes it.

A lens passes less light away from its optical axis. With the cos⁴ law for a pinhole of focal length f, the
relative illumination at distance r from the axis is ``v(r) = cos⁴ θ = (1 + (r/f)²)⁻²`` (``tan θ = r/f``). The
sensor records ``raw = clean·v + n`` and the camera divides the shading out, ``raw / v = clean + n·g`` with the
gain ``g = 1/v``: the noise, added before the gain, is amplified by it, most in the corners.

Geometry. r is the distance from the optical axis normalised by the frame's half-diagonal (so r = 1 at the
corners for an axis at the centre, whatever the aspect), the axis lies within ``±axis_offset`` of the frame's
height and width from the centre, and the strength is set by the corner gain ``c = g(1)``:
``g(r) = (1 + (√c − 1)·r²)²``, so g ≥ 1 everywhere and g = 1 on the axis. Positions are frame coordinates
(:func:`restorekit.layers.tv_conv.frame_coordinates`), so a crop's gain is the full frame's at its pixels.
"""

from __future__ import annotations

import torch

# Corner gain range (1.5 to 4: 1.2 to 4 stops of shading at the corners, a wide-angle phone lens at the top)
# and the largest distance of the optical axis from the frame's centre, as a fraction of the frame's side.
CORNER_GAIN = (1.5, 4.0)
AXIS_OFFSET = 0.1


def shading_gain(
    coords: torch.Tensor, frame_size: torch.Tensor, axis: torch.Tensor, corner_gain: torch.Tensor
) -> torch.Tensor:
    """The shading-correction gain ``g = 1/v`` at frame coordinates.

    Args:
        coords: ``(B, 2, H, W)`` frame coordinates (y, x) in [-1, 1].
        frame_size: ``(B, 2)`` height and width of each frame in pixels (only the aspect matters).
        axis: ``(B, 2)`` the optical axis (y, x) in frame coordinates.
        corner_gain: ``(B,)`` the gain at r = 1.

    Returns:
        ``(B, 1, H, W)``, ≥ 1, equal to 1 on the axis.

    Example:
        >>> from restorekit.layers.tv_conv import frame_coordinates
        >>> corners = frame_coordinates(2, 2, torch.tensor([-0.5, 1.5]), torch.tensor([-0.5, 1.5]))
        >>> shading_gain(corners, torch.tensor([[2.0, 2.0]]), torch.zeros(1, 2), torch.tensor([4.0]))
        tensor([[[[4., 4.],
                  [4., 4.]]]])
    """
    half = frame_size.float() / frame_size.float().norm(dim=1, keepdim=True)  # half-sides over the half-diagonal
    offset = (coords - axis[:, :, None, None]) * half[:, :, None, None]
    r2 = offset.square().sum(dim=1, keepdim=True)
    return (1 + (corner_gain.sqrt() - 1)[:, None, None, None] * r2).square()


def draw_shading(
    batch: int,
    generator: torch.Generator,
    corner_gain: tuple[float, float] = CORNER_GAIN,
    axis_offset: float = AXIS_OFFSET,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random shading per image: the optical axis ``(B, 2)`` (uniform within ``±axis_offset`` of the frame's side
    from the centre) and the corner gain ``(B,)`` (uniform in ``corner_gain``)."""
    axis = (torch.rand(batch, 2, generator=generator) * 2 - 1) * (2 * axis_offset)  # a side spans 2 in coordinates
    low, high = corner_gain
    return axis, low + (high - low) * torch.rand(batch, generator=generator)


def add_shaded_noise(
    clean: torch.Tensor,
    coords: torch.Tensor,
    frame_size: torch.Tensor,
    sigma: torch.Tensor,
    as_file: torch.Tensor,
    generator: torch.Generator,
    corner_gain: tuple[float, float] = CORNER_GAIN,
    axis_offset: float = AXIS_OFFSET,
) -> tuple[torch.Tensor, torch.Tensor]:
    """White Gaussian noise of level σ added before a random shading correction: ``clean + n·g``.

    Args:
        clean: ``(B, C, H, W)`` in [0, 1], crops of frames.
        coords: ``(B, 2, H, W)`` the frame coordinates of the crops' pixels.
        frame_size: ``(B, 2)`` height and width of each crop's frame.
        sigma: ``(B,)`` noise levels before the gain (0–255 scale).
        as_file: ``(B,)`` booleans; those images are clipped to [0, 1] and rounded to 8 bits afterwards.
        generator: Source of the shading and the noise.
        corner_gain, axis_offset: Ranges of the shading, see :func:`draw_shading`.

    Returns:
        ``noisy (B, C, H, W)`` and the exact noise level of every pixel, ``σ·g (B, 1, H, W)`` (0–255 scale).
    """
    axis, corner = draw_shading(clean.shape[0], generator, corner_gain, axis_offset)
    level = sigma.view(-1, 1, 1, 1) * shading_gain(coords, frame_size, axis, corner)
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
    noisy = clean + noise * (level / 255)
    quantized = noisy.clamp(0, 1).mul(255).round().div(255)
    return torch.where(as_file.view(-1, 1, 1, 1), quantized, noisy), level
