"""Super-resolution through the inference API (shapes, tiling, channels, validation, defaults) and ``io.resized``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from torch import nn

import restorekit
from restorekit.errors import UsageError, WeightsError
from restorekit.inference import api, tiling
from restorekit.inference.io import Image, resized
from restorekit.models import Requirements, _weights
from restorekit.models.acdasr import ACDASR
from restorekit.ops.resize import imresize

EXIF_IFD, PIXEL_X, PIXEL_Y, MAKE, DATE_TAKEN = 0x8769, 0xA002, 0xA003, 0x010F, 0x9003


def sr_model(scale: int, in_channels: int = 3, blocks: int = 1, seed: int = 0) -> ACDASR:
    """A small random ACDA-SR whose blocks and tail (zero or near zero when fresh) really contribute."""
    torch.manual_seed(seed)
    model = ACDASR(scale=scale, in_channels=in_channels, width=16, blocks=blocks)
    with torch.no_grad():
        for block in model.body:
            block.expand.weight.normal_(std=0.3)
        model.tail[-1].weight.normal_(std=0.02)
    return model.eval()


class Bicubic(nn.Module):
    """An ×``scale`` model that is plain bicubic upsampling (equivariant to flips and quarter turns)."""

    def __init__(self, scale: int = 2):
        super().__init__()
        self.scale = scale
        self.requirements = Requirements(task="sr", in_channels=3, out_channels=3, scale=scale, receptive_field=4)

    def forward(self, x, sigma):
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shape_and_run_info(scale, make_pixels):
    pixels = make_pixels(37, 53)
    out, info = api.super_resolve_image(pixels, scale, sr_model(scale), "cpu", dtype="fp32")
    assert out.shape == (37 * scale, 53 * scale, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert (info.scale, info.sigma, info.sigma_source, info.dtype) == (scale, None, "blind", "fp32")
    assert info.model == "ACDASR" and info.device == "cpu" and info.as_dict()["scale"] == scale
    assert restorekit.super_resolve(pixels[:9, :7], scale, sr_model(scale), "cpu").shape == (9 * scale, 7 * scale, 3)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_tiled_equals_untiled(scale, make_pixels):
    pixels = make_pixels(45, 53, seed=scale)
    model = sr_model(scale)
    _, _, rows, cols = tiling._grid(45, 53, 24, model.requirements)
    assert len(rows) > 1 and len(cols) > 1  # the tile (raised to the smallest useful one) cuts both ways
    whole, whole_info = api.super_resolve_image(pixels, scale, model, "cpu", tile=0, dtype="fp32")
    tiled, info = api.super_resolve_image(pixels, scale, model, "cpu", tile=24, dtype="fp32")
    assert whole_info.tile is None and info.tile is not None
    assert tiled.shape == whole.shape == (45 * scale, 53 * scale, 3)
    assert np.abs(tiled - whole).max() < 1 / 255
    assert np.abs(whole - restorekit.super_resolve(pixels, scale, Bicubic(scale), "cpu", tile=0)).max() > 1 / 255


def test_output_is_the_model_output_clipped(make_pixels):
    pixels = make_pixels(13, 17)
    model = sr_model(3)
    out = restorekit.super_resolve(pixels, 3, model, "cpu", tile=0, dtype="fp32")
    with torch.no_grad():
        expected = model(torch.from_numpy(pixels).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_gray_image_through_a_colour_model_is_the_channel_mean(make_pixels):
    gray = make_pixels(13, 17, channels=1)
    model = sr_model(2)
    out, info = api.super_resolve_image(gray, 2, model, "cpu", tile=0, dtype="fp32")
    assert out.shape == (26, 34, 1)
    x = torch.from_numpy(gray).permute(2, 0, 1)[None].expand(1, 3, 13, 17)
    with torch.no_grad():
        expected = model(x).mean(dim=1).clamp(0, 1)[0].numpy()
    np.testing.assert_allclose(out[..., 0], expected, atol=1e-5)
    assert any("colour model" in note for note in info.notes)


def test_colour_image_through_a_gray_model_runs_per_channel(make_pixels):
    pixels = make_pixels(13, 17)
    model = sr_model(2, in_channels=1)
    out, info = api.super_resolve_image(pixels, 2, model, "cpu", tile=0, dtype="fp32")
    planes = [restorekit.super_resolve(pixels[..., c : c + 1], 2, model, "cpu", tile=0, dtype="fp32") for c in range(3)]
    np.testing.assert_allclose(out, np.concatenate(planes, axis=-1), atol=1e-6)
    assert any("gray model" in note for note in info.notes)


def test_ensemble_of_an_equivariant_model(make_pixels):
    pixels = make_pixels(12, 17)
    single = restorekit.super_resolve(pixels, 2, Bicubic(2), "cpu", tile=0, dtype="fp32")
    out, info = api.super_resolve_image(pixels, 2, Bicubic(2), "cpu", tile=0, dtype="fp32", ensemble=True)
    assert info.ensemble and out.shape == (24, 34, 3)
    np.testing.assert_allclose(out, single, atol=1e-5)


def test_a_model_of_another_scale_is_a_usage_error(make_pixels):
    with pytest.raises(UsageError, match="×3"):
        restorekit.super_resolve(make_pixels(12, 16), 3, sr_model(2), "cpu")


def test_a_denoiser_is_a_usage_error(make_pixels, tiny_model):
    with pytest.raises(UsageError, match="super-resolution"):
        restorekit.super_resolve(make_pixels(12, 16), 2, tiny_model, "cpu")


@pytest.mark.parametrize("scale", [1, 5, 0, True, "2", None])
def test_bad_scales_are_usage_errors(scale, make_pixels):
    with pytest.raises(UsageError, match="scale"):
        restorekit.super_resolve(make_pixels(12, 16), scale, sr_model(2), "cpu")


@pytest.mark.parametrize("model", [None, "tiny"])
def test_a_float_scale_is_a_usage_error(model, make_pixels):
    with pytest.raises(UsageError, match="scale"):
        restorekit.super_resolve(make_pixels(12, 16), 2.0, sr_model(2) if model else None, "cpu")


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), np.nan, np.float32)])
def test_bad_images_are_usage_errors(bad):
    with pytest.raises(UsageError, match="image"):
        restorekit.super_resolve(bad, 2, sr_model(2), "cpu")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_no_shipped_model_for_the_scale_is_a_weights_error(scale, make_pixels, monkeypatch):
    monkeypatch.setattr(_weights, "shipped", dict)
    with pytest.raises(WeightsError, match=rf"×{scale} super-resolution model ships"):
        restorekit.super_resolve(make_pixels(12, 16), scale, device="cpu")
    with pytest.raises(WeightsError, match="super-resolution"):
        restorekit.super_resolve(make_pixels(12, 16, channels=1), scale, device="cpu")


# -------------------------------------------------------------------------------------------- io.resized


def source_image(alpha=None, dpi=None, exif=None, height=6, width=8) -> Image:
    pixels = np.zeros((height, width, 3), np.float32)
    depth = 8 if alpha is None or alpha.dtype == np.uint8 else 16 if alpha.dtype == np.uint16 else 32
    return Image(pixels, alpha, depth, "RGBA" if alpha is not None else "RGB", "PNG", dpi=dpi, exif=exif)


def step_alpha(dtype) -> np.ndarray:
    """A hard edge from transparent to opaque: bicubic overshoots both ends."""
    top = 1.0 if dtype == np.float32 else np.iinfo(dtype).max
    alpha = np.zeros((6, 8), dtype)
    alpha[:, 4:] = top
    alpha[2, 1] = top // 3 if dtype != np.float32 else 0.3
    return alpha


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_alpha_is_upscaled_keeping_its_type_and_range(dtype):
    alpha = step_alpha(dtype)
    out = resized(source_image(alpha), np.zeros((12, 16, 3), np.float32))
    top = np.iinfo(dtype).max
    assert out.alpha.shape == (12, 16) and out.alpha.dtype == dtype
    assert out.alpha.min() == 0 and out.alpha.max() == top
    unit = torch.from_numpy(alpha.astype(np.float64) / top)[None, None]
    expected = np.round(np.clip(imresize(unit, size=(12, 16))[0, 0].numpy(), 0, 1) * top)
    assert np.abs(out.alpha.astype(np.int64) - expected).max() <= 1
    assert out.pixels.shape == (12, 16, 3) and out.mode == "RGBA" and out.bit_depth == alpha.itemsize * 8


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_opaque_alpha_stays_opaque(dtype):
    alpha = np.full((6, 8), np.iinfo(dtype).max, dtype)
    out = resized(source_image(alpha), np.zeros((18, 24, 3), np.float32))
    assert out.alpha.dtype == dtype and np.array_equal(out.alpha, np.full((18, 24), np.iinfo(dtype).max, dtype))


def test_float_alpha_stays_float():
    out = resized(source_image(step_alpha(np.float32)), np.zeros((12, 16, 3), np.float32))
    assert out.alpha.shape == (12, 16) and out.alpha.dtype == np.float32


def test_float_alpha_is_clipped_to_its_own_range():
    out = resized(source_image(step_alpha(np.float32)), np.zeros((12, 16, 3), np.float32))
    assert out.alpha.min() >= 0 and out.alpha.max() <= 1


def test_no_alpha_stays_none():
    assert resized(source_image(), np.zeros((12, 16, 3), np.float32)).alpha is None


@pytest.mark.parametrize(("scale", "dpi"), [(2, (72.0, 96.0)), (3, (300.0, 300.0))])
def test_dpi_scales_with_the_pixels(scale, dpi):
    out = resized(source_image(dpi=dpi), np.zeros((6 * scale, 8 * scale, 3), np.float32))
    assert out.dpi == pytest.approx((dpi[0] * scale, dpi[1] * scale))
    assert resized(source_image(), np.zeros((12, 16, 3), np.float32)).dpi is None


def exif_bytes(with_size: bool) -> bytes:
    tags = PILImage.Exif()
    tags[MAKE] = "Camera Maker"
    sub = tags.get_ifd(EXIF_IFD)
    sub[DATE_TAKEN] = "2024:01:02 03:04:05"
    if with_size:
        sub[PIXEL_X], sub[PIXEL_Y] = 8, 6
    data = tags.tobytes()
    return data if data.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + data


def read_exif(data: bytes) -> tuple[PILImage.Exif, dict]:
    tags = PILImage.Exif()
    tags.load(data)
    return tags, tags.get_ifd(EXIF_IFD)


def test_exif_pixel_dimensions_follow_the_new_size():
    out = resized(source_image(exif=exif_bytes(True)), np.zeros((18, 24, 3), np.float32))
    assert out.exif.startswith(b"Exif\x00\x00")
    tags, sub = read_exif(out.exif)
    assert (sub[PIXEL_X], sub[PIXEL_Y]) == (24, 18)
    assert tags[MAKE] == "Camera Maker" and sub[DATE_TAKEN] == "2024:01:02 03:04:05"


def test_exif_without_pixel_dimensions_is_carried_byte_for_byte():
    exif = exif_bytes(False)
    out = resized(source_image(exif=exif), np.zeros((12, 16, 3), np.float32))
    assert out.exif == exif
    assert resized(source_image(), np.zeros((12, 16, 3), np.float32)).exif is None


def test_resized_leaves_the_source_alone():
    alpha = step_alpha(np.uint8)
    source = source_image(alpha.copy(), dpi=(72.0, 72.0), exif=exif_bytes(True))
    before = (source.exif, source.dpi, source.pixels.shape)
    resized(source, np.zeros((12, 16, 3), np.float32))
    assert (source.exif, source.dpi, source.pixels.shape) == before and np.array_equal(source.alpha, alpha)


# The fidelity ↔ detail knob: ω on an sr restoration runs the shipped tunable model of the scale, folded.
needs_tunable_sr = pytest.mark.skipif(
    "tunable_acdasr_s.real_x4" not in _weights.shipped(), reason="no tunable ×4 SR model ships"
)


def test_w_chooses_the_tunable_default_kind():
    assert api.Restoration(task="sr", scale=4).kind == "sr4"
    spec = api.Restoration(task="sr", scale=4, w=(0.3, 0.7))
    assert spec.kind == "tune_sr4" and spec.tunable
    assert not api.Restoration(task="sr", scale=4).tunable and api.Restoration(task="tune").tunable
    plain = api.Restoration(task="sr", scale=4)
    assert plain.at((0.5, 0.5))._resolved is not plain._resolved and spec.at((1, 0))._resolved is spec._resolved


@needs_tunable_sr
def test_super_resolve_with_w_equals_the_folded_model():
    from restorekit.models import create_model

    pixels = np.random.default_rng(0).random((10, 12, 3), dtype=np.float32)
    out, info = api.super_resolve_image(pixels, scale=4, w=[0.3, 0.7], device="cpu", dtype="fp32")
    folded = create_model("tunable_acdasr_s.real_x4").fold((0.3, 0.7))
    direct = restorekit.super_resolve(pixels, scale=4, model=folded, device="cpu", dtype="fp32")
    assert out.shape == (40, 48, 3) and info.w == (0.3, 0.7) and info.scale == 4
    np.testing.assert_allclose(out, direct, atol=1e-5)


@needs_tunable_sr
def test_w_off_the_domain_or_a_plain_model_is_refused_before_any_work():
    with pytest.raises(UsageError, match="sum to 1"):
        api.check_restoration(api.Restoration(task="sr", scale=4, w=(0.5, 0.6), device="cpu"))
    with pytest.raises(UsageError, match="tunable model"):
        api.check_restoration(api.Restoration(task="sr", scale=4, w=(0.5, 0.5), model="acdasr_s.x4", device="cpu"))


def test_w_at_a_scale_without_a_tunable_model_names_what_ships():
    with pytest.raises(WeightsError, match="no tunable ×2 super-resolution model"):
        api.check_restoration(api.Restoration(task="sr", scale=2, w=(0.5, 0.5), device="cpu"))


def test_a_sweep_of_an_sr_restoration_runs_the_tunable_model():
    from restorekit.inference.sweep import swept

    assert swept(api.Restoration(task="sr", scale=4)).kind == "tune_sr4"
    assert swept(api.Restoration(task="tune")).w is None
