"""imresize: the per-pixel oracle, MATLAB's known values and output sizes, validation, Set5's shipped LR files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from restorekit.errors import UsageError
from restorekit.ops.resize import imresize, imresize_reference

SET5 = Path(__file__).resolve().parents[3] / "shared" / "data" / "eval" / "sr_set5"
SCALES = [1 / 2, 1 / 3, 1 / 4, 2, 3, 4]
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def image(*shape, dtype=torch.float64, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kernel", ["cubic", "lanczos3"])
@pytest.mark.parametrize("resize", [{"scale": s} for s in SCALES] + [{"size": (9, 31)}, {"size": (40, 7)}])
def test_matches_the_per_pixel_reference_on_odd_sizes(resize, kernel, dtype):
    x = image(2, 3, 17, 23, dtype=dtype)
    out = imresize(x, kernel=kernel, **resize)
    want = imresize_reference(x, kernel=kernel, **resize)
    assert out.dtype == dtype and out.shape == want.shape
    assert torch.allclose(out, want, rtol=0, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("scale", [1 / 3, 2])
def test_non_contiguous_and_three_dimensional_inputs(scale):
    x = image(2, 3, 17, 46)[..., ::2]
    channels_last = x.contiguous().permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert not x.is_contiguous() and not channels_last.is_contiguous()
    want = imresize_reference(x.contiguous(), scale)
    for y in (x, channels_last):
        assert torch.allclose(imresize(y, scale), want, rtol=0, atol=1e-10)
    assert torch.allclose(imresize(x[1], scale), want[1], rtol=0, atol=1e-10)


def test_runs_on_each_device(device):
    x = image(1, 3, 17, 23).to(device)
    out = imresize(x, 1 / 3)
    assert out.device == x.device
    assert torch.allclose(out.cpu(), imresize_reference(x.cpu(), 1 / 3), rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("resize", "shape"),
    [
        ({"scale": 1 / 2}, (9, 12)),
        ({"scale": 1 / 3}, (6, 8)),
        ({"scale": 1 / 4}, (5, 6)),
        ({"scale": 3}, (51, 69)),
        ({"scale": 0.7}, (12, 17)),
        ({"size": (5, 50)}, (5, 50)),
    ],
)
def test_output_size_is_ceil_of_the_scaled_size(resize, shape):
    assert imresize(image(1, 17, 23), **resize).shape == (1, *shape)


@pytest.mark.parametrize("kernel", ["cubic", "lanczos3"])
@pytest.mark.parametrize("resize", [{"scale": s} for s in SCALES] + [{"size": (8, 50)}])
def test_a_constant_image_stays_constant(resize, kernel):
    x = torch.full((1, 2, 17, 23), 0.37, dtype=torch.float64)
    out = imresize(x, kernel=kernel, **resize)
    assert torch.allclose(out, torch.full_like(out, 0.37), rtol=0, atol=1e-14)


def test_known_values_of_a_two_by_two_upscale():
    """MATLAB's ``imresize([1 2; 3 4], 2)``: mirrored edges, weights (1.09375, −0.09375), (0.796875, 0.203125)."""
    r = torch.tensor([-0.09375, 0.203125, 0.796875, 1.09375], dtype=torch.float64)
    want = 1 + 2 * r[:, None] + r[None, :]
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], dtype=torch.float64)
    assert torch.allclose(imresize(x, 2)[0], want, rtol=0, atol=1e-15)
    assert want[0, 0] == 0.71875


@pytest.mark.parametrize("scale", [2, 3, 4, 1 / 2, 1 / 3])
def test_linear_ramps_are_reproduced_at_matlab_coordinates_away_from_the_border(scale):
    """Keys' cubic reproduces linear functions; output i (1-based) samples input coordinate i/s + (1 − 1/s)/2."""
    x = torch.arange(48, dtype=torch.float64).view(1, 48, 1).expand(1, 48, 3)
    out = imresize(x, size=(round(48 * scale), 3))[0, :, 1]
    i = torch.arange(1, out.numel() + 1, dtype=torch.float64)
    want = i / scale + 0.5 * (1 - 1 / scale) - 1  # 0-based: the ramp's value at that coordinate
    margin = 3 * max(1, round(scale))  # outputs whose taps reach past the edges
    assert torch.allclose(out[margin:-margin], want[margin:-margin], rtol=0, atol=1e-12)


def test_the_same_size_is_the_identity():
    x = image(2, 3, 17, 23)
    assert torch.equal(imresize(x, size=(17, 23)), x)
    assert torch.allclose(imresize(x, 1, kernel="lanczos3"), x, rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((torch.zeros(2, 2),), {"scale": 2}, r"expected a \(B, C, H, W\) or \(C, H, W\) tensor"),
        ((torch.zeros(1, 2, 2, dtype=torch.int64),), {"scale": 2}, "dtype: expected one of"),
        ((torch.zeros(1, 0, 2),), {"scale": 2}, "expected a non-empty image"),
        ((torch.zeros(1, 2, 2),), {}, "expected exactly one of scale and size"),
        ((torch.zeros(1, 2, 2),), {"scale": 2, "size": (4, 4)}, "expected exactly one of scale and size"),
        ((torch.zeros(1, 2, 2),), {"scale": 0}, "scale: expected a finite number > 0"),
        ((torch.zeros(1, 2, 2),), {"scale": float("inf")}, "scale: expected a finite number > 0"),
        ((torch.zeros(1, 2, 2),), {"size": (4,)}, r"size: expected \(height, width\)"),
        ((torch.zeros(1, 2, 2),), {"size": (4, 0)}, "size: expected two positive integers"),
        ((torch.zeros(1, 2, 2),), {"size": (4, 2.5)}, "size: expected two positive integers"),
        ((torch.zeros(1, 2, 2),), {"scale": 2, "kernel": "linear"}, "kernel: expected one of the valid choices"),
    ],
)
def test_validation(args, kwargs, match):
    for function in (imresize, imresize_reference):
        with pytest.raises(UsageError, match=match):
            function(*args, **kwargs)


def quantise(x: torch.Tensor) -> torch.Tensor:
    """MATLAB's conversion to uint8: round half away from zero, saturate."""
    return (x + 0.5).floor().clamp(0, 255)


def matlab_uint8(hr: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """MATLAB's imresize on a uint8 image: the rows pass first (equal scales), rounded to uint8, then the columns."""
    return quantise(imresize(quantise(imresize(hr, size=(height, hr.shape[-1]))), size=(height, width)))


def load(path: Path) -> torch.Tensor:
    from PIL import Image

    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).double()


@pytest.mark.data
@pytest.mark.skipif(not SET5.is_dir(), reason=f"{SET5} is not present")
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_reproduces_the_shipped_set5_lr_images(factor):
    """The LR files are MATLAB's imresize of the uint8 RGB HR images, but with an older MATLAB's border rule.

    They were made on uint8 (rows rounded to uint8, then columns), with out-of-range indices *clamped*
    (pre-mirroring MATLAB: "replicating end-points"), not mirrored. Replicate-padding the HR by a multiple of
    the factor reproduces that rule exactly; without it, every pixel whose taps stay inside the image agrees.
    A single float resize rounded once differs by one level on ~10–15 % of pixels and by two on a handful.
    """
    pairs = sorted(SET5.glob(f"image_SRF_{factor}/*_HR.png"))
    assert len(pairs) == 5
    for hr_path in pairs:
        hr, lr = load(hr_path), load(hr_path.with_name(hr_path.name.replace("_HR", "_LR")))
        height, width = lr.shape[-2:]
        assert hr.shape[-2:] == (height * factor, width * factor)
        k = 4  # LR pixels of replicate padding, more than the 2-pixel antialiased kernel radius
        padded = F.pad(hr[None], (k * factor,) * 4, mode="replicate")[0]
        assert torch.equal(matlab_uint8(padded, height + 2 * k, width + 2 * k)[:, k:-k, k:-k], lr)
        assert torch.equal(matlab_uint8(hr, height, width)[:, 2:-2, 2:-2], lr[:, 2:-2, 2:-2])
        single = quantise(imresize(padded / 255, 1 / factor) * 255)[:, k:-k, k:-k]
        difference = (single - lr).abs()
        assert difference.max() <= 2 and (difference > 1).double().mean() < 1e-4
        assert (difference > 0).double().mean() < 0.2
