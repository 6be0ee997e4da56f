import pytest
import torch

from restorekit.layers import InvertedBottleneck, KernelPredictor, MalleConv


@pytest.mark.parametrize(("stride", "size", "grid"), [(8, 64, 8), (4, 32, 8), (2, 16, 8), (1, 8, 8), (8, 60, 8)])
def test_predictor_grid_is_stride_times_smaller(stride, size, grid):
    layer = MalleConv(channels=5, predictor_width=4, kernel_size=3, stride=stride)
    kernels, bias = layer.predictor(torch.randn(2, 5, size, size))
    assert kernels.shape == (2, 5 * 9, grid, grid)
    assert bias.shape == (2, 5, grid, grid)


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_malleconv_starts_near_identity(kernel_size):
    torch.manual_seed(0)
    layer = MalleConv(channels=6, predictor_width=4, kernel_size=kernel_size, stride=4)
    x = torch.randn(1, 6, 32, 32)
    assert torch.allclose(layer(x), x, atol=0.05)
    assert not torch.equal(layer(x), x)


def test_predictor_splits_kernels_and_bias_per_channel():
    predictor = KernelPredictor(channels=3, width=4, kernel_size=3, avg_pool=1, max_pools=0)
    with torch.no_grad():
        predictor.head.weight.zero_()
    kernels, bias = predictor(torch.randn(1, 3, 4, 4))
    centre = torch.zeros(9)
    centre[4] = 1
    assert torch.equal(kernels[0, :, 0, 0], centre.repeat(3))
    assert torch.equal(bias, torch.zeros_like(bias))


def test_predictor_reads_the_head_as_interleaved_taps_then_bias():
    torch.manual_seed(0)
    predictor = KernelPredictor(channels=5, width=4, kernel_size=3, avg_pool=1, max_pools=0)
    x = torch.randn(2, 5, 6, 7)
    kernels, bias = predictor(x)
    per_channel = predictor.head(predictor.body(x)).unflatten(1, (5, 10))  # (B, C, K² taps + bias, h, w)
    assert torch.allclose(kernels, per_channel[:, :, :9].flatten(1, 2), atol=1e-6)
    assert torch.allclose(bias, per_channel[:, :, 9], atol=1e-6)
    assert kernels.data_ptr() + kernels.stride(1) * 45 * kernels.element_size() == bias.data_ptr()  # views


def test_inverted_bottleneck_is_residual_and_trainable():
    block = InvertedBottleneck(4, expansion=5)
    with torch.no_grad():
        block.project.weight.zero_()
        block.project.bias.zero_()
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(block(x), x)
    block(x).sum().backward()
    assert block.project.weight.grad.abs().sum() > 0
