"""`restorekit models`: the quality column says on what inputs an SR model's figures were measured."""

from __future__ import annotations

from restorekit.cli.models import REAL_DEGRADED, _quality_text, sr_degradation

REAL_COMMAND = "restorekit bench quality --data kodak24 --task sr --scale 4 --degradation real --save q.json"


def _record(**extra: object) -> dict:
    return {"kodak24": {"y_channel": {"x4": {"psnr": 24.14, "ssim": 0.601}}}} | extra


def test_figures_on_the_real_world_degradation_say_so():
    recorded = _record(_degradation="real", _measured_by="restorekit bench quality …")
    assert _quality_text(recorded) == "kodak24 real-degraded Y ×4: 24.14"
    older = _record(_measured_by=REAL_COMMAND)  # published before `_degradation` was recorded
    assert sr_degradation(older) == "real" and _quality_text(older) == "kodak24 real-degraded Y ×4: 24.14"


def test_figures_on_bicubic_inputs_keep_the_plain_label():
    assert _quality_text(_record(_degradation="bicubic", _measured_by=REAL_COMMAND)) == "kodak24 Y ×4: 24.14"
    assert _quality_text(_record(_measured_by="restorekit bench quality --task sr --scale 4")) == "kodak24 Y ×4: 24.14"
    assert "bicubic downscale" in REAL_DEGRADED


def test_the_shipped_real_world_models_are_listed_as_real_degraded():
    from typer.testing import CliRunner

    from restorekit.cli.app import app

    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for name in ("acdasr_s.real_x4", "tunable_acdasr_s.real_x4"):
        (line,) = [line for line in lines if f" {name} " in line]
        assert "real-degraded Y ×4" in line
    (bicubic,) = [line for line in lines if " acdasr_s.x4 " in line]
    assert "real-degraded" not in bicubic and "sr_set5 Y ×4" in bicubic
    assert any(line.startswith("real-degraded: ") for line in lines)
    assert any(line.startswith("ω (tunable SR, restorekit sr --w") for line in lines)
