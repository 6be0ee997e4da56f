"""Render ``docs/benchmarks.md`` from benchmark results files, saying which command and machine made each table.

Quality results become one table per dataset, protocol and σ mode (methods × σ, cells ``PSNR / SSIM``),
with the published figures the project measures itself against beside the float-protocol tables, and each
restorekit model's distance to the published floor (CBM3D) in dB; lens-shading tables (``bench quality
--degradation shading``) give each model's distance to the oracle (the σ-conditioned model given the exact
noise map) instead. Latency results become one table per device, with each method's speed-up over CBM3D at
the same size. Anything else (``kernels``) is tabulated as it comes.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from restorekit.bench.report import format_value, load, scatter_plot, to_markdown
from restorekit.bench.sr import PUBLISHED as PUBLISHED_SR
from restorekit.errors import OutputError

# Published PSNR (dB, float protocol) to compare with: dataset → label → {σ: PSNR}.
FLOOR = "CBM3D, published (floor)"
PUBLISHED: dict[str, dict[str, dict[float, float]]] = {
    "kodak24": {
        FLOOR: {15: 34.28, 25: 32.15, 50: 28.46},
        "MalleNet-S, paper (target)": {15: 34.66, 25: 32.16, 50: 29.00},
    },
    "mcmaster": {
        FLOOR: {15: 34.06, 25: 31.66, 50: 28.51},
        "MalleNet-S, paper (target)": {15: 34.68, 25: 32.35, 50: 29.20},
    },
}
KIND_ORDER = {"input": 0, "restorekit": 1, "oracle": 2, "peer": 3}
SHADING = {"shading": "float", "shading_file": "file"}  # lens-shading protocols → noise protocol
# Maggioni et al. (CVPR 2023) Table 1, Kodak, σ ∈ {5, 15, 30} averaged: ω1 → (PSNR, PSNRη).
PUBLISHED_TUNABLE = {
    "kodak24": {
        "tunable ResNet-16, paper": {
            0.0: (26.74, 51.97),
            0.25: (27.09, 39.04),
            0.5: (28.46, 35.56),
            0.75: (35.07, 36.19),
            1.0: (35.54, 35.54),
        }
    }
}
TUNE_KIND_ORDER = {"tunable": 0, "dni": 1, "fixed": 2}


def provenance(document: dict[str, Any], source: str | Path) -> str:
    """One paragraph: the command, the machine, the software and the date behind a results file."""
    env = document["environment"]
    machine = f"{env['machine']}: " if env.get("machine") else ""
    gpu = f", GPU {env['gpu']} (CUDA {env['cuda']})" if env.get("gpu") else ""
    settings = " ".join(f"{k}={v}" for k, v in (env.get("settings") or {}).items())
    return (
        f"Produced by `{settings + ' ' if settings else ''}{document['argv']}` on {machine}{env['cpu']} "
        f"({env['cpu_affinity']} CPUs available, "
        f"torch threads {env['torch_threads']}){gpu}; torch {env['torch']}, restorekit {env['restorekit']}, "
        f"{env['os']}; {document['created']}. Source: `{source}`."
    )


def _sigma_label(sigma: float | str) -> str:
    """A quality table's column name: ``σ=25``, or ``real noise`` for noisy/clean pairs."""
    return "real noise" if isinstance(sigma, str) else f"σ={sigma:g}"


def _quality_tables(document: dict[str, Any]) -> list[str]:
    summary = document["summary"]
    out = []
    for dataset, protocol, mode in sorted({(r["dataset"], r["protocol"], r["sigma_mode"]) for r in summary}):
        group = [r for r in summary if (r["dataset"], r["protocol"], r["sigma_mode"]) == (dataset, protocol, mode)]
        sigmas = sorted({r["sigma"] for r in group}, key=lambda s: (isinstance(s, str), 0 if isinstance(s, str) else s))
        methods = sorted({(KIND_ORDER.get(r["kind"], 3), r["method"]) for r in group})
        rows = []
        for _, method in methods:
            cells = {(r["sigma"]): r for r in group if r["method"] == method}
            first = next(iter(cells.values()))
            row: dict[str, Any] = {"method": method, "kind": first["kind"]}
            for sigma in sigmas:
                r = cells.get(sigma)
                row[_sigma_label(sigma)] = f"{format_value(r['psnr'])} / {r['ssim']:.4f}" if r else ""
            times = [r["seconds"] for r in cells.values() if r["seconds"] is not None]
            row["s/image"] = statistics.fmean(times) if times else None
            rows.append(row)
        if protocol == "float" and not document.get("config", {}).get("limit"):  # published: whole sets only
            published = PUBLISHED.get(dataset.lower(), {})
            for label, values in published.items():
                rows.append(
                    {"method": label, "kind": "published"}
                    | {f"σ={s:g}": f"{values[s]:.2f}" if s in values else "" for s in sigmas}
                    | {"s/image": None}
                )
            rows += _gap_rows(group, sigmas, published.get(FLOOR, {}), "floor")
        if protocol in SHADING:
            rows += _gap_rows(group, sigmas, _oracle(group), "oracle")
        images = max(r["images"] for r in group)
        if protocol == "real":
            title = f"#### {dataset}, real noise: noisy/clean pairs, σ estimated for methods that take one"
            title += f" ({images} images)"
        elif protocol in SHADING:
            title = (
                f"#### {dataset}, lens shading, {SHADING[protocol]} protocol: σ before the gain, σ estimated for "
                f"methods that take one, +oracle given the exact noise map ({images} images)"
            )
        else:
            title = f"#### {dataset}, {protocol} protocol, σ {mode} ({images} images)"
        out += [
            title,
            "",
            "PSNR (dB) / SSIM; s/image is the median time per image, averaged over σ.",
            "",
            to_markdown(rows),
            "",
        ]
    return out


def _gap_rows(
    group: list[dict[str, Any]], sigmas: list[float], reference: dict[float, float], label: str
) -> list[dict[str, Any]]:
    """Per restorekit method, its PSNR minus ``reference`` (σ → PSNR) at each σ, as rows ``<method> − <label>``
    (positive: above it)."""
    rows = []
    for method in sorted({r["method"] for r in group if r["kind"] == "restorekit"}) if reference else ():
        cells = {r["sigma"]: r["psnr"] for r in group if r["method"] == method}
        rows.append(
            {"method": f"{method} − {label}", "kind": "gap (dB)"}
            | {f"σ={s:g}": f"{cells[s] - reference[s]:+.2f}" if s in cells and s in reference else "" for s in sigmas}
            | {"s/image": None}
        )
    return rows


def _oracle(group: list[dict[str, Any]]) -> dict[float, float]:
    """The best oracle's PSNR (a σ-conditioned model given the exact noise map) at each σ of a shading table."""
    best: dict[float, float] = {}
    for r in (r for r in group if r["kind"] == "oracle"):
        best[r["sigma"]] = max(best.get(r["sigma"], r["psnr"]), r["psnr"])
    return best


def _sr_tables(document: dict[str, Any]) -> list[str]:
    """Per dataset: methods × factors, cells ``PSNR / SSIM`` (Y channel), with the published figures beside."""
    summary = document["summary"]
    parameters = {m["name"]: m.get("parameters") for m in document.get("methods", [])}
    config = document.get("config") or {}
    whole = not config.get("limit") and config.get("degradation", "bicubic") == "bicubic"  # published: bicubic LR
    out = []
    for dataset in sorted({r["dataset"] for r in summary}):
        group = [r for r in summary if r["dataset"] == dataset]
        scales = sorted({r["scale"] for r in group})
        order = {"restorekit": 0, "baseline": 1}
        rows = []
        for _, method in sorted({(order.get(r["kind"], 2), r["method"]) for r in group}):
            cells = {r["scale"]: r for r in group if r["method"] == method}
            first = next(iter(cells.values()))
            row: dict[str, Any] = {"method": method, "kind": first["kind"], "parameters": parameters.get(method)}
            for scale in scales:
                r = cells.get(scale)
                detail = f" / {r['detail']:.2f}" if r and "detail" in r else ""
                row[f"×{scale}"] = f"{r['psnr']:.2f} / {r['ssim']:.4f}{detail}" if r else ""
            row["s/image"] = statistics.fmean(r["seconds"] for r in cells.values())
            rows.append(row)
        key = dataset.lower().removeprefix("sr_")
        for label in dict.fromkeys(label for s in scales for label in PUBLISHED_SR.get((key, s), {})) if whole else ():
            row = {"method": label, "kind": "published", "parameters": None}
            for scale in scales:
                value = PUBLISHED_SR.get((key, scale), {}).get(label)
                row[f"×{scale}"] = f"{value[0]:.2f} / {value[1]:.4f}" if value else ""
            rows.append(row | {"s/image": None})
        images = max(r["images"] for r in group)
        out += [
            f"#### {dataset} ({images} images)",
            "",
            "Y-channel PSNR (dB) / SSIM, BT.601, `scale` pixels shaved, outputs rounded to 8 bits"
            + (
                " / detail (RMS of the Y gradient over the HR image's: 1 is the HR image's amount of detail)"
                if any("detail" in r for r in group)
                else ""
            )
            + "; s/image is the median time per image, averaged over the factors. "
            + (
                "LR inputs: the HR images through the seeded real-world degradation (restorekit/train/degradations.py,"
                " Real-ESRGAN's second-order pipeline), seeded per image; `denoise → M` is the photo denoiser, then M."
                if config.get("degradation") == "real"
                else "Published: Ahn et al. (CARN, ECCV 2018), Table 2."
            ),
            "",
            to_markdown(rows),
            "",
        ]
    return out


def _latency_tables(document: dict[str, Any]) -> list[str]:
    rows = document["rows"]
    cbm3d = {r["size"]: r["median_ms"] for r in rows if r["method"] == "cbm3d" and r["median_ms"]}
    out = []
    for device in sorted({r["device"] for r in rows}):
        table = []
        for r in (r for r in rows if r["device"] == device):
            reference = cbm3d.get(r["size"])
            speedup = reference / r["median_ms"] if reference and r["median_ms"] and r["method"] != "cbm3d" else None
            table.append(
                {
                    "method": Path(r["method"]).name,
                    "size": r["size"],
                    "output": r.get("output"),
                    "dtype": r.get("dtype"),
                    "tile": r.get("tile"),
                    "runs": r.get("runs"),
                    "median ms": r.get("median_ms"),
                    "p95 ms": r.get("p95_ms"),
                    "CPU ms": r.get("cpu_ms"),
                    "MP/s": r.get("mp_per_s"),
                    "× CBM3D": speedup,
                    "peak RSS MB": r.get("rss_peak_mb"),
                    "RSS before MB": r.get("rss_baseline_mb"),
                    "CUDA peak MB": r.get("cuda_peak_mb"),
                    "GFLOPs": r.get("gflops"),
                    "params": r.get("parameters"),
                    "error": r.get("error"),
                }
            )
        columns = [c for c in table[0] if any(row[c] is not None for row in table)]
        out += [f"#### {device}", "", to_markdown(table, columns), ""]
    return out


def _tune_tables(document: dict[str, Any]) -> list[str]:
    """Per dataset and protocol: methods × ω1, cells ``PSNR / PSNRη`` averaged over images and σ, the paper's
    figures, and the tunable model's margin over DNI at each setting."""
    summary = [r for r in document["summary"] if r["sigma"] == "mean"]
    sigmas = ", ".join(f"{s:g}" for s in document["config"]["sigmas"])
    out = []
    for dataset, protocol in sorted({(r["dataset"], r["protocol"]) for r in summary}):
        group = [r for r in summary if (r["dataset"], r["protocol"]) == (dataset, protocol)]
        settings = sorted({r["w1"] for r in group})
        methods = sorted({(TUNE_KIND_ORDER.get(r["kind"], 3), r["method"], r["kind"]) for r in group})
        cells = {(r["method"], r["w1"]): r for r in group}
        rows = []
        for _, method, kind in methods:
            row: dict[str, Any] = {"method": method, "kind": kind}
            for w1 in settings:
                r = cells[(method, w1)]
                row[f"ω1={w1:g}"] = f"{format_value(r['psnr'])} / {format_value(r['psnr_eta'])}"
            rows.append(row)
        for label, figures in PUBLISHED_TUNABLE.get(dataset, {}).items():
            if protocol == "float" and all(w1 in figures for w1 in settings):
                row = {"method": label, "kind": "published"}
                rows.append(row | {f"ω1={w1:g}": f"{figures[w1][0]:.2f} / {figures[w1][1]:.2f}" for w1 in settings})
        tunable = [m for _, m, k in methods if k == "tunable"]
        dni = [m for _, m, k in methods if k == "dni"]
        if tunable and dni:
            row = {"method": f"{tunable[0]} − DNI", "kind": "margin (dB)"}
            for w1 in settings:
                a, b = cells[(tunable[0], w1)], cells[(dni[0], w1)]
                row[f"ω1={w1:g}"] = f"{a['psnr'] - b['psnr']:+.2f} / {a['psnr_eta'] - b['psnr_eta']:+.2f}"
            rows.append(row)
        images = group[0]["images"]
        noise = (
            "real camera noise against the clean reference, blind"
            if protocol == "real"
            else (f"σ ∈ {{{sigmas}}} averaged")
        )
        out += [
            f"#### {dataset}, {protocol} protocol, {noise} ({images} images)",
            "",
            "PSNR / PSNRη (dB) at ω = (ω1, 1 − ω1); PSNRη is against y_η = y + ω2·ν·(z − y), "
            f"ν = {document['config']['nu']:g}.",
            "",
            to_markdown(rows),
            "",
        ]
    return out


def _crops(document: dict[str, Any], source: str | Path) -> list[str]:
    """The strip ``bench crops`` wrote (linked relative to the results file's ``docs/`` folder) and its PSNRs."""
    config = document["config"]
    image = Path(config["output"])
    docs = Path(source).resolve().parent.parent  # docs/results/x.json → docs/
    link = image.resolve().relative_to(docs) if image.resolve().is_relative_to(docs) else image
    top, left, size = config["box"]
    text = f"A {size}-pixel crop at ({top}, {left}); under each tile the whole image's "
    text += "Y-channel PSNR (dB)" if config.get("task") == "sr" else "PSNR (dB)"
    if config.get("degradation") == "real":
        text += (
            f". Every method upscales one LR input: the image through the seeded real-world degradation of `bench "
            f"quality --task sr --degradation real` (blur, resize, noise, JPEG, twice; ×{config.get('scale')})"
        )
    if any("detail" in row for row in document["rows"]):
        text += ". `detail`: RMS of the Y gradient over the HR image's (1: as much fine detail as the HR image)"
    return [
        f"![{section_title(document)}]({link.as_posix()})",
        "",
        text + ":",
        "",
        to_markdown(document["rows"]),
        "",
    ]


def section_title(document: dict[str, Any]) -> str:
    """A heading that says what a results file holds, e.g. ``Quality: kodak24, mcmaster (float, file)``."""
    config = document.get("config") or {}
    command = document["command"]
    if command == "quality":
        sets = [Path(f).name for f in [*config.get("data", []), *config.get("pairs", [])]]
        extra = [f"limit {config['limit']}" for _ in [0] if config.get("limit")]
        extra += ["self-ensemble"] if config.get("ensemble") else []
        extra += [f"dtype {config['dtype']}"] if config.get("dtype") not in (None, "auto") else []
        protocols = "/".join(config.get("protocols", [])) if config.get("data") else ""
        protocols = "/".join(p for p in (protocols, "real noise" if config.get("pairs") else "") if p)
        what = "Quality with lens shading" if config.get("degradation") == "shading" else "Quality"
        return f"{what}: {', '.join(sets)} ({', '.join([protocols, *extra])})"
    if command == "latency":
        sizes = ", ".join(config.get("sizes", []))
        dtypes = ", ".join(config.get("dtypes", []))
        environment = document.get("environment") or {}
        settings = "".join(f", {k}={v}" for k, v in (environment.get("settings") or {}).items())
        ours = ", ".join(
            dict.fromkeys(Path(r["method"]).name for r in document["rows"] if r.get("kind") == "restorekit")
        )
        others = "peers" if any(r.get("kind") in ("peer", "reference") for r in document["rows"]) else ""
        who = "; ".join(part for part in (ours, others) if part)
        machine = environment.get("machine") or "this machine"
        return f"Latency: {who}, {sizes}, dtype {dtypes}{settings} ({machine})"
    if command == "sr_quality":
        sets = ", ".join(Path(f).name for f in config.get("data", []))
        scales = ", ".join(f"×{v}" for v in config.get("scales", []))
        limit = f", limit {config['limit']}" if config.get("limit") else ""
        dtype = f", dtype {config['dtype']}" if config.get("dtype") not in (None, "auto") else ""
        real = ", real-world degradation" if config.get("degradation") == "real" else ""
        return f"Super-resolution quality: {sets} ({scales}{real}{limit}{dtype})"
    if command == "tune":
        sets = ", ".join(Path(f).name for f in [*config.get("data", []), *config.get("pairs", [])])
        return f"Tunable denoising: PSNR / PSNRη per setting on {sets} (tunable vs DNI vs fixed)"
    if command == "crops":
        what = f"super-resolution ×{config.get('scale')}" if config.get("task") == "sr" else "denoising"
        what += " of the real-world degradation" if config.get("degradation") == "real" else ""
        return f"Crops: {what}, {Path(config.get('image', '')).name}"
    if command == "kernels":
        sizes = ", ".join(str(v) for v in config.get("sizes", []) or [])
        return f"Kernels: {sizes}" if sizes else "Kernels"
    if command == "scale_out":
        machine = (document.get("environment") or {}).get("machine") or "this machine"
        batch = f"{'local vs Ray' if config.get('ray') else 'local engine'} ({config.get('images')} images of "
        batch += f"{config.get('size')}²)"
        train = f", training 1 vs 2 processes ({config['steps']} steps)" if config.get("steps") else ""
        return f"Scale-out: {batch}{train} ({machine})"
    return command.capitalize()


def _summary(documents: Sequence[tuple[str | Path, dict[str, Any]]]) -> list[str]:
    """The page's opening screen: restorekit against the published floor and the best peer (float protocol,
    whole sets), and each model's speed against CBM3D and the other methods, per machine."""
    quality_rows = []
    for _, document in documents:
        if document["command"] != "quality" or (document.get("config") or {}).get("limit"):
            continue
        summary = [r for r in document["summary"] if r["protocol"] in ("float", "real")]
        for dataset in sorted({r["dataset"] for r in summary}):
            group = [r for r in summary if r["dataset"] == dataset]
            for sigma in sorted({r["sigma"] for r in group}, key=lambda v: (isinstance(v, str), str(v).zfill(6))):
                cells = [r for r in group if r["sigma"] == sigma]
                single = [r for r in cells if r["kind"] == "restorekit" and not r["method"].endswith("+x8")]
                ours = max(single, key=lambda r: r["psnr"], default=None)
                peer = max((r for r in cells if r["kind"] == "peer"), key=lambda r: r["psnr"], default=None)
                floor = PUBLISHED.get(dataset.lower(), {}).get(FLOOR, {}).get(sigma)
                if ours is None or (dataset, sigma, ours["method"]) in {(q[0], q[1], q[2]) for q in quality_rows}:
                    continue
                quality_rows.append(
                    (dataset, sigma, ours["method"], ours["psnr"], floor, peer["method"] if peer else None,
                     peer["psnr"] if peer else None)
                )  # fmt: skip
    lines = ["## Summary", ""]
    if quality_rows:
        table = [
            {
                "set": dataset,
                "noise": _sigma_label(sigma),
                "best restorekit model": method,
                "PSNR": psnr,
                "− CBM3D published": "" if floor is None else f"{psnr - floor:+.2f}",
                "best peer measured": peer,
                "peer PSNR": peer_psnr,
            }
            for dataset, sigma, method, psnr, floor, peer, peer_psnr in quality_rows
        ]
        lines += ["Quality (dB; float protocol or real noise, whole sets, single pass):", "", to_markdown(table), ""]
    speed = []
    for _, document in documents:
        if document["command"] != "latency":
            continue
        machine = (document.get("environment") or {}).get("machine") or document["environment"].get("cpu")
        rows = [r for r in document["rows"] if r.get("median_ms")]
        cbm3d = {r["size"]: r["median_ms"] for r in rows if r["method"] == "cbm3d"}
        ffdnet = {r["size"]: r["median_ms"] for r in rows if r["method"] == "ffdnet_shape"}
        for r in rows:
            if r.get("kind") == "restorekit" and r["size"] in cbm3d:
                others = {p["method"]: p["median_ms"] for p in rows if p["size"] == r["size"] and p is not r}
                speed.append(
                    {
                        "machine": machine,
                        "model": Path(r["method"]).name,
                        "size": r["size"],
                        "dtype": r["dtype"],
                        "ms": r["median_ms"],
                        "× faster than CBM3D": cbm3d[r["size"]] / r["median_ms"],
                        "× FFDNet-shaped time": r["median_ms"] / ffdnet[r["size"]] if r["size"] in ffdnet else "",
                        "others (ms)": ", ".join(f"{k} {v:.0f}" for k, v in others.items() if k != "cbm3d"),
                    }
                )
    if speed:
        lines += ["Speed (median wall time per image, runs with CBM3D in the same run):", "", to_markdown(speed), ""]
    photo = _photo_rows(documents)
    if photo:
        lines += [
            f"24 MP photo ({PHOTO_SIZE}), each model against the two-model average ({PHOTO_DEFAULT}; the photo "
            "default before acdanet_m3s_static.real_color) in the same run (median wall time, peak resident memory "
            "of the process):",
            "",
            to_markdown(photo),
            "",
        ]
    return lines if len(lines) > 2 else []


PHOTO_SIZE = "6000x4000"
PHOTO_DEFAULT = "mallenet_r.real_color+acdanet_s.real_color_nr2"  # the two-model photo default the 4× bar names


def _photo_rows(documents: Sequence[tuple[str | Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per restorekit model, precision and machine at ``PHOTO_SIZE``, with its speed-up over the two-model
    photo default measured in the same results file and precision; files that did not run the default are left out."""
    out = []
    for _, document in documents:
        if document["command"] != "latency":
            continue
        environment = document.get("environment") or {}
        machine = environment.get("machine") or environment.get("cpu")
        rows = [r for r in document["rows"] if r.get("median_ms") and r["size"] == PHOTO_SIZE]
        before = {r["dtype"]: r["median_ms"] for r in rows if r["method"] == PHOTO_DEFAULT}
        if not before:  # a run without the default is not this comparison (its own section shows it)
            continue
        for r in rows:
            if r.get("kind") != "restorekit":
                continue
            out.append(
                {
                    "machine": machine,
                    "model": Path(r["method"]).name,
                    "dtype": r["dtype"],
                    "s": r["median_ms"] / 1000,
                    "peak RSS MB": r.get("rss_peak_mb"),
                    "× faster than the default": before[r["dtype"]] / r["median_ms"] if r["dtype"] in before else "",
                }
            )
    return out


def render(documents: Sequence[tuple[str | Path, dict[str, Any]]], command: str) -> str:
    """The Markdown of ``docs/benchmarks.md``.

    Args:
        documents: ``(source path, results document)`` pairs, in the order to show them.
        command: The command line that regenerates the page (written at the top).
    """
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` from the results files named below; do not edit by hand.",
        "Each section says which command and machine produced it. Methods and protocols:",
        "`restorekit/bench/quality.py`, `noise.py`, `latency.py` and `baselines.py` (peer settings).",
        "",
    ]
    lines += _summary(documents)
    for source, document in documents:
        lines += [f"## {section_title(document)}", "", provenance(document, source), ""]
        if document["command"] == "quality":
            lines += _quality_tables(document)
        elif document["command"] == "latency":
            lines += _latency_tables(document)
        elif document["command"] == "tune":
            lines += _tune_tables(document)
        elif document["command"] == "sr_quality":
            lines += _sr_tables(document)
        elif document["command"] == "crops":
            lines += _crops(document, source)
        else:
            lines += [to_markdown(document["rows"]), ""] if document["rows"] else ["(no rows)", ""]
        if document.get("methods"):
            lines += ["Methods:", "", to_markdown(document["methods"]), ""]
        if document.get("skipped"):
            skipped = dict.fromkeys(f"- {s['method']}: {s['reason']}" for s in document["skipped"])
            lines += ["Skipped:", "", *skipped, ""]
    return "\n".join(lines).rstrip() + "\n"


def write_page(files: Sequence[Path], output: Path, plot: Path | None = None) -> None:
    """Write the page :func:`render` makes from the results ``files`` to ``output`` and, with ``plot``, the
    quality plot of their quality summaries (:func:`restorekit.bench.report.scatter_plot`); the command line
    written at the top is ``restorekit bench report`` with these arguments.

    Raises:
        OutputError: A folder to write into is missing (checked before anything is written), or ``output``
            cannot be written.
    """
    for path in (output, plot):
        if path is not None and not path.parent.is_dir():
            raise OutputError(f"{path}: no such folder {path.parent} (create it first)")
    documents = [(path, load(path)) for path in files]
    command = "restorekit bench report " + " ".join(str(p) for p in files) + f" -o {output}"
    if plot is not None:
        command += f" --plot {plot}"
        scatter_plot([row for _, doc in documents if doc["command"] == "quality" for row in doc["summary"]], plot)
    try:
        output.write_text(render(documents, command))
    except OSError as exc:
        raise OutputError(f"{output}: cannot write ({exc.strerror or exc})") from None
