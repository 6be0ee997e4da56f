"""The batch as a library: `restorekit.restore_files` (the README's folder example), its summary and events."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import restorekit
from restorekit.batch import Engine, Events, Summary
from restorekit.errors import UsageError, WeightsError
from restorekit.models._weights import shipped

README = Path(__file__).parents[2] / "README.md"


def readme_folder_example() -> str:
    """The README's Python block that calls ``restore_files``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    (block,) = [b for b in blocks if "restore_files" in b]
    return block


@pytest.mark.skipif("mallenet_s.awgn_color" not in shipped(), reason="the default Gaussian model does not ship")
def test_the_readme_denoises_a_folder_with_one_call(tmp_path, write_png, monkeypatch, capsys):
    for index in range(2):
        write_png(tmp_path / "noisy" / f"{index}.png", seed=index)
    monkeypatch.chdir(tmp_path)
    exec(readme_folder_example(), {})
    assert sorted(os.listdir(tmp_path / "clean")) == ["0.png", "1.png"]
    assert "{'ok': 2, 'exists': 0, 'claimed': 0, 'failed': 0}" in capsys.readouterr().out


class Heard(Events):
    def __init__(self):
        self.heard: list[tuple[str, object]] = []

    def planned(self, count):
        self.heard.append(("planned", count))

    def start(self, source):
        self.heard.append(("start", source.name))

    def finished(self, result):
        self.heard.append(("finished", result.status))


def test_a_summary_per_file_in_input_order_with_events(tmp_path, write_png, tiny_weights):
    sources = [write_png(tmp_path / "in" / f"{name}.png") for name in ("a", "b")]
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    spec = restorekit.Restoration(sigma=20, model=tiny_weights, device="cpu")
    events = Heard()
    summary = restorekit.restore_files(tmp_path / "in", spec, output=tmp_path / "out", events=events)
    assert isinstance(summary, Summary) and summary.exit_code == 0 and summary.error is None
    assert [r.job.source for r in summary.results] == sources and summary.counts["ok"] == 2
    assert summary.as_dict()["skipped"] == {"not an image": 1}
    assert summary.results[0].fields["sigma"] == 20 and summary.results[0].fields["sigma_source"] == "given"
    assert events.heard == [
        ("planned", 2), ("start", "a.png"), ("finished", "ok"), ("start", "b.png"), ("finished", "ok")
    ]  # fmt: skip
    again = restorekit.restore_files(tmp_path / "in", spec, output=tmp_path / "out")
    assert again.counts["exists"] == 2 and "`overwrite=True`" in again.results[0].message


def test_the_model_is_resolved_once_for_the_whole_batch(tmp_path, write_png, tiny_weights, monkeypatch):
    from restorekit.inference import api

    for name in ("a", "b", "c"):
        write_png(tmp_path / f"{name}.png")
    calls = []
    resolve = api._resolve
    monkeypatch.setattr(api, "_resolve", lambda spec, channels: calls.append(channels) or resolve(spec, channels))
    spec = restorekit.Restoration(sigma=20, model=tiny_weights, device="cpu")
    summary = restorekit.restore_files(sorted(tmp_path.glob("*.png")), spec, output=tmp_path / "out")
    assert summary.counts["ok"] == 3 and calls == [3]


def test_settings_are_refused_once_before_any_file_in_library_words(tmp_path, write_png, tiny_weights):
    source = write_png(tmp_path / "a.png")
    with pytest.raises(UsageError, match=r"^sigma: expected a noise level in \[0, 75\]") as caught:
        restorekit.restore_files(source, restorekit.Restoration(sigma=80, model=tiny_weights, device="cpu"))
    assert caught.value.parameter == "sigma"
    with pytest.raises(WeightsError):
        restorekit.restore_files(source, restorekit.Restoration(model=tmp_path / "missing.safetensors"))
    with pytest.raises(UsageError, match=r"^bit_depth: "):
        restorekit.restore_files(source, restorekit.Restoration(sigma=20, model=tiny_weights), bit_depth=12)
    with pytest.raises(UsageError, match=r"^ray_actors: expected `engine='ray'` with it"):
        Engine("local", actors=2)
    assert not list(tmp_path.glob("a_*"))
