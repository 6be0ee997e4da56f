"""TVConv layer: frame coordinates, sampling, shapes, strides, the inference cache and its invalidation, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from restorekit.layers.blocks import ChannelNorm
from restorekit.layers.tv_conv import TVConv, bilinear_taps, frame_coordinates
from restorekit.ops.tv_conv import tv_conv_reference


def layer(channels: int = 3, stride: int = 1, seed: int = 0) -> TVConv:
    """A small TVConv with random affinity maps (the ones it starts from make every position alike)."""
    torch.manual_seed(seed)
    tv = TVConv(channels, affinity_channels=2, grid=6, hidden=4, stride=stride)
    with torch.no_grad():
        tv.affinity.normal_(1.0, 0.5)
    return tv


def expected(tv: TVConv, x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """The layer's definition spelled out: generator on the grid, ``F.grid_sample`` at the output positions, the
    reference op."""
    s = tv.stride
    kernels = tv.generator(tv.affinity)  # (1, C·K², G, G)
    where = coords[..., ::s, ::s].flip(1).permute(0, 2, 3, 1)  # grid_sample wants (x, y)
    sampled = F.grid_sample(
        kernels.expand(len(where), -1, -1, -1), where, mode="bilinear", padding_mode="border", align_corners=False
    )
    weight = sampled.view(len(where), tv.channels, tv.kernel_size**2, *sampled.shape[-2:])
    return tv_conv_reference(x, weight, s)


def test_frame_coordinates_are_pixel_centres_in_minus_one_to_one():
    coords = frame_coordinates(4, 6)
    assert coords.shape == (1, 2, 4, 6)
    assert torch.allclose(coords[0, 0, :, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert torch.allclose(coords[0, 1, 0], (torch.arange(6) + 0.5) / 6 * 2 - 1)
    assert torch.equal(coords[0, 0, :, 2], coords[0, 0, :, 5]) and torch.equal(coords[0, 1, 1], coords[0, 1, 3])
    # fractional positions: the centre of a 2×-downscaled pixel is the mean of the two it covers
    assert torch.allclose(frame_coordinates(4, 6, torch.tensor([0.5]))[0, 0], coords[0, 0, :2].mean(0, keepdim=True))


def test_bilinear_taps_match_grid_sample_with_border_padding():
    torch.manual_seed(0)
    grid = torch.randn(1, 5, 7, 7)
    coords = torch.rand(2, 2, 9, 11) * 2.6 - 1.3  # some beyond the frame: clamped to the border cells
    indices, weights = bilinear_taps(coords, 7)
    table = grid[0].permute(1, 2, 0).reshape(49, 5)
    mine = F.embedding_bag(indices, table, per_sample_weights=weights, mode="sum")
    mine = mine.view(2, 9, 11, 5).permute(0, 3, 1, 2)
    where = coords.flip(1).permute(0, 2, 3, 1)
    ref = F.grid_sample(grid.expand(2, -1, -1, -1), where, padding_mode="border", align_corners=False)
    assert torch.allclose(mine, ref, atol=1e-5)
    assert torch.allclose(weights.sum(1), torch.ones(len(weights)))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(7, 9), (8, 5)])
def test_layer_is_the_sampled_generator_applied_by_the_op(stride, size):
    tv = layer(stride=stride)
    x = torch.randn(2, 3, *size)
    coords = frame_coordinates(*size)
    out = tv(x, coords)
    assert out.shape == (2, 3, -(-size[0] // stride), -(-size[1] // stride))
    assert torch.allclose(out, expected(tv, x, coords), atol=1e-5)
    # one coordinate map per image (a training batch of crops from different places)
    per_image = torch.cat([coords, coords.flip(-1)])
    both = tv(x, per_image)
    assert torch.allclose(both, expected(tv, x, per_image), atol=1e-5)
    assert not torch.allclose(both[1], out[1], atol=1e-4)


def test_the_ones_it_starts_from_still_tell_the_border_from_the_centre():
    torch.manual_seed(0)
    tv = TVConv(2, affinity_channels=2, grid=12, hidden=4)
    weight = tv.weight_map(frame_coordinates(12, 12))  # one pixel per grid cell
    assert not torch.allclose(weight[..., 0, 0], weight[..., 6, 6])  # zero padding of the generator's convolutions
    assert torch.allclose(weight[..., 5, 5], weight[..., 6, 6])  # 3 cells from the border: the same kernels


@pytest.mark.parametrize("stride", [1, 2])
def test_cached_equals_uncached_also_with_stride_two(stride):
    tv = layer(channels=4, stride=stride)
    x = torch.randn(1, 4, 11, 10)
    coords = frame_coordinates(11, 10)
    uncached = tv(x, coords)  # grad enabled: never cached
    tv.eval()
    with torch.no_grad():
        first = tv(x, coords)
        second = tv(x, coords)
        assert tv.weight_map(coords) is tv.weight_map(coords)  # the cache serves the second call
    assert torch.allclose(first, uncached, atol=1e-6) and torch.equal(first, second)


def test_the_cache_follows_the_coordinates():
    tv = layer().eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        whole = tv(x, frame_coordinates(8, 8))
        shifted = tv(x, frame_coordinates(16, 16)[..., 8:, 8:])  # same size, another place in the frame
        again = tv(x, frame_coordinates(8, 8))
    assert not torch.allclose(whole, shifted, atol=1e-4)
    assert torch.equal(whole, again)
    assert torch.allclose(shifted, expected(tv, x, frame_coordinates(16, 16)[..., 8:, 8:]), atol=1e-5)


def test_a_stale_cache_cannot_be_read_after_an_optimiser_step_or_a_load():
    tv = layer().eval()
    x, coords = torch.randn(1, 3, 8, 8), frame_coordinates(8, 8)
    with torch.no_grad():
        before = tv(x, coords)

    tv.train()
    optimizer = torch.optim.SGD(tv.parameters(), lr=0.5)
    tv(x, coords).square().mean().backward()
    optimizer.step()
    assert tv._kernels is None and tv._weights is None  # nothing is cached in training
    tv.eval()
    with torch.no_grad():
        stepped = tv(x, coords)
        assert not torch.allclose(stepped, before, atol=1e-5)
        # an in-place write between two eval calls (what an optimiser step or an EMA update does) is seen
        tv.affinity.add_(0.3)
        written = tv(x, coords)
    assert torch.allclose(written, expected(tv, x, coords), atol=1e-5)

    other = layer(seed=1)
    with torch.no_grad():
        tv.load_state_dict(other.state_dict())
        loaded = tv(x, coords)
    assert torch.allclose(loaded, expected(other, x, coords), atol=1e-5)


def test_train_drops_the_cache():
    tv = layer().eval()
    with torch.no_grad():
        tv(torch.randn(1, 3, 6, 6), frame_coordinates(6, 6))
    assert tv._weights is not None
    tv.train()
    assert tv._kernels is None and tv._weights is None


def test_gradients_reach_the_affinity_maps_and_vary_over_the_frame():
    tv = layer()
    x = torch.randn(2, 3, 12, 12)
    tv(x, frame_coordinates(12, 12)).square().mean().backward()
    grad = tv.affinity.grad
    assert grad is not None and grad.abs().sum() > 0
    assert not torch.allclose(grad[..., 0, 0], grad[..., 3, 3])
    assert all(p.grad is not None for p in tv.generator.parameters())


def test_a_window_of_the_frame_gets_the_window_of_the_weights():
    """A position's kernels depend on its frame coordinates alone: a tile's weights are the whole image's."""
    tv = layer(channels=2)
    coords = frame_coordinates(20, 24)
    with torch.no_grad():
        whole = tv.weight_map(coords)
        tile = tv.weight_map(coords[..., 5:14, 7:19])
    assert torch.allclose(tile, whole[..., 5:14, 7:19], atol=1e-6)


@pytest.mark.parametrize("size", [(4, 4), (9, 13)])
def test_channel_norm_of_a_tile_is_the_tile_of_the_channel_norm(size):
    norm = ChannelNorm(5)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(1, 5, 16, 20) * 3 + 1
    whole = norm(x)
    assert torch.allclose(norm(x[..., : size[0], 2 : 2 + size[1]]), whole[..., : size[0], 2 : 2 + size[1]], atol=1e-6)


def test_half_precision_features_run_against_float_kernels():
    tv = layer().eval()
    x, coords = torch.randn(1, 3, 8, 8), frame_coordinates(8, 8)
    with torch.no_grad():
        full = tv(x, coords)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = tv(x.bfloat16(), coords)
    assert half.dtype == torch.bfloat16 and tv.weight_map(coords).dtype == torch.float32
    assert torch.allclose(half.float(), full, atol=0.05)
