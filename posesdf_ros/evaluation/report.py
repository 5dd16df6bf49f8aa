"""Markdown tables and plots of evaluation runs, and docs/results.md."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..skeleton import JOINT_NAMES

#: The PoseSDF paper's figures (ICL-Gait, their data): protocol -> value.
PAPER_MPJPE = {"PN++": {"CC": 73.51, "CV": 199.88, "CCCV": 195.06},
               "V2V": {"CC": 20.23, "CV": 132.53, "CCCV": 122.35},
               "PoseSDF w/o RotNet": {"CV": 267.81, "CCCV": 218.95},
               "PoseSDF": {"CC": 20.07, "CV": 26.27, "CCCV": 34.25}}
PAPER_CD = {"DeepSDF": {"CC": 2.33, "CV": 13.38, "CCCV": 11.42},
            "PoseSDF": {"CC": 1.97, "CV": 2.12, "CCCV": 2.15}}
PROTOCOL_COLUMNS = ("CC", "CV", "CCCV")


def write_bench_outputs(result: dict, table: str, json_path: Path | None, markdown_path: Path | None,
                        made_with: str = "") -> None:
    """A bench command's outputs: `result` as JSON, and `table` as markdown headed by how it was made
    (`result`'s command, commit and device, then `made_with`); the table is printed either way."""
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=1))
    if markdown_path:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(f"Made by `{result['command']}` at {result['git_commit']} ({result['device']}"
                                 f"{made_with}).\n\n{table}\n")
    print(table)


def _fmt(v, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def by_protocol(summary: dict) -> dict:
    if "by_protocol" in summary:
        return summary["by_protocol"]
    return {summary["protocol"]: summary}


def data_split(summary: dict) -> str:
    """The split an eval or eval-seg run read; runs from before the split was recorded read test builds."""
    return summary.get("data_split") or "test"


#: How `data_label` names the shifted split's sensor ablations (`posesdf data build --sensor`).
SENSOR_LABELS = {"depth-error": "depth error only, no holes", "holes": "holes only, exact depth",
                 "none": "no sensor model: rendered depth"}


def data_label(summary: dict) -> str:
    """"ours" for the test split of the paper's generator, else which split (and generator, and sensor
    ablation); either with "a box in front" where the build stood one between the camera and the walker."""
    split = data_split(summary)
    profile = summary.get("data_profile") or "paper"
    sensor = summary.get("data_sensor") or "full"
    label = "ours" if split == "test" and profile == "paper" else f"ours, {split} split" + (
        f" ({profile} engine)" if profile not in ("paper", split) else "") + (
        f" ({SENSOR_LABELS[sensor]})" if sensor != "full" else "")
    return label + (", a box in front" if summary.get("data_occluder") else "")


def generalisation_lines(runs: list[dict]) -> list[str]:
    """Issue 18's figures of the runs that record them: the whole distribution of the error and what
    became of the frames that got no pose."""
    rows = [s for s in runs if "mpjpe_median_mm" in s]
    if not rows:
        return []
    lines = ["## Generalisation: our test splits against the shifted split", "",
             "The shifted split comes from a second, independent scene generator (`posesdf data build --split "
             "shifted`, docs/data.md), never trained or tuned on; the raycast split from a third, ray-cast one with "
             "other cameras, Kinect-like noise and a box near the walker (`python tools/raycast_scenes.py`, "
             "docs/data.md), never tuned on either. The product engine's test split (`posesdf data "
             "build --split test --profile product`: test bodies) is the product weights' own distribution, whose "
             "cameras, sensors and distances reach beyond both (docs/data.md). Shares are of all frames: *no person* "
             "(segmentation found none), *rejected* (the fit check reported `valid=False`), *over 150 mm* "
             "and *turned* (RotNet's heading more than 90 deg off) among the frames with a pose. Rows without "
             "*scene input* are fed the true leg points (`--input legs`) or the *whole true surface*, front and back, "
             "without a camera (`--input surface`: the shape space's own error).", "",
             "| method | weights | data | n | mean (mm) | median (mm) | no person % | rejected % | over 150 mm % "
             "| turned % |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in rows:
        figures = [s["mpjpe_mm"], s["mpjpe_median_mm"], s["no_person_pct"], s["rejected_pct"], s["over_150mm_pct"],
                   s.get("turned_pct")]
        lines.append(f"| {run_label(s)} | {weights_label(s)} | {data_label(s)} | {s['count']} | "
                     + " | ".join(_fmt(v, 1) for v in figures) + " |")
    return lines


def _sensor_phrase(summary: dict) -> str:
    sensor = summary.get("data_sensor") or "full"
    flags = [] if sensor == "full" else [f"--sensor {sensor}"]
    if summary.get("data_occluder"):
        flags.append("--occluder")
    return f" built with `{' '.join(flags)}`" if flags else ""


def weights_label(summary: dict) -> str:
    """The PoseSDF weight set a run used, by its training data's engine (`inference.pretrained.WEIGHT_SETS`).
    Runs written before the field was recorded all used the paper set."""
    return (summary.get("weights") or {}).get("data_profile") or "paper"


def run_label(summary: dict) -> str:
    prof = summary.get("profile", {})
    source = summary.get("yaw_source", "")
    yaw = "GT yaw" if source.startswith("ground") else ("RotNet" if source == "RotNet" else "no RotNet")
    scene = ""
    if summary.get("input", "").startswith("whole scene"):
        by = summary.get("leg_points_by") or ""
        # Runs written before the model's point count was recorded say just "LegSegNet" (1,024 points).
        small = by in ("LegSegNet", "LegSegNet (1024 points)")
        legseg = ", LegSegNet" if small else ", fast LegSegNet"
        scene = ", scene input" + (legseg if by.startswith("LegSegNet") else "")
    elif summary.get("input", "").startswith("the whole true lower-limb surface"):
        scene = ", whole true surface"
    # Runs from before start screening existed fitted from the mean code only.
    starts = prof.get("starts", 1) if summary["backend"] != "pn2" else None
    screening = "" if starts is None else (", mean-code start" if starts == 1 else f", {starts} starts")
    if prof.get("amortised"):
        steps = prof.get("iterations", 0)
        screening = ", amortised fit (encoder)" if not steps else f", encoder start + {steps} steps"
    # Runs from before ensembles existed fitted one member.
    members = prof.get("members", 1)
    screening += f", {members} members" if members > 1 else ""
    return f"{summary['backend']} ({prof.get('name', 'profile')}, {yaw}{scene}{screening})"


def write_run_report(summary: dict, records: list[dict], out: Path) -> list[Path]:
    """`report.md` and plots of one run into `out`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    ok = [r for r in records if r["valid"]]
    if ok:
        per_joint = np.array([r["per_joint_mm"] for r in ok])
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.bar(range(9), per_joint.mean(0), yerr=per_joint.std(0), capsize=3, color="#4c72b0")
        ax.set_xticks(range(9), JOINT_NAMES, rotation=35, ha="right")
        ax.set_ylabel("error (mm), mean ± sd")
        ax.set_title(f"per-joint error, {summary['protocol']}, n={len(ok)}")
        fig.tight_layout()
        fig.savefig(out / "per_joint.png", dpi=100)
        plt.close(fig)
        paths.append(out / "per_joint.png")

        views = sorted({r["view"] for r in ok})
        conds = sorted({r["condition"] for r in ok})
        grid = np.full((len(conds), len(views)), np.nan)
        for i, c in enumerate(conds):
            for j, v in enumerate(views):
                vals = [r["mpjpe_mm"] for r in ok if r["condition"] == c and r["view"] == v]
                if vals:
                    grid[i, j] = np.mean(vals)
        fig, ax = plt.subplots(figsize=(1.2 * len(views) + 2.5, 0.6 * len(conds) + 1.5))
        im = ax.imshow(grid, cmap="viridis")
        ax.set_xticks(range(len(views)), views)
        ax.set_yticks(range(len(conds)), conds)
        for i in range(len(conds)):
            for j in range(len(views)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", color="w", fontsize=8)
        fig.colorbar(im, ax=ax, label="MPJPE (mm)")
        ax.set_title("MPJPE by condition and view")
        fig.tight_layout()
        fig.savefig(out / "by_view_condition.png", dpi=100)
        plt.close(fig)
        paths.append(out / "by_view_condition.png")
    lines = [f"# Evaluation: {summary['protocol']}, {summary['backend']}", "",
             f"- samples: {summary['count']} (failed: {summary['failed']})",
             f"- input: {summary['input']}", f"- yaw: {summary['yaw_source']}",
             f"- device: {summary['device']}; commit {summary['git_commit']}",
             f"- weights: {summary['weights']}", "",
             "| protocol | n | MPJPE (mm) | CD (1e-3) |", "|---|---|---|---|"]
    for p, b in by_protocol(summary).items():
        lines.append(f"| {p} | {b['count']} | {_fmt(b['mpjpe_mm'])} | {_fmt(b['cd_1e3'])} |")
    lines += ["", "| joint | error (mm) |", "|---|---|"]
    for name, v in (summary["per_joint_mm"] or {}).items():
        lines.append(f"| {name} | {v:.1f} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    paths.append(out / "report.md")
    return paths


def _rotnet_ratio_lines(runs: list[dict]) -> list[str]:
    """How close RotNet's heading comes to the ground truth's, for runs alike but for the yaw source."""
    lines = []
    for s in runs:
        if s.get("yaw_source") != "RotNet":
            continue
        twin = next((t for t in runs if t.get("yaw_source") == "ground truth"
                     and all(t.get(k) == s.get(k) for k in ("input", "profile", "backend", "count", "leg_points_by",
                                                            "data_split"))),
                    None)
        if twin is None:
            continue
        ratios = []
        for p in ("CV", "CCCV"):
            a, b = by_protocol(s).get(p, {}).get("mpjpe_mm"), by_protocol(twin).get(p, {}).get("mpjpe_mm")
            if a is not None and b:
                ratios.append(f"{p}: {a:.1f} vs {b:.1f} mm ({100 * (a / b - 1):+.0f} %)")
        if ratios:
            lines.append(f"- {run_label(s)}, {s['count']} samples, against the same with the ground-truth heading: "
                         + "; ".join(ratios) + ".")
    return lines


def _yaw_lines(yaw: dict) -> list[str]:
    lines = ["", "## Canonicalisation: RotNet heading error (deg)", "",
             "| input | view | n | median | p95 | over 30 deg (%) |", "|---|---|---|---|---|---|"]
    for key, label in (("gt_legs", "ground-truth legs"), ("segmented", "segmented scene")):
        if key not in yaw:
            continue
        rows = [("all", yaw[key]["overall"])] + sorted(yaw[key]["by_view"].items())
        for view, r in rows:
            lines.append(f"| {label} | {view} | {r['count']} | {_fmt(r['median'])} | {_fmt(r['p95'])} | "
                         f"{_fmt(r['over_30_pct'])} |")
    lines += ["", f"Made by `{yaw.get('command')}`: {yaw.get('count')} samples, test data seed {yaw.get('data_seed')}, "
                  f"{yaw.get('rotnet_points')} points, {yaw.get('test_time_turns')} test-time turns, "
                  f"device {yaw.get('device')}, commit {yaw.get('git_commit')}."]
    return lines


def _segmentation_method(seg: dict) -> str:
    c = seg.get("classifier")
    # Runs from before the point count was recorded used the only LegSegNet then, of 1,024 points.
    # Non-paper classifiers name their scene engine, and their scene count where recorded (two mixed runs differ);
    # the probability threshold where recorded (one classifier's threshold was retuned).
    scenes = f"{c['scenes']:,} " if c and c.get("scenes") else ""
    threshold = f", threshold {c['threshold']:g}" if c and c.get("threshold") is not None else ""
    method = "pelvis crop (rules)" if not c else \
        f"LegSegNet, {c.get('points', 1024)} points ({c.get('epochs_done')}/{c.get('epochs_planned')} epochs" + (
            f", {scenes}{c['data_profile']} scenes" if c.get("data_profile", "paper") != "paper" else "") + \
        f"{threshold})"
    data = data_label(seg)
    where = "" if data == "ours" else ", " + data.removeprefix("ours, ")
    return method + _decimation_phrase(seg.get("decimation", 1)) + where


def _decimation_phrase(decimation: int) -> str:
    """", every 2nd pixel row and column" for a decimated cloud, "" for every pixel."""
    if decimation == 1:
        return ""
    return f", every {decimation}{'nd' if decimation == 2 else 'rd' if decimation == 3 else 'th'} pixel row and column"


def _segmentation_lines(runs: list[dict]) -> list[str]:
    lines = ["", "## Segmentation: lower-limb points against `leg_mask`", "",
             "| leg points by | samples | found | precision (pooled) | recall (pooled) | precision (median) | "
             "recall (median) | time median (ms) | time p95 (ms) |", "|---|---|---|---|---|---|---|---|---|"]
    for seg in runs:
        t = seg.get("timing_ms", {}).get("total", {})
        lines.append(f"| {_segmentation_method(seg)} | {seg['count']} | {seg['valid']} | "
                     f"{seg['precision_pooled']:.3f} | {seg['recall_pooled']:.3f} | {seg['precision_median']:.3f} | "
                     f"{seg['recall_median']:.3f} | "
                     f"{_fmt(t.get('median'))} | {_fmt(t.get('p95'))} |")
    lines.append("")
    for seg in runs:
        lines.append(f"- {_segmentation_method(seg)}: made by `{seg.get('command')}` on scene clouds of about "
                     f"{seg.get('median_points')} points ({data_split(seg)} data seed {seg.get('data_seed')}, "
                     f"generator "
                     f"{seg.get('generator_version')}), device {seg.get('device')}, commit {seg.get('git_commit')}"
                     + (f"; LegSegNet trained by `{seg['classifier'].get('command')}` (scene seed "
                        f"{seg['classifier'].get('data_seed')})" if seg.get("classifier") else "") + ".")
    return lines


def _bench_title(bench: dict) -> str:
    devices = sorted({e["device"] for e in bench["profiles"].values()})
    return f"{', '.join(devices)}, warm starts {'on' if bench.get('track') else 'off'}"


def _speed_lines(bench: dict) -> list[str]:
    """One `posesdf bench speed --json` result: the profiles' table, then the canonicaliser's and the prior's
    stages."""
    lines = ["", f"### {_bench_title(bench)}", "",
              "| profile | device | points | iterations | FPS | MPJPE (mm) | latent opt. (ms) | joints (ms) | "
              "total p95 (ms) | peak RSS (MB) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in bench["profiles"].items():
        st = e["stages_ms"]
        lines.append(f"| {name} | {e['device']} | {e['points']:.0f} | {e['iterations_mean']:.1f} | "
                     f"{e['fps']:.1f} | {e['mpjpe_mm']:.1f} | "
                     f"{st['latent_optimisation']['mean']:.0f} | {st['joint_extraction']['mean']:.0f} | "
                     f"{st['total']['p95']:.0f} | {e['peak_rss_mb']:.0f} |")
    lines.append("")
    lines.append(f"Made by `{bench.get('command')}` on {bench.get('frames')} frames of {bench.get('data')}, "
                 f"tracking (warm start) {'on' if bench.get('track') else 'off'}, "
                 f"commit {bench.get('git_commit')}.")
    if "canonicalise" in bench:
        c = bench["canonicalise"]
        st = c["stages_ms"]
        decimation = c.get("decimation", 1)
        thinned = "" if decimation == 1 else \
            f"{_decimation_phrase(decimation)} kept: about {c['points_segmented']:.0f} segmented"
        lines += ["", "Segmentation + RotNet on the same frames' whole scene clouds "
                      f"(about {c['scene_points']:.0f} points{thinned}, {c['frames_with_person']}/{c['frames']} "
                      f"with a person found, leg points by {c.get('leg_points_by', 'LegSegNet')}, RotNet with "
                      f"{c['rotnet_turns']} test-time turns, {c['device']}):", "",
                  "| stage | mean (ms) | p95 (ms) |", "|---|---|---|"]
        lines += [f"| {k} | {v['mean']:.1f} | {v['p95']:.1f} |" for k, v in st.items()]
    if "step_ms" in bench.get("pose_prior", {}):
        p = bench["pose_prior"]
        lines += ["", f"The pose_prior node's step (`PosePrior.step`, the node's defaults: "
                      f"{p['settings']['lag_frames']} frames of lag, {p['settings']['iterations']} "
                      f"{p['settings'].get('solver', 'L-BFGS')} iterations) on the same frames' true joints plus "
                      f"{1000 * p['noise_m']:.0f} mm noise: "
                      f"{p['step_ms']['mean']:.1f} ms mean, {p['step_ms']['p95']:.1f} ms p95 over "
                      f"{p['frames_timed']} frames."]
    return lines


def write_results_page(run_files: list[Path], out: Path, bench_files: list[Path] | None = None,
                       yaw_file: Path | None = None, segmentation_files: list[Path] | None = None,
                       prior_file: Path | None = None) -> Path:
    """docs/results.md: our measured rows next to the paper's, from eval JSON files."""
    runs = [json.loads(Path(f).read_text()) for f in run_files]
    lines = ["# Results", "",
             "Generated by `posesdf report` from the JSON files of `posesdf eval` (listed under each table);",
             "do not edit by hand. The paper's rows are measured on ICL-Gait, ours on this package's",
             "synthetic benchmark (docs/data.md): different bodies, renderer and noise, so compare the",
             "order of magnitude, not the digits.", "",
             "PoseSDF weights: *product* is the default set, trained on the domain-randomised engine",
             "(`posesdf_ros/weights/product`), *paper* the set trained on the benchmark spec's 300 bodies in",
             "normal gait (`posesdf_ros/weights`, `--weights paper`). Until 2026-12-04 the paper set was the",
             "default: a paper row's command below that names no `--weights` needs `--weights paper` to",
             "repeat it.", "",
             "## Pose: MPJPE (mm)", "", "| method | weights | data | CC | CV | CC&CV | n | yaw | input |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in PAPER_MPJPE.items():
        lines.append(f"| {name} | | paper, ICL-Gait | " + " | ".join(_fmt(row.get(p)) for p in PROTOCOL_COLUMNS)
                     + " | | | |")
    for s in runs:
        b = by_protocol(s)
        lines.append(f"| {run_label(s)} | {weights_label(s)} | {data_label(s)} | "
                     + " | ".join(_fmt(b.get(p, {}).get("mpjpe_mm")) for p in PROTOCOL_COLUMNS)
                     + f" | {s['count']} | {s['yaw_source']} | {s['input']} |")
    ratio = _rotnet_ratio_lines(runs)
    if ratio:
        lines += ["", *ratio]
    generalisation = generalisation_lines(runs)
    if generalisation:
        lines += ["", *generalisation]
    lines += ["", "## Shape: Chamfer distance (1e-3, unit-sphere scale)", "",
              "| method | data | CC | CV | CC&CV |", "|---|---|---|---|---|"]
    for name, row in PAPER_CD.items():
        lines.append(f"| {name} | paper, ICL-Gait | " + " | ".join(_fmt(row.get(p)) for p in PROTOCOL_COLUMNS) + " |")
    for s in runs:
        b = by_protocol(s)
        if any(b.get(p, {}).get("cd_1e3") is not None for p in PROTOCOL_COLUMNS):
            lines.append(f"| {run_label(s)} | ours | "
                         + " | ".join(_fmt(b.get(p, {}).get("cd_1e3")) for p in PROTOCOL_COLUMNS) + " |")
    lines += ["", "## How these were made", ""]
    for f, s in zip(run_files, runs):
        w = s.get("weights", {})
        lines.append(f"- `{Path(f).name}`: `{s.get('command', 'posesdf eval')}`; {s['count']} samples "
                     f"({s.get('samples_per_cell', 'all')} per cell), device {s['device']}, commit {s['git_commit']}, "
                     f"{weights_label(s)} weights trained {w.get('epochs_done')}/{w.get('epochs_planned')} epochs "
                     f"on data seed "
                     f"{w.get('data_seed')}, {data_split(s)} data seed {s.get('data_seed')}{_sensor_phrase(s)}, "
                     f"{s['profile'].get('points')} points, {s['profile'].get('iterations')} iterations max.")
    benches = [json.loads(Path(f).read_text()) for f in bench_files or [] if Path(f).exists()]
    if benches:
        lines += ["", "## Speed (`posesdf bench speed`)"]
        for bench in benches:
            lines += _speed_lines(bench)
    if yaw_file is not None and Path(yaw_file).exists():
        lines += _yaw_lines(json.loads(Path(yaw_file).read_text()))
    segmentation = [json.loads(Path(f).read_text()) for f in segmentation_files or [] if Path(f).exists()]
    if segmentation:
        lines += _segmentation_lines(segmentation)
    if prior_file is not None and Path(prior_file).exists():
        from .prior import table_lines

        lines += ["", "## Pose prior: denoising and occlusion filling (`posesdf bench prior`)", "",
                  *table_lines(json.loads(Path(prior_file).read_text()))]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("\n".join(lines) + "\n")
    return Path(out)
