"""The results section of docs/benchmarks.md, made from the suite's results (text outside the
section, the analysis, is kept as it is)."""

from __future__ import annotations

from pathlib import Path

START, END = "<!-- results:start (written by python -m benchmarks) -->", "<!-- results:end -->"


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows),
        "",
    ]


def _goal(value: float, goal: float) -> str:
    return f"{value} ({'meets' if value >= goal else 'below'} {goal})"


def _span(low_high: list[float]) -> str:
    return f"{low_high[0]}-{low_high[1]}"


def inference_table(rows: list[dict]) -> list[str]:
    """The inference section's table (also written alone by ``python -m benchmarks.inference``)."""
    return _table(
        [
            "generator",
            "device",
            "frame",
            "planes in",
            "virtual planes",
            "planes / s",
            "s per stack",
            "peak MB",
            "engine / eager",
            "timed over",
        ],
        [
            [
                x.get("architecture", "unet"),
                x["device"],
                f"{x['frame']}²",
                x["planes_in"],
                x["planes_out"],
                x["planes_per_s"],
                x["stack_s"],
                x["peak_mb"],
                x.get("engine_vs_eager"),
                f"{x['planes_timed']} planes",
            ]
            for x in rows
        ],
    )


def measured_on(m: dict) -> str:
    """The line that says what a run's figures were measured on (:func:`benchmarks.common.machine`)."""
    v = ", ".join(f"{k} {x}" for k, x in m["versions"].items() if x is not None)
    return (
        f"Measured {m['date']} on {m['cpu']} ({m['cpu_cores']} cores, torch threads {m['torch_threads']}), "
        f"GPU: {m['gpu'] or 'none'}; {v}."
    )


def results_markdown(r: dict) -> list[str]:
    """The tables of one run."""
    rerun = "".join(
        f" Section {name} run again {when} (`--section {name}`)." for name, when in r.get("rerun", {}).items()
    )
    out = [
        measured_on(r["machine"])
        + (" **Quick mode: sizes too small to mean anything.**" if r["quick"] else "")
        + rerun,
        "",
    ]
    out += ["### Inference", "", *inference_table(r["inference"])]
    out += ["### Acquisition overhead", ""]
    out += _table(
        [
            "runner",
            "model",
            "camera",
            "frame",
            "frames × runs",
            "exposure",
            "plain fps, same runner (range)",
            "with Deep-Z fps (range)",
            "ratio, median of pairs (goal)",
            "ratio range",
            "repeats for ±0.05",
            "virtual stacks made (during the run) / missing",
            "backlog after the run",
            "latency to disk (median)",
        ],
        [
            [
                a.get("runner", "pycromanager"),  # runs before the MDA rows: pycromanager's only
                a["model"],
                a.get("camera", "rendered on the CPU"),  # runs before the replayed rows: all rendered
                f"{a['frame']}²",
                f"{a['frames']} × {a['runs']}",
                f"{a['exposure_ms']} ms",
                f"{a['plain_fps']} ({a['plain_fps_range'][0]}-{a['plain_fps_range'][1]})",
                f"{a['deepz_fps']} ({a['deepz_fps_range'][0]}-{a['deepz_fps_range'][1]})",
                _goal(a["ratio"], 0.95),
                f"{a['ratio_range'][0]}-{a['ratio_range'][1]}",
                a["repeats_for_0.05"],
                f"{a['virtual_made']} ({a['virtual_during_run']}) / {a['virtual_missing']}",
                f"{a['backlog_s']} s",
                f"{a['latency_median_s']} s",
            ]
            for a in r["acquisition"]
        ],
    )
    w = r["writing"]
    out += ["### Writing", ""]
    out += _table(
        [
            "frame",
            "frames",
            "raw file writes",
            "recorder (lz4)",
            "recorder (uncompressed)",
            "ome-zarr write_image",
            "recorder / raw, lz4 · uncompressed (goal; range of rounds)",
            "lz4: size ratio · stored uncompressed",
            "files per time point",
            "camera fps sustained (lz4 / raw)",
        ],
        [
            [
                f"{w['frame']}² uint16",
                w["frames"],
                f"{w['raw_mb_s']} MB/s",
                f"{w['recorder_lz4_mb_s']} MB/s",
                f"{w['recorder_raw_mb_s']} MB/s",
                f"{w['ome_zarr_mb_s']} MB/s",
                f"{_goal(w['lz4_vs_raw'], 0.8)} · {_goal(w['uncompressed_vs_raw'], 0.8)}"
                + (
                    f" ({_span(w['lz4_vs_raw_range'])} · {_span(w['uncompressed_vs_raw_range'])}, "
                    f"{w['rounds']} rounds)"
                    if "rounds" in w
                    else ""
                ),
                f"{w['lz4_size_ratio']} · {w['lz4_uncompressed_share']:.0%}"
                if "lz4_uncompressed_share" in w
                else w["lz4_size_ratio"],
                w.get("files_per_time_point", "1"),
                f"{w['camera_fps_sustained_lz4']} / {w['camera_fps_sustained_raw']}",
            ]
        ],
    )
    if "camera_fps" in w:
        line = (
            f"The writers above take frames back to back (a camera faster than any of them): the LZ4 "
            f"recorder stores the frames that come faster than its codec uncompressed, so the camera never "
            f"waits for it. A camera at {w['camera_fps']:g} frames/s ({w['camera_frames']} frames of "
            f"{w['frame']}², through a queue as a runner hands them over): size ratio "
            f"{w['camera_lz4_size_ratio']}, {w['camera_lz4_uncompressed_share']:.0%} stored uncompressed, "
            f"latency to disk {w['camera_latency_median_ms']} ms (median), {w['camera_latency_max_ms']} ms "
            "at most."
        )
        out += [line, ""]
    if "recorder_ms_per_frame" in w:
        parts = w["recorder_ms_per_frame"]
        line = (
            f"Where an uncompressed {w['frame']}² frame's time goes in the recorder (medians): `write_plane` "
            f"{parts['write_plane']} ms, of which its display window {parts['of_which_window']} ms; "
            f"`mark_complete` (the run record) {parts['mark_complete']} ms; a raw write of the same bytes "
            f"{w['raw_ms_per_frame']} ms."
        )
        out += [line, ""]
    if "record_ms_late" in w:
        line = (
            f"A long run ({w['long_run_time_points']} time points of 64² planes): the recorder takes "
            f"{w['record_ms_early']} ms per time point over the first 100 and {w['record_ms_late']} ms over "
            "the last half (the run record, rewritten at most once a second, does not grow the cost)."
        )
        out += [line, ""]
    li = r["light"]
    out += ["### Light", ""]
    out += _table(
        [
            "time points",
            "planes measured (Deep-Z / full)",
            "dose (Deep-Z / full)",
            "dose ratio (goal)",
            "brightness left (Deep-Z / full)",
        ],
        [
            [
                li["time_points"],
                f"{li['deepz_planes']} / {li['full_planes']}",
                f"{li['deepz_dose_mJ']} / {li['full_dose_mJ']} mJ",
                f"{li['dose_ratio']} (= {li['planes_requested_per_time_point']} requested / 1 measured)",
                f"{li['deepz_brightness_left']} / {li['full_brightness_left']}",
            ]
        ],
    )
    s = r["scaling"]
    out += [
        "### Scaling",
        "",
        "Virtual stack (1 input plane, CPU) against frame size (21 planes) and depth:",
        "",
    ]
    out += _table(
        ["frame", "planes", "s per stack", "peak MB"],
        [[f"{x['frame']}²", x["depth"], x["stack_s"], x["peak_mb"]] for x in s["frame_size"] + s["depth"]],
    )
    out += ["Deep-Z time-lapse (128² frames) against XY positions:", ""]
    out += _table(
        ["positions", "time points", "s per time point", "peak MB", "virtual missing"],
        [
            [x["positions"], x["time_points"], x["s_per_time_point"], x["peak_mb"], x["virtual_missing"]]
            for x in s["positions"]
        ],
    )
    out += ["Where a Deep-Z time point's cost goes (cProfile, self time):", ""]
    out += _table(
        ["function", "self s", "share"], [[x["function"], x["self_s"], x["share"]] for x in s["profile"]]
    )
    out += ["### Simulator", ""]
    out += _table(
        ["frame", "first frame", "median frame", "max frame", "load config", "first snap after load"],
        [
            [
                x["frame"],
                f"{x['first_frame_s']} s",
                f"{x['median_frame_s']} s",
                f"{x['max_frame_s']} s",
                f"{x.get('load_s', '-')} s",
                f"{x.get('first_snap_s', '-')} s ({x.get('snap_exposure_ms', '-')} ms exposure)",
            ]
            for x in r["simulator"]
        ],
    )
    if "neurons" in r:
        out += [
            "### Neuron analysis",
            "",
            (
                "Cost per time point of `mm-deepz track` (CPU, one 21-plane confocal "
                "stack of a crawling worm):"
            ),
            "",
        ]
        out += _table(
            [
                "frame",
                "planes",
                "neurons per stack",
                "detection s per stack",
                "linking s per time point",
                "tracks",
            ],
            [
                [
                    f"{x['frame']}²",
                    x["planes"],
                    x["neurons_per_stack"],
                    x["detect_s"],
                    x["link_s_per_time_point"],
                    x["tracks"],
                ]
                for x in r["neurons"]
            ],
        )
    if "training_step" in r:
        out += ["### Training step", "", "One generator step (1 input plane), by precision:", ""]
        out += _table(
            ["U-Net", "mode", "device (threads)", "batch × patch", "s per step", "patches / s"],
            [
                [
                    f"depth {x['depth']}"
                    + (f", ≤ {x['max_channels']} channels" if x["max_channels"] else ""),
                    x["mode"],
                    f"{x['device']} ({x['threads']})",
                    f"{x['batch']} × {x['patch']}²",
                    x["step_s"],
                    x["patches_per_s"],
                ]
                for x in r["training_step"]
            ],
        )
    out += ["Section times: " + ", ".join(f"{k} {t} s" for k, t in r["seconds"].items()) + "."]
    return out


def write_markdown(results: dict, path: Path) -> Path:
    """Replace the results section of ``path`` (or create the file with it)."""
    block = "\n".join([START, *results_markdown(results), END])
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    return path
