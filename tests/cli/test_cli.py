"""The CLI shell: exit codes, one-line errors, batches, output naming and safety, --json, progress."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from restorekit.cli._console import ExitCode, Reporter
from restorekit.cli.app import app
from restorekit.inference import tiling
from restorekit.inference.io import load_image
from restorekit.models._weights import load_model, shipped

runner = CliRunner()
_spec = importlib.util.spec_from_file_location("hostile_corpus", Path(__file__).parents[1] / "hostile_corpus.py")
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
SUMMARY_KEYS = {"command", "ok", "exists", "claimed", "failed", "skipped", "interrupted", "exit_code", "files"}
FILE_KEYS = {"input", "output", "status", "error", "sigma", "sigma_source", "model", "device", "dtype", "tile"}
FILE_KEYS |= {"ms", "notes", "ensemble", "w", "scale"}


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def summary(result) -> dict:
    payload = json.loads(result.stdout)
    assert set(payload) == SUMMARY_KEYS
    for record in payload["files"]:
        assert set(record) == FILE_KEYS
    return payload


@pytest.fixture
def batch(tmp_path, write_png):
    """A folder of good images (with a sub-folder, hidden and system files) → its path."""
    folder = tmp_path / "in"
    for name in ("a.png", "b.png", "sub/c.png", "sub/deeper/d.png"):
        write_png(folder / name, seed=len(name))
    write_png(folder / ".hidden.png")
    write_png(folder / ".git" / "e.png")
    write_png(folder / "__MACOSX" / "f.png")
    (folder / "Thumbs.db").write_bytes(b"\x00" * 10)
    (folder / "desktop.ini").write_text("[.ShellClassInfo]")
    (folder / "notes.txt").write_text("not an image, and not an image suffix")
    return folder


def test_single_file_reports_sigma_and_keeps_the_input(tmp_path, write_png, tiny_weights, tree_hash):
    source = write_png(tmp_path / "photo.png")
    before = tree_hash(source)
    result = invoke("denoise", source, "--sigma", "25", "--model", tiny_weights)
    assert result.exit_code == 0, result.output
    output = tmp_path / "photo_denoised.png"
    assert load_image(output).pixels.shape == (24, 40, 3)
    assert "σ 25.0 (given)" in result.stderr and "mallenet_s.tiny_test" in result.stderr
    assert tree_hash(source) == before


def test_sigma_auto_and_explicit_output_file(tmp_path, write_png, tiny_weights):
    source = write_png(tmp_path / "photo.png")
    result = invoke("denoise", source, "-o", tmp_path / "clean.tif", "--model", tiny_weights, "--json")
    assert result.exit_code == 0, result.output
    (record,) = summary(result)["files"]
    assert record["status"] == "ok" and record["sigma_source"] == "estimated" and record["sigma"] > 0
    assert record["output"].endswith("clean.tif") and load_image(tmp_path / "clean.tif").format == "TIFF"


def test_json_summary_schema(batch, tmp_path, tiny_weights):
    result = invoke("denoise", batch, "-r", "-o", tmp_path / "out", "--sigma", "15", "--model", tiny_weights, "--json")
    assert result.exit_code == 0, result.output
    payload = summary(result)
    assert (payload["command"], payload["ok"], payload["exists"], payload["failed"]) == ("denoise", 4, 0, 0)
    for record in payload["files"]:
        assert record["status"] == "ok" and record["error"] is None
        assert record["sigma"] == 15 and record["model"] == "mallenet_s.tiny_test"
        assert record["device"] == "cpu" and record["dtype"] in ("fp32", "bf16") and record["ms"] > 0
    result = invoke(
        "denoise", batch, "-o", tmp_path / "b", "--sigma", "15", "-m", tiny_weights, "--dtype", "fp32", "--json"
    )
    assert result.exit_code == 0, result.output
    assert {record["dtype"] for record in summary(result)["files"]} == {"fp32"}
    assert not any(record["ensemble"] for record in summary(result)["files"])


def test_ensemble_option_is_reported(tmp_path, write_png, tiny_weights):
    source = write_png(tmp_path / "photo.png")
    result = invoke("denoise", source, "--sigma", "25", "-m", tiny_weights, "--ensemble", "--json")
    assert result.exit_code == 0, result.output
    (record,) = summary(result)["files"]
    assert record["status"] == "ok" and record["ensemble"] is True


def test_recursive_mirrors_the_tree_and_ignores_hidden_and_system_files(batch, tmp_path, tiny_weights, tree_hash):
    before = tree_hash(batch)
    out = tmp_path / "out"
    result = invoke("denoise", batch, "-r", "-o", out, "--sigma", "15", "--model", tiny_weights)
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a.png", "b.png", "sub/c.png", "sub/deeper/d.png"]
    assert tree_hash(batch) == before


def test_without_recursive_only_the_top_level(batch, tmp_path, tiny_weights):
    out = tmp_path / "out"
    result = invoke("denoise", batch, "-o", out, "--sigma", "15", "--model", tiny_weights, "--suffix", "_x")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a_x.png", "b_x.png"]


def test_globs_and_sorted_order(batch, tmp_path, tiny_weights):
    result = invoke(
        "denoise", batch / "*.png", "-o", tmp_path / "out", "--sigma", "5", "--model", tiny_weights, "--json"
    )
    assert result.exit_code == 0, result.output
    assert [Path(r["input"]).name for r in summary(result)["files"]] == ["a.png", "b.png"]


def test_refuses_to_overwrite_existing_outputs(tmp_path, write_png, tiny_weights, tree_hash):
    source = write_png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    existing = write_png(out / "a.png", seed=7)
    before = tree_hash(existing)
    result = invoke("denoise", source.parent, "-o", out, "--sigma", "10", "--model", tiny_weights, "--json")
    assert result.exit_code == 0, result.output
    assert summary(result)["files"][0]["status"] == "exists" and tree_hash(existing) == before
    result = invoke("denoise", source.parent, "-o", out, "--sigma", "10", "--model", tiny_weights, "--overwrite")
    assert result.exit_code == 0 and tree_hash(existing) != before


@pytest.mark.parametrize("how", ["same-file", "same-folder"])
def test_never_writes_over_an_input_even_with_overwrite(tmp_path, write_png, tiny_weights, tree_hash, how):
    source = write_png(tmp_path / "a.png")
    before = tree_hash(tmp_path)
    target = ["-o", source] if how == "same-file" else ["-o", tmp_path, "--suffix", ""]
    result = invoke("denoise", source, *target, "--overwrite", "--sigma", "10", "--model", tiny_weights)
    assert result.exit_code == ExitCode.FAILED
    assert "is an input" in error_lines(result)[0]
    assert tree_hash(tmp_path) == before


def write_bad_files(folder: Path, write_png) -> dict[str, str]:
    """Bad inputs next to good ones → {file name: expected words in its error line}."""
    (folder / "zero.png").write_bytes(b"")
    good = write_png(folder / "truncated.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "text.png").write_text("hello, I am not an image")
    write_png(folder / "huge.png", height=64, width=64)
    Image.new("LAB", (8, 8)).save(folder / "lab.tif")
    return {
        "zero.png": "empty file",
        "truncated.png": "truncated",
        "text.png": "not a supported image",
        "huge.png": "exceeds",
        "lab.tif": "mode",
    }


def test_bad_inputs_fail_one_line_each_while_the_rest_succeeds(tmp_path, write_png, tiny_weights, tree_hash):
    folder = tmp_path / "in"
    write_png(folder / "good1.png")
    write_png(folder / "good2.png")
    expected = write_bad_files(folder, write_png)
    before = tree_hash(folder)
    out = tmp_path / "out"
    args = ["denoise", folder, "-o", out, "--sigma", "20", "--model", tiny_weights, "--max-pixels", 2000, "--json"]
    result = invoke(*args)
    assert result.exit_code == ExitCode.FAILED
    payload = summary(result)
    assert (payload["ok"], payload["failed"]) == (2, len(expected))
    lines = error_lines(result)
    assert len(lines) == len(expected)
    for name, words in expected.items():
        (line,) = [line for line in lines if name in line]
        assert words in line, line
    assert sorted(p.name for p in out.iterdir()) == ["good1.png", "good2.png"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert tree_hash(folder) == before


@pytest.mark.skipif(ROOT, reason="root reads and writes regardless of permissions")
def test_unreadable_input_and_unwritable_output(tmp_path, write_png, tiny_weights, tree_hash):
    folder = tmp_path / "in"
    write_png(folder / "good.png")
    locked = write_png(folder / "locked.png")
    locked.chmod(0)
    try:
        result = invoke("denoise", folder, "-o", tmp_path / "out", "--sigma", "20", "--model", tiny_weights)
        assert result.exit_code == ExitCode.FAILED
        (line,) = error_lines(result)
        assert "locked.png" in line and "permission denied" in line
        assert (tmp_path / "out" / "good.png").is_file()
    finally:
        locked.chmod(0o644)
    before = tree_hash(folder)
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    try:
        result = invoke("denoise", folder, "-o", readonly, "--sigma", "20", "--model", tiny_weights)
        assert result.exit_code == ExitCode.FAILED
        assert len(error_lines(result)) == 2 and "cannot write" in error_lines(result)[0]
        assert list(readonly.iterdir()) == []
    finally:
        readonly.chmod(0o755)
    assert tree_hash(folder) == before


def test_unreadable_input_and_blocked_output_folder(tmp_path, write_png, tiny_weights):
    good = write_png(tmp_path / "good.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    result = invoke("denoise", good, tmp_path / "dangling.png", "--sigma", "20", "--model", tiny_weights)
    assert result.exit_code == ExitCode.FAILED
    (line,) = error_lines(result)
    assert "dangling.png" in line and "no such file" in line
    (tmp_path / "blocker").write_text("a file where the output folder should go")
    result = invoke("denoise", good, "-o", tmp_path / "blocker" / "out", "--sigma", "20", "--model", tiny_weights)
    assert result.exit_code == ExitCode.USAGE
    (line,) = error_lines(result)
    assert f"{tmp_path / 'blocker'} is a file, not a folder" in line


def test_missing_input_fails_that_file(tmp_path, write_png, tiny_weights):
    good = write_png(tmp_path / "good.png")
    result = invoke("denoise", good, tmp_path / "missing.png", "--sigma", "20", "--model", tiny_weights)
    assert result.exit_code == ExitCode.FAILED
    assert "missing.png: no such file" in error_lines(result)[0]
    assert (tmp_path / "good_denoised.png").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sigma", "loud"], "--sigma"),
        (["--sigma", "80"], "[0, 75]"),
        (["--device", "tpu"], "valid: auto, cpu"),
        (["--bit-depth", "12"], "--bit-depth"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, write_png, tiny_weights, args, message):
    source = write_png(tmp_path / "a.png")
    result = invoke("denoise", source, "--model", tiny_weights, *args)
    assert result.exit_code == ExitCode.USAGE
    (line,) = error_lines(result)
    assert message in line and "Traceback" not in result.output


def test_empty_folder_fails_as_an_input_and_unknown_option_is_a_usage_error(tmp_path, tiny_weights):
    (tmp_path / "empty").mkdir()
    result = invoke("denoise", tmp_path / "empty", "-m", tiny_weights)
    assert result.exit_code == ExitCode.FAILED
    (line,) = error_lines(result)
    assert "empty: no images found" in line
    assert invoke("denoise", tmp_path / "empty", "--no-such-option").exit_code == ExitCode.USAGE


def test_weights_errors_exit_3(tmp_path, write_png):
    source = write_png(tmp_path / "a.png")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(os.urandom(100))
    for model in (tmp_path / "missing.safetensors", corrupt, "no_such.model"):
        result = invoke("denoise", source, "--model", model)
        assert result.exit_code == ExitCode.WEIGHTS
        assert len(result.stderr.strip().splitlines()) == 1 and error_lines(result)
    assert not (tmp_path / "a_denoised.png").exists()


@pytest.mark.skipif("mallenet_s.awgn_color" in shipped(), reason="a default colour model ships")
def test_no_default_model_exits_3(tmp_path, write_png):
    result = invoke("denoise", write_png(tmp_path / "a.png"))
    assert result.exit_code == ExitCode.WEIGHTS and "no trained denoiser" in error_lines(result)[0]


def test_json_reports_errors_that_stop_the_command(tmp_path, write_png):
    result = invoke("denoise", write_png(tmp_path / "a.png"), "--model", tmp_path / "missing.safetensors", "--json")
    assert result.exit_code == ExitCode.WEIGHTS
    payload = json.loads(result.stdout)
    assert payload["exit_code"] == ExitCode.WEIGHTS and "missing.safetensors" in payload["error"]


def test_host_memory_exhaustion_fails_that_file_only(tmp_path, write_png, tiny_weights, monkeypatch):
    from restorekit.batch import _jobs as per_file

    real = per_file.load_image

    def load(path, max_pixels):
        if Path(path).name == "big.png":
            raise MemoryError
        return real(path, max_pixels=max_pixels)

    monkeypatch.setattr(per_file, "load_image", load)
    folder = tmp_path / "in"
    write_png(folder / "big.png")
    write_png(folder / "small.png")
    result = invoke("denoise", folder, "-o", tmp_path / "out", "--sigma", "10", "--model", tiny_weights)
    assert result.exit_code == ExitCode.FAILED
    assert "big.png: out of memory" in error_lines(result)[0] and (tmp_path / "out" / "small.png").is_file()


def test_verbose_adds_the_traceback(tmp_path, write_png):
    source = write_png(tmp_path / "a.png")
    result = invoke("denoise", source, "--model", tmp_path / "missing.safetensors", "--verbose")
    assert result.exit_code == ExitCode.WEIGHTS and "Traceback" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_exits_4(tmp_path, write_png, tiny_weights):
    result = invoke("denoise", write_png(tmp_path / "a.png"), "--device", "cuda", "--model", tiny_weights)
    assert result.exit_code == ExitCode.DEVICE and "CUDA is not available" in error_lines(result)[0]


def test_out_of_memory_at_the_smallest_tile_exits_4(tmp_path, write_png, tiny_weights, monkeypatch):
    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("out of memory")

    monkeypatch.setattr(tiling, "run_tiled", exhausted)
    result = invoke("denoise", write_png(tmp_path / "a.png"), "--sigma", "10", "--model", tiny_weights)
    assert result.exit_code == ExitCode.DEVICE and "smallest tile" in error_lines(result)[0]


def test_keyboard_interrupt_exits_130(tmp_path, write_png, tiny_weights, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tiling, "run_tiled", interrupted)
    result = invoke("denoise", write_png(tmp_path / "a.png"), "--sigma", "10", "--model", tiny_weights)
    assert result.exit_code == ExitCode.INTERRUPTED and "interrupted" in result.stderr


def test_progress_jsonl_on_stderr(batch, tmp_path, tiny_weights):
    args = ["denoise", batch, "-o", tmp_path / "out", "--sigma", "10", "--model", tiny_weights]
    result = invoke(*args, "--progress", "jsonl")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    done = [e for e in events if e["event"] == "progress"]
    assert [(e["done"], e["total"], e["status"]) for e in done] == [(1, 2, "ok"), (2, 2, "ok")]
    assert done[0]["sigma"] == 10 and result.stdout == ""


def test_bit_depth_16(tmp_path, write_png, tiny_weights):
    source = write_png(tmp_path / "a.png")
    result = invoke("denoise", source, "--sigma", "10", "--model", tiny_weights, "--bit-depth", "16")
    assert result.exit_code == 0, result.output
    assert load_image(tmp_path / "a_denoised.png").bit_depth == 16


def test_gray_image_with_gray_model(tmp_path, write_png, tiny_gray_weights):
    source = write_png(tmp_path / "g.png", channels=1)
    result = invoke("denoise", source, "--sigma", "10", "--model", tiny_gray_weights)
    assert result.exit_code == 0, result.output
    assert load_image(tmp_path / "g_denoised.png").pixels.shape == (24, 40, 1)


def test_stale_temp_files_of_a_hard_kill_are_removed(tmp_path, write_png, tiny_weights):
    source = write_png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".a.png.0123abcd.part"
    stale.write_bytes(b"partial")
    unrelated = out / ".other.part"
    unrelated.write_bytes(b"someone else's")
    result = invoke("denoise", source.parent, "-o", out, "--sigma", "10", "--model", tiny_weights)
    assert result.exit_code == 0, result.output
    assert not stale.exists() and unrelated.exists() and (out / "a.png").is_file()


@pytest.mark.skipif("acdasr_s.x2" in shipped(), reason="a ×2 super-resolution model ships")
def test_sr_exists_but_no_model_ships(tmp_path, write_png):
    result = invoke("sr", write_png(tmp_path / "a.png"))
    assert result.exit_code == ExitCode.WEIGHTS
    (line,) = error_lines(result)
    assert "super-resolution" in line and "ships" in line


def test_models_lists_shipped_models():
    result = invoke("models", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == sorted(shipped())
    for row in rows:
        assert {"architecture", "channels", "parameters", "quality", "training", "license"} <= set(row)
    listing = invoke("models")
    assert listing.exit_code == 0
    assert all(name in listing.stdout for name in shipped()) or "no trained models" in listing.stdout


def test_help_lists_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("denoise", "sr", "tune", "bench", "models", "train"):
        assert re.search(rf"\b{command}\b", result.stdout)


def test_models_table_counts_every_training_stage():
    from restorekit.cli.models import _iterations_text

    stage1 = {"iterations": 8000}
    assert _iterations_text(stage1) == "8000"
    assert _iterations_text({"iterations": 5000, "initialized_from": {"training": stage1}}) == "8000 + 5000"
    assert _iterations_text({"iterations": 5, "initialized_from": None}) == "5"


# ------------------------------------------------------------------------------------ hostile inputs, rough edges


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow and tifffile warn about damaged tags
def test_hostile_corpus_never_stops_the_batch(tmp_path, write_png, tiny_weights, tree_hash):
    folder = tmp_path / "in"
    expected = corpus.build(folder)
    write_png(folder / "good1.png")
    write_png(folder / "good2.png", seed=3)
    before = tree_hash(folder)
    out = tmp_path / "out"
    started = time.perf_counter()
    with corpus.time_limit(120):
        result = invoke("denoise", folder, "-o", out, "--sigma", "10", "--model", tiny_weights, "--json")
    assert result.exit_code == ExitCode.FAILED, result.output
    payload = summary(result)
    records = {Path(r["input"]).name: r for r in payload["files"]}
    assert set(records) == {*expected, "good1.png", "good2.png"}
    lines = error_lines(result)
    assert len(lines) == payload["failed"] and all("unexpected" not in line for line in lines)
    for name, words in expected.items():
        record = records[name]
        if words is not None:
            assert record["status"] == "failed" and words in record["error"], record
        if record["status"] == "failed":
            assert sum(f"/{name}:" in line for line in lines) == 1
    assert records["good1.png"]["status"] == records["good2.png"]["status"] == "ok"
    assert {p.name for p in out.iterdir()} == {n for n, r in records.items() if r["status"] == "ok"}
    assert tree_hash(folder) == before
    print(f"hostile corpus: {len(records)} files in {time.perf_counter() - started:.1f} s")


def test_symlink_loop_and_named_pipe_named_directly(tmp_path, write_png, tiny_weights):
    good = write_png(tmp_path / "good.png")
    (tmp_path / "loop.png").symlink_to("loop.png")
    os.mkfifo(tmp_path / "pipe.png")
    with corpus.time_limit(60):
        result = invoke(
            "denoise", tmp_path / "loop.png", tmp_path / "pipe.png", good, "--sigma", "10", "--model", tiny_weights
        )
    assert result.exit_code == ExitCode.FAILED
    loop, pipe = error_lines(result)
    assert "loop.png: symlink loop" in loop and "unexpected" not in loop
    assert "pipe.png: is a named pipe" in pipe
    assert (tmp_path / "good_denoised.png").is_file()


def test_unsupported_output_suffix_is_a_usage_error(tmp_path, write_png, tiny_weights):
    source = write_png(tmp_path / "a.png")
    result = invoke("denoise", source, "-o", tmp_path / "out.gif", "--sigma", "10", "--model", tiny_weights)
    assert result.exit_code == ExitCode.USAGE
    (line,) = error_lines(result)
    assert "out.gif" in line and ".png" in line and ".tiff" in line
    assert not (tmp_path / "out.gif").exists()


@pytest.mark.skipif("mallenet_s.awgn_color" not in shipped(), reason="needs the default colour model")
def test_sigma_out_of_range_with_the_default_model_is_one_usage_error(tmp_path, write_png):
    for name in ("a.png", "b.png", "c.png"):
        write_png(tmp_path / "in" / name)
    result = invoke("denoise", tmp_path / "in", "-o", tmp_path / "out", "--sigma", "80")
    assert result.exit_code == ExitCode.USAGE
    (line,) = error_lines(result)
    assert "--sigma" in line and "[0, 75]" in line
    assert not (tmp_path / "out").exists()


def test_library_messages_show_the_cli_options(tmp_path, write_png, tiny_weights):
    source = write_png(tmp_path / "a.png")
    result = invoke("denoise", source, "-o", tmp_path / "a.jpg", "--bit-depth", "16", "--model", tiny_weights)
    (line,) = error_lines(result)
    assert "(set --bit-depth)" in line and "bit_depth" not in line
    result = invoke("denoise", source, "--max-pixels", "100", "--model", tiny_weights)
    (line,) = error_lines(result)
    assert "40×24 = 960 pixels exceeds the limit of 100 pixels (raise --max-pixels" in line
    existing = write_png(tmp_path / "sample.png")
    result = invoke("sample", existing)
    assert result.exit_code == ExitCode.FAILED
    (line,) = error_lines(result)
    assert "already exists (pass --overwrite to replace it)" in line and "=True" not in line


def test_progress_jsonl_reports_tiles_of_the_current_file(tmp_path, write_png, tiny_weights):
    first = write_png(tmp_path / "in" / "a.png", height=240, width=300)
    second = write_png(tmp_path / "in" / "b.png", height=240, width=300)
    args = ["denoise", tmp_path / "in", "-o", tmp_path / "out", "--sigma", "10", "--model", tiny_weights]
    result = invoke(*args, "--tile", str(tiling.min_tile(load_model(tiny_weights).requirements)), "--progress", "jsonl")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events if e["event"] != "tile"] == ["start", "progress"] * 2 + ["end"]
    tiles = [e for e in events if e["event"] == "tile"]
    assert {e["item"] for e in tiles} == {str(first), str(second)}
    (total,) = {e["tiles"] for e in tiles}
    assert total > 1 and [e["tile"] for e in tiles if e["item"] == str(first)] == list(range(1, total + 1))
    assert all(e["done"] == (0 if e["item"] == str(first) else 1) for e in tiles)


def test_the_bar_names_the_current_file_and_its_tiles():
    reporter = Reporter("rich", total=2, label="denoise")
    fields = reporter._bar.tasks[0].fields
    reporter.start("a.png")
    assert fields["item"] == "a.png"
    reporter.tiles(3, 8)
    assert "a.png" in fields["item"] and "tile 3/8" in fields["item"]
    reporter.done("a.png", status="ok")
    reporter.start("b.png")
    assert fields["item"] == "b.png"


def test_bench_report_writes_only_where_told(tmp_path):
    results = tmp_path / "latency.json"
    results.write_text("{}")
    result = invoke("bench", "report", results)
    assert result.exit_code == ExitCode.USAGE and "--output" in result.output
    result = invoke("bench", "report", results, "-o", tmp_path / "missing" / "benchmarks.md")
    assert result.exit_code == ExitCode.FAILED
    (line,) = error_lines(result)
    assert "no such folder" in line and "Errno" not in line
    assert not (tmp_path / "missing").exists()


def test_sample_message_stays_on_one_line_when_piped(tmp_path):
    output = tmp_path / ("a_rather_long_folder_name_" * 3) / "noisy.png"
    output.parent.mkdir()
    result = invoke("sample", output, "--name", "camera")
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("wrote")]
    assert str(output) in line and line.endswith("clipped to 8 bits")


def test_a_costly_tile_is_noted(tmp_path, write_png, tiny_weights):
    image = write_png(tmp_path / "a.png", height=240, width=300)
    args = ["denoise", image, "-o", tmp_path / "out.png", "--sigma", "10", "--model", tiny_weights]
    result = invoke(*args, "--tile", "192", "--json")
    assert result.exit_code == 0, result.output
    (record,) = summary(result)["files"]
    assert record["tile"] == 192 and record["notes"] == [
        "tile 192 with 160-px overlap: ~8× the work of untiled; a larger tile runs faster"
    ]
    result = invoke(*args, "--tile", "192", "--overwrite")
    assert "note: tile 192 with 160-px overlap" in result.stderr


def test_piped_models_table_keeps_each_row_on_one_line():
    from restorekit.cli.models import _omega_text, _quality_text

    rows = json.loads(invoke("models", "--json").stdout)
    if not rows:
        pytest.skip("no trained models ship with this install")
    listing = invoke("models")
    assert listing.exit_code == 0
    for row in rows:
        name = re.compile(rf"^ [ *] {re.escape(row['name'])}(?![\w.])")  # a table row, not the defaults line
        (line,) = [line for line in listing.stdout.splitlines() if name.search(line)]
        assert _quality_text(row["quality"]) + _omega_text(row["omega"]) in line


def test_piped_bench_tables_keep_each_row_on_one_line(capsys):
    from restorekit.cli.bench._common import emit as _emit

    rows = [{"method": f"method_{'x' * 60}_{i}", "size": 512, "ms": 213.4 * i, "note": "n" * 80} for i in (1, 2)]
    _emit({"rows": rows, "skipped": []}, rows, title="latency", json=False, save=[])
    lines = capsys.readouterr().out.splitlines()
    for row in rows:
        (line,) = [line for line in lines if row["method"] in line]
        assert row["note"] in line


def test_help_imports_no_command_and_no_torch():
    from restorekit.cli.app import COMMANDS

    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from restorekit.cli.app import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0 and 'denoise' in result.stdout, result.output\n"
        "print(' '.join(sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    commands = {target.split(":")[0] for target, _ in COMMANDS.values()}
    assert "torch" not in loaded and not loaded & commands


def test_command_summaries_match_the_commands():
    from restorekit.cli.app import COMMANDS, load_command

    for name, (_, summary) in COMMANDS.items():
        assert inspect.cleandoc(load_command(name).help or "").split("\n\n")[0] == summary, name


def test_the_public_api_loads_on_first_use():
    import restorekit

    assert set(restorekit.__all__) <= set(dir(restorekit))
    for name in restorekit.__all__:
        assert callable(getattr(restorekit, name))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        restorekit.nothing  # noqa: B018


# ------------------------------------------------------- reruns, concurrent runs, memory, names, answers, messages


def test_a_rerun_skips_its_own_outputs(tmp_path, write_png, tiny_weights):
    folder = tmp_path / "in"
    for name in ("a.png", "b.png"):
        write_png(folder / name, seed=len(name))
    for _ in range(2):
        result = invoke("denoise", folder, "-s", "10", "-m", tiny_weights, "--json")
        assert result.exit_code == 0, result.output
    payload = summary(result)
    assert (payload["ok"], payload["exists"], payload["failed"]) == (0, 2, 0)
    assert payload["skipped"] == {"output of restorekit": 2}
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_denoised.png", "b.png", "b_denoised.png"]
    out = folder / "out"
    for _ in range(2):
        result = invoke("denoise", folder, "-r", "-o", out, "-s", "10", "-m", tiny_weights, "--json")
        assert result.exit_code == 0, result.output
    assert (summary(result)["ok"], summary(result)["exists"]) == (0, 2)
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]


def test_outputs_of_every_command_are_passed_over_but_a_lone_one_is_an_input(tmp_path, write_png):
    from restorekit.batch._plan import plan_jobs

    folder = tmp_path / "in"
    for name in ("a.png", "a_x2.png", "a_tuned.png", "a_sweep.jpg", "a_denoised_x4.png", "holiday_x2.png"):
        write_png(folder / name)
    plan = plan_jobs([folder], None, False, None, default_suffix="_x3")
    assert [job.source.name for job in plan] == ["a.png", "holiday_x2.png"]
    assert sorted(p.name for p in plan.skipped["output of restorekit"]) == [
        "a_denoised_x4.png",
        "a_sweep.jpg",
        "a_tuned.png",
        "a_x2.png",
    ]
    explicit = plan_jobs([folder / "a_x2.png"], None, False, None, default_suffix="_x2")
    assert [job.target.name for job in explicit] == ["a_x2_x2.png"]  # a file named explicitly is always taken


def test_an_output_claimed_by_a_live_run_is_skipped_and_a_stale_claim_is_taken_over(tmp_path, write_png, tiny_weights):
    from restorekit.batch import _claims

    folder, out = tmp_path / "in", tmp_path / "out"
    write_png(folder / "a.png")
    write_png(folder / "b.png", seed=1)
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim = _claims.claim_path(out / "a.png")
        claim.write_text(json.dumps({"host": os.uname().nodename, "pid": holder.pid, "started": None}))
        result = invoke("denoise", folder, "-o", out, "-s", "10", "-m", tiny_weights, "--json")
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 0, result.output
    statuses = {Path(r["input"]).name: r["status"] for r in summary(result)["files"]}
    assert statuses == {"a.png": "claimed", "b.png": "ok"} and summary(result)["claimed"] == 1
    assert sorted(p.name for p in out.iterdir()) == [claim.name, "b.png"]  # never written, the claim left alone
    result = invoke("denoise", folder, "-o", out, "-s", "10", "-m", tiny_weights, "--json")  # its holder is gone
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in summary(result)["files"]] == ["ok", "exists"]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]


def test_an_output_that_appears_meanwhile_is_never_replaced(tmp_path, write_png, tiny_weights, monkeypatch):
    from restorekit.batch import _jobs as per_file

    source = write_png(tmp_path / "a.png")
    target = tmp_path / "a_denoised.png"
    real = per_file.load_image

    def another_run_writes_first(path, max_pixels):
        target.write_bytes(b"written by another run")
        return real(path, max_pixels=max_pixels)

    monkeypatch.setattr(per_file, "load_image", another_run_writes_first)
    result = invoke("denoise", source, "-s", "10", "-m", tiny_weights, "--json")
    assert result.exit_code == ExitCode.FAILED
    (record,) = summary(result)["files"]
    assert record["status"] == "failed" and "already exists" in record["error"]
    assert target.read_bytes() == b"written by another run"


def test_running_out_of_host_memory_fails_that_file_with_code_4_and_the_batch_goes_on(
    tmp_path, write_png, tiny_weights, monkeypatch
):
    from restorekit.batch import _jobs as per_file

    real = per_file.load_image

    def load(path, max_pixels):
        if Path(path).name == "big.png":
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        return real(path, max_pixels=max_pixels)

    monkeypatch.setattr(per_file, "load_image", load)
    folder = tmp_path / "in"
    write_png(folder / "big.png")
    write_png(folder / "small.png")
    result = invoke("denoise", folder, "-o", tmp_path / "out", "-s", "10", "-m", tiny_weights, "--json")
    payload = summary(result)
    assert result.exit_code == payload["exit_code"] == ExitCode.FAILED
    assert [r["status"] for r in payload["files"]] == ["failed", "ok"]
    assert "big.png: out of memory" in payload["files"][0]["error"] and "unexpected" not in result.stderr
    single = invoke("denoise", folder / "big.png", "-s", "10", "-m", tiny_weights)
    assert single.exit_code == ExitCode.DEVICE


def test_an_output_name_of_255_bytes_is_written(tmp_path, write_png, tiny_weights):
    stem = "é" * 100 + "a" * 42  # 242 bytes: with "_denoised.png", 255 bytes
    source = write_png(tmp_path / f"{stem}.png")
    result = invoke("denoise", source, "-s", "10", "-m", tiny_weights)
    assert result.exit_code == 0, result.output
    output = tmp_path / f"{stem}_denoised.png"
    assert len(output.name.encode()) == 255 and load_image(output).pixels.shape == (24, 40, 3)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    "args",
    [["--tile", "-1"], ["--dtype", "bogus"], ["--no-such-option"], ["--sigma", "loud"]],
    ids=["tile", "dtype", "unknown", "sigma"],
)
def test_json_answers_usage_errors(tmp_path, write_png, tiny_weights, args):
    result = invoke("denoise", write_png(tmp_path / "a.png"), "-m", tiny_weights, "--json", *args)
    assert result.exit_code == ExitCode.USAGE
    payload = json.loads(result.stdout)
    assert payload["exit_code"] == ExitCode.USAGE and payload["error"]
    assert "failed" not in result.stderr


def test_an_interrupted_batch_answers_with_the_files_done(tmp_path, write_png, tiny_weights, monkeypatch):
    from restorekit.batch import _jobs as per_file

    real = per_file.load_image

    def load(path, max_pixels):
        if Path(path).name == "c.png":
            raise KeyboardInterrupt
        return real(path, max_pixels=max_pixels)

    monkeypatch.setattr(per_file, "load_image", load)
    for name in ("a.png", "b.png", "c.png"):
        write_png(tmp_path / "in" / name)
    args = ["denoise", tmp_path / "in", "-o", tmp_path / "out", "-s", "10", "-m", tiny_weights]
    result = invoke(*args, "--json")
    assert result.exit_code == ExitCode.INTERRUPTED
    payload = summary(result)
    assert payload["interrupted"] is True and payload["exit_code"] == ExitCode.INTERRUPTED
    assert [(Path(r["input"]).name, r["status"]) for r in payload["files"]] == [("a.png", "ok"), ("b.png", "ok")]
    assert "interrupted" in result.stderr and "Traceback" not in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    result = invoke(*args, "--progress", "jsonl")
    end = json.loads(result.stderr.splitlines()[-1])
    assert end["event"] == "end" and end["interrupted"] is True and end["exit_code"] == ExitCode.INTERRUPTED


def test_a_full_stdout_is_one_error_line_not_a_traceback(tmp_path, write_png, tiny_weights):
    source = write_png(tmp_path / "a.png")
    command = [sys.executable, "-m", "restorekit", "denoise", source, "-s", "10", "-m", tiny_weights, "--json"]
    with open("/dev/full", "w") as full:
        done = subprocess.run([str(a) for a in command], stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == ExitCode.FAILED, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "stdout" in line and "No space left on device" in line
    assert (tmp_path / "a_denoised.png").is_file()


def test_progress_jsonl_is_only_json_lines(tmp_path, write_png, tiny_weights):
    folder = tmp_path / "in"
    write_png(folder / "good.png")
    (folder / "bad.png").write_text("not an image")
    (folder / "notes.txt").write_text("not an image either")
    args = ["denoise", folder, "-o", tmp_path / "out", "-s", "10", "-m", tiny_weights, "--tile", "16"]
    result = invoke(*args, "--progress", "jsonl")
    assert result.exit_code == ExitCode.FAILED
    events = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    (failed,) = [e for e in events if e["event"] == "progress" and e["status"] == "failed"]
    assert "bad.png: not a supported image" in failed["error"]
    assert events[-1]["event"] == "end" and events[-1]["exit_code"] == ExitCode.FAILED
    assert events[-1]["skipped"] == {"not an image": 1} and events[-1]["failed"] == 1
    result = invoke("denoise", tmp_path / "missing.png", "-m", tmp_path / "nope.safetensors", "--progress", "jsonl")
    (end,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert end["event"] == "end" and end["exit_code"] == ExitCode.WEIGHTS and "nope.safetensors" in end["error"]


def test_a_missing_file_and_a_pattern_without_match_fail_alike(tmp_path, write_png, tiny_weights):
    good = write_png(tmp_path / "good.png")
    for spec in (tmp_path / "missing.png", tmp_path / "nomatch*.png", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        result = invoke("denoise", good, spec, "-s", "10", "-m", tiny_weights, "--json", "--overwrite")
        assert result.exit_code == ExitCode.FAILED, spec
        (line,) = error_lines(result)
        assert line.startswith(f"error: {spec}: "), line
        assert [r["status"] for r in summary(result)["files"]] == ["ok", "failed"]
        alone = invoke("denoise", spec, "-s", "10", "-m", tiny_weights)
        assert alone.exit_code == ExitCode.FAILED and len(error_lines(alone)) == 1


def test_a_usage_error_of_a_single_file_is_one_line(tmp_path, write_png, tiny_weights):
    source = write_png(tmp_path / "g.png", channels=1)
    result = invoke("denoise", source, "-s", "10", "-m", tiny_weights)
    assert result.exit_code == ExitCode.USAGE
    assert len(error_lines(result)) == 1 and "failed" not in result.stderr and "✗" not in result.stderr


def test_an_output_under_a_file_names_that_file(tmp_path, write_png, tiny_weights):
    source = write_png(tmp_path / "a.png")
    result = invoke("denoise", source, "-o", source / "out.png", "-s", "10", "-m", tiny_weights)
    assert result.exit_code == ExitCode.USAGE
    (line,) = error_lines(result)
    assert f"{source} is a file, not a folder" in line


def test_the_sigma_estimate_error_names_the_file(tmp_path, write_png, tiny_gray_weights):
    source = write_png(tmp_path / "tiny.png", height=10, width=10, channels=1)
    result = invoke("denoise", source, "-s", "auto", "-m", tiny_gray_weights)
    assert result.exit_code == ExitCode.USAGE
    (line,) = error_lines(result)
    assert str(source) in line and "24" in line


def test_an_input_without_an_image_suffix_keeps_its_format(tmp_path, write_png, tiny_weights):
    source = write_png(tmp_path / "scan.png").rename(tmp_path / "scan")
    result = invoke("denoise", source, "-s", "10", "-m", tiny_weights)
    assert result.exit_code == 0, result.output
    assert load_image(tmp_path / "scan_denoised.png").format == "PNG"


def test_version():
    import restorekit

    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"restorekit {restorekit.__version__}"


def test_models_table_reads_at_80_columns():
    rows = json.loads(invoke("models", "--json").stdout)
    if not rows:
        pytest.skip("no trained models ship with this install")
    listing = runner.invoke(app, ["models"], env={"COLUMNS": "80"})
    assert listing.exit_code == 0
    lines = listing.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in listing.stdout
    assert " ms " in lines[1] and any(line.startswith(" * ") for line in lines)
    assert any(line.startswith("* default") for line in lines)
    if any("real_cc15" in (row["quality"] or {}) for row in rows):
        assert any(line.startswith("real_cc15: 15 real noisy camera photos") for line in lines)
    assert {row["name"] for row in rows if row["default_for"]} and all("ms_512" in row for row in rows)


def test_help_flows_shows_no_bool_and_the_real_suffixes():
    from restorekit.cli.app import load_command

    for name in ("denoise", "sr", "tune"):
        command = load_command(name)
        assert all("\n" not in paragraph for paragraph in command.help.split("\n\n")), name
        result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0 and "<bool>" not in result.stdout
        assert "quantisation" in result.stdout
    assert "_x2" in runner.invoke(app, ["sr", "--help"]).stdout
    assert "_tuned" in runner.invoke(app, ["tune", "--help"]).stdout


def test_a_tile_below_the_useful_size_warns_once_and_reports_the_tile_used(tmp_path, write_png, tiny_weights):
    for name in ("a.png", "b.png"):
        write_png(tmp_path / "in" / name, height=240, width=300)
    smallest = tiling.min_tile(load_model(tiny_weights).requirements)
    args = ["denoise", tmp_path / "in", "-o", tmp_path / "out", "-s", "10", "-m", tiny_weights, "--tile", "16"]
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "tile 16 is below the smallest useful tile" in warnings[0]
    assert [r["tile"] for r in summary(result)["files"]] == [smallest, smallest]
    result = invoke(*args, "--overwrite")
    assert f"2 done (tile {smallest})" in result.stderr


def test_quality_follows_the_input_unless_given(tmp_path, make_pixels, tiny_weights):
    from restorekit.inference.io import jpeg_quality

    source = tmp_path / "photo.jpg"
    Image.fromarray((make_pixels(32, 48) * 255).astype("uint8")).save(source, quality=70)
    result = invoke("denoise", source, "-s", "10", "-m", tiny_weights)
    assert result.exit_code == 0, result.output
    with open(tmp_path / "photo_denoised.jpg", "rb") as fh:
        assert jpeg_quality(fh) == 70
    result = invoke("denoise", source, "-s", "10", "-m", tiny_weights, "--quality", "40", "--overwrite")
    assert result.exit_code == 0, result.output
    with open(tmp_path / "photo_denoised.jpg", "rb") as fh:
        assert jpeg_quality(fh) == 40


def test_what_a_folder_holds_besides_images_is_counted_and_raw_gets_its_hint_once(tmp_path, write_png, tiny_weights):
    from restorekit.inference.io import raw_error

    folder = tmp_path / "in"
    write_png(folder / "a.png")
    (folder / "notes.txt").write_text("a note")
    (folder / "DSC_0001.NEF").write_bytes(b"II*\x00" + bytes(100))
    (folder / "DSC_0002.cr2").write_bytes(b"II*\x00" + bytes(100))
    args = ["denoise", folder, "-o", tmp_path / "out", "-s", "10", "-m", tiny_weights]
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    assert summary(result)["skipped"] == {"not an image": 1, "camera RAW": 2}
    (hint,) = [line for line in result.stderr.splitlines() if "RAW is not read" in line]
    assert hint.startswith("warning: ") and "2 camera RAW files skipped" in hint
    result = invoke(*args, "--overwrite")
    assert "not inputs: 1 not an image, 2 camera RAW" in result.stderr
    result = invoke("denoise", folder / "DSC_0001.NEF", "-s", "10", "-m", tiny_weights)
    assert result.exit_code == ExitCode.FAILED
    assert error_lines(result) == [f"error: {raw_error(folder / 'DSC_0001.NEF')}"]


def test_a_model_that_gives_nan_fails_the_file_and_writes_nothing(tmp_path, write_png, tiny_weights, monkeypatch):
    def nan(fn, x, sigma, requirements, tile):
        return torch.full_like(x, float("nan"))

    monkeypatch.setattr(tiling, "run_tiled", nan)
    result = invoke("denoise", write_png(tmp_path / "a.png"), "-s", "10", "-m", tiny_weights, "--dtype", "fp32")
    assert result.exit_code == ExitCode.WEIGHTS
    (line,) = error_lines(result)
    assert "a.png" in line and "NaN" in line
    assert not (tmp_path / "a_denoised.png").exists()


def test_under_an_address_space_limit_the_tile_fits_it_and_the_batch_goes_on(tmp_path, tiny_weights):
    """A 3-megapixel image that does not fit a tight ``ulimit -v`` in one piece, and a small one after it."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((1500, 2000, 3)) * 255).astype(np.uint8)).save(folder / "a_big.png")
    Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).save(folder / "b_small.png")
    script = textwrap.dedent(
        f"""
        import re, resource, sys
        import restorekit.cli.denoise
        from restorekit.cli.app import main
        size = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size + 450 * 2**20, resource.RLIM_INFINITY))
        sys.argv = ["restorekit", "denoise", {str(folder)!r}, "-o", {str(tmp_path / "out")!r}, "-s", "10",
                    "-m", {str(tiny_weights)!r}, "--json", "--dtype", "fp32"]
        main()
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert "unexpected" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    payload = json.loads(done.stdout)
    big, small = payload["files"]
    assert small["status"] == "ok"
    assert big["status"] == "ok" or (big["status"] == "failed" and "out of memory" in big["error"]), big
    assert done.returncode == payload["exit_code"]
