"""`posesdf eval`, `posesdf bench speed`, `posesdf bench gait` and `posesdf report`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..data.dataset import PROTOCOLS
from ..inference.pretrained import WEIGHT_SET_HELP
from ..parameters import CANONICALISER_PARAMETERS
from ..provenance import command_line
from . import failures as failures_bench
from . import prior as prior_bench
from . import quality as quality_bench
from .benchmark import BACKENDS, INPUTS, YAW_SOURCES, add_classifier_arguments, read_records_jsonl

DEFAULT_TEST = Path("data/test")
_CANONICALISER_DEFAULTS = {p.name: p.default for p in CANONICALISER_PARAMETERS}


def add_parsers(subparsers) -> None:
    ev = subparsers.add_parser(
        "eval", help="accuracy of an estimator on a test build (MPJPE, CD, yaw error)",
        description="Run the estimator over a test build and write the spec's JSON, a markdown report and "
                    "plots. The input is the ground-truth leg cloud (leg_mask) or, with --input scene, the whole "
                    "scene cloud, which the estimator segments.")
    ev.add_argument("--protocol", choices=tuple(PROTOCOLS), default="all", help="CC, CV, CCCV or all (default)")
    ev.add_argument("--backend", choices=BACKENDS, default="posesdf",
                    help="posesdf (default: joints from the sphere fields), nvf (the same latent fit, joints by NVF "
                         "voting) or pn2, the PN++ joint-regression baseline")
    ev.add_argument("--profile", default="accurate", choices=("realtime", "fast", "accurate"),
                    help="accurate (default), fast or realtime")
    ev.add_argument("--data", type=Path, default=DEFAULT_TEST, help=f"test build folder (default {DEFAULT_TEST})")
    ev.add_argument("--limit", type=int, default=None, help="at most N samples per (condition, view) cell")
    ev.add_argument("--yaw", choices=YAW_SOURCES, default="gt",
                    help="gt: canonicalise with the ground-truth heading (default); rotnet: RotNet's heading; "
                         "none: assume view V1 (the paper's w/o RotNet)")
    ev.add_argument("--input", choices=INPUTS, default="legs",
                    help="legs: the ground-truth leg points (default); scene: the whole scene cloud, "
                         "segmented by the estimator (posesdf backend); surface: the whole true lower-limb "
                         "surface, front and back, without a camera (the shape space's own error)")
    add_classifier_arguments(ev)
    ev.add_argument("--vote-rule", choices=("knn", "fraction"), default="knn",
                    help="nvf backend: vote with the --vote-k points of largest weight (default) or with the top "
                         "--vote-keep share of the voting points by weight (the reference's rule)")
    ev.add_argument("--vote-k", type=int, default=32, help="nvf backend, knn rule: points per joint (32)")
    ev.add_argument("--vote-keep", type=float, default=0.5, help="nvf backend, fraction rule: share kept (0.5)")
    ev.add_argument("--vote-probes", type=int, default=None,
                    help="nvf backend: random unit-ball points tried as extra near-surface queries (default: the "
                         "profile's, accurate 2048, fast 512; 0: the observed points only)")
    ev.add_argument("--starts", type=int, default=None,
                    help="posesdf/nvf: start codes screened for each cold fit (default: the profile's, "
                         "accurate 8; fast starts from the encoder's code instead, and screens 4 only "
                         "beside weights without one; 1: the mean code only, as in the paper)")
    ev.add_argument("--members", type=int, default=None,
                    help="posesdf/nvf: fits averaged per frame, each on its own random subset of the points "
                         "(default: the profile's, realtime and fast 4, accurate 1; more than 1 needs an "
                         "amortised profile)")
    ev.add_argument("--no-mesh", action="store_true", help="skip marching cubes and the Chamfer distance")
    ev.add_argument("--weights", type=Path, default=None,
                    help="weights folder, " + WEIGHT_SET_HELP)
    ev.add_argument("--device", default="cpu", help="cpu or cuda")
    ev.add_argument("--json", type=Path, default=None, help="write the run's JSON here")
    ev.add_argument("--out", type=Path, default=None,
                    help="folder for report.md, plots and per-sample records (records.jsonl grows as the run "
                         "goes, records.json at the end)")
    ev.add_argument("--shard", type=shard_argument, default=(0, 1), metavar="I/N",
                    help="run only every N-th sample from the I-th (0-based), e.g. 0/2 and 1/2 in two processes; "
                         "put their records.jsonl files together in one --out folder and --resume there to merge")
    ev.add_argument("--resume", action="store_true",
                    help="with --out: skip the samples already in its records.jsonl (an interrupted run with "
                         "the same settings) and run the rest")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=_eval)

    bench = subparsers.add_parser("bench", help="benchmarks: speed, gait, prior, quality, thresholds, failures")
    bsub = bench.add_subparsers(dest="bench_command", required=True)
    sp = bsub.add_parser("speed", help="per-stage latency, FPS, MPJPE and peak memory of each profile",
                         description="Time the profiles on the same generated walking sequence (a test body "
                                     "on a treadmill, realistic noise, segmented leg clouds, ground-truth yaw), "
                                     "warm-starting each frame from the previous one unless --no-track; then the "
                                     "canonicaliser's work on the whole scene clouds (the node's settings) and the "
                                     "pose_prior node's step on the true joints plus 15 mm noise.")
    sp.add_argument("--frames", type=int, default=30, help="frames of the sequence (default 30, at 15 Hz)")
    sp.add_argument("--view", default="V2", help="camera view of the sequence (default V2)")
    sp.add_argument("--seed", type=int, default=1, help="sequence seed (default 1)")
    sp.add_argument("--profiles", default="realtime,fast,accurate",
                    help="comma-separated (default realtime,fast,accurate)")
    sp.add_argument("--backends", default="posesdf",
                    help="comma-separated joint extractions to time on each profile: posesdf (default), nvf; "
                         "a backend other than posesdf is reported as PROFILE-BACKEND")
    sp.add_argument("--no-track", action="store_true", help="cold start every frame instead of warm starts")
    sp.add_argument("--legseg-model", choices=("fast", "small"), default=_CANONICALISER_DEFAULTS["legseg_model"],
                    help="LegSegNet of the canonicaliser's stage (default: the node's, "
                         f"{_CANONICALISER_DEFAULTS['legseg_model']})")
    sp.add_argument("--rotnet-turns", type=int, default=_CANONICALISER_DEFAULTS["rotnet_turns"],
                    help="RotNet's test-time turns in the canonicaliser's stage (default: the node's, "
                         f"{_CANONICALISER_DEFAULTS['rotnet_turns']})")
    sp.add_argument("--decimation", type=int, default=_CANONICALISER_DEFAULTS["decimation"],
                    help="the canonicaliser's decimation of each camera image before segmentation (default: the "
                         f"node's, {_CANONICALISER_DEFAULTS['decimation']}; 1: every pixel, 2: every second pixel "
                         "row and column)")
    sp.add_argument("--save-sequence", type=Path, default=None, metavar="FILE",
                    help="write the generated sequence (depth images, labels, poses: about 0.3 MB a frame) to "
                         "FILE.npz and stop, to time the same frames on a machine without the body model")
    sp.add_argument("--sequence", type=Path, default=None, metavar="FILE",
                    help="time the frames of a --save-sequence file instead of generating them (its own "
                         "frames, view and seed; --frames, --view and --seed are then unused)")
    sp.add_argument("--device", default="cpu", help="torch device of the estimators and RotNet (cpu, cuda)")
    sp.add_argument("--torch-threads", type=int, default=0,
                    help="torch's CPU threads (and numpy's BLAS threads) for everything timed (default 0: torch's "
                         f"default, every core; the nodes run {_CANONICALISER_DEFAULTS['torch_threads']}: on 2 "
                         "cores that is faster for segmentation + RotNet and the realtime profile, about half as "
                         "fast for fast and accurate)")
    sp.add_argument("--weights", type=Path, default=None,
                    help="PoseSDF weights folder, " + WEIGHT_SET_HELP)
    sp.add_argument("--json", type=Path, default=None, help="write the figures here")
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=_bench_speed)

    gt = bsub.add_parser("gait", help="gait parameters on generated walks against the generator's values",
                         description="Pose test bodies walking (treadmill and overground alternately) in every "
                                     "condition, measure gait parameters from their joints, clean and with "
                                     "Gaussian joint noise, and report the errors against the generator.")
    gt.add_argument("--subjects", type=int, default=10, help="test bodies (default 10), each in every condition")
    gt.add_argument("--fps", type=float, default=15.0, help="frame rate (default 15)")
    gt.add_argument("--cycles", type=float, default=3.0, help="gait cycles per walk (default 3)")
    gt.add_argument("--noise-mm", default="0,10,20", help="joint noise levels, sd per coordinate (default 0,10,20)")
    gt.add_argument("--seed", type=int, default=0)
    gt.add_argument("--json", type=Path, default=None, help="write the summary and per-walk errors here")
    gt.add_argument("--records", action="store_true",
                    help="with --json: also each walk's measured and true parameters and event errors")
    gt.add_argument("--plot", type=Path, default=None, help="PNG of knee curves per cycle against the generator")
    gt.add_argument("--quiet", action="store_true")
    gt.set_defaults(func=_bench_gait)
    prior_bench.add_parser(bsub)
    quality_bench.add_parser(bsub)
    quality_bench.add_thresholds_parser(bsub)
    failures_bench.add_parser(bsub)

    rep = subparsers.add_parser("report", help="write docs/results.md from eval (and bench) JSON files")
    rep.add_argument("runs", type=Path, nargs="+", help="JSON files written by `posesdf eval --json`")
    rep.add_argument("--bench", type=Path, nargs="+", default=None,
                     help="JSONs of `posesdf bench speed --json` (one speed table each, e.g. CPU and GPU)")
    rep.add_argument("--yaw", type=Path, default=None, help="JSON of `posesdf eval-yaw --json`")
    rep.add_argument("--segmentation", type=Path, nargs="+", default=None,
                     help="JSON files of `posesdf eval-seg --json`, one row each")
    rep.add_argument("--prior", type=Path, default=None, help="prior.json of `posesdf bench prior --out DIR`")
    rep.add_argument("--out", type=Path, default=Path("docs/results.md"))
    rep.set_defaults(func=_report)

    seg = subparsers.add_parser(
        "eval-seg", help="person segmentation against leg_mask: point precision, recall, timings",
        description="Run perception.segment_legs on a test build's scene clouds and report pooled point "
                    "precision and recall against leg_mask, failures, pelvis-height errors and stage timings.")
    seg.add_argument("--data", type=Path, default=DEFAULT_TEST, help=f"test build folder (default {DEFAULT_TEST})")
    seg.add_argument("--limit", type=int, default=None, help="at most N samples per (condition, view) cell")
    add_classifier_arguments(seg)
    seg.add_argument("--decimation", type=int, default=1,
                     help="keep every n-th pixel row and column of each depth image first, as the canonicaliser's "
                          "`decimation` parameter does (default 1: every pixel)")
    seg.add_argument("--json", type=Path, default=None, help="write the summary here (without per-sample rows)")
    seg.set_defaults(func=_eval_segmentation)


def shard_argument(text: str) -> tuple[int, int]:
    """argparse type of --shard I/N: (i, n) with 0 <= i < n."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N, e.g. 0/2, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"expected 0 <= I < N, got {text!r}")
    return index, count


# The arguments that change a sample's record: a resumed run must match the interrupted one in all of them.
_RECORD_SETTINGS = ("protocol", "backend", "profile", "data", "limit", "yaw", "input", "classifier",
                    "legseg_weights", "vote_rule", "vote_k", "vote_keep", "vote_probes", "starts", "members", "no_mesh",
                    "weights", "device")


def _records_checkpoint(args: argparse.Namespace):
    """(records of an interrupted run keyed by sample file, a callback appending each new record),
    from and to OUT/records.jsonl; ({}, None) without --out."""
    if args.out is None:
        if args.resume:
            raise SystemExit("--resume needs --out, the folder of the interrupted run")
        return {}, None
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: str(getattr(args, k)) for k in _RECORD_SETTINGS}
    settings_file, records_file = args.out / "settings.json", args.out / "records.jsonl"
    done = {}
    if args.resume and records_file.exists():
        earlier = json.loads(settings_file.read_text()) if settings_file.exists() else None
        if earlier != settings:
            changed = sorted(k for k in settings if (earlier or {}).get(k) != settings[k])
            raise SystemExit(f"--resume: {args.out} holds a run with other settings ({', '.join(changed)}); "
                             "use the same arguments or another --out")
        done = {rec["file"]: rec for rec in read_records_jsonl(records_file)}
        print(f"resuming: {len(done)} samples already in {records_file}", file=sys.stderr)
        records_file.write_text("".join(json.dumps(r) + "\n" for r in done.values()))
    else:
        records_file.write_text("")
    settings_file.write_text(json.dumps(settings, indent=1))

    def append(rec: dict) -> None:
        with records_file.open("a") as f:
            f.write(json.dumps(rec) + "\n")
    return done, append


def _eval(args: argparse.Namespace) -> int:
    from ..data.dataset import load_manifest
    from ..inference.nvf import VoteDecoding
    from .benchmark import eval_estimator, evaluate
    from .report import write_run_report

    for flag in ("starts", "members"):
        if getattr(args, flag) is not None and args.backend == "pn2":
            raise SystemExit(f"--{flag} applies to the posesdf and nvf backends (latent optimisation)")
    try:
        est = eval_estimator(args.backend, args.profile, args.device, args.weights,
                             VoteDecoding(args.vote_rule, args.vote_keep, args.vote_k, args.vote_probes),
                             args.input, args.classifier, args.legseg_weights, args.starts, args.members)
    except ValueError as err:
        raise SystemExit(f"posesdf eval: {err}") from None
    done, on_record = _records_checkpoint(args)
    summary, records = evaluate(est, args.data, args.protocol, args.limit, args.yaw, not args.no_mesh,
                                progress=not args.quiet, input_mode=args.input, done=done, on_record=on_record,
                                shard=args.shard)
    manifest = load_manifest(args.data)
    summary |= {"command": command_line(), "data_seed": manifest.get("seed"), "data_split": manifest.get("split"),
                "data_profile": manifest.get("profile", "paper"), "data_sensor": manifest.get("sensor", "full"),
                "data_occluder": bool(manifest.get("occluder")), "samples_per_cell": args.limit or "all"}
    if args.shard[1] > 1:
        summary["shard"] = "{}/{}".format(*args.shard)
    if args.input == "scene":
        summary["leg_points_by"] = est.leg_classifier.description if est.leg_classifier is not None else "pelvis crop"
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))
    if args.out:
        write_run_report(summary, records, args.out)
        (args.out / "records.json").write_text(json.dumps(records))
    brief = {k: summary[k] for k in ("protocol", "count", "failed", "mpjpe_mm", "cd_1e3", "fps", "device")}
    brief["by_protocol"] = {p: {"mpjpe_mm": b["mpjpe_mm"], "cd_1e3": b["cd_1e3"], "count": b["count"]}
                            for p, b in summary.get("by_protocol", {}).items()}
    print(json.dumps(brief, indent=1))
    return 0


def _bench_speed(args: argparse.Namespace) -> int:
    import torch

    from ..inference.estimator import GaitPoseEstimator
    from ..inference.pipeline import limit_cpu_threads
    from .benchmark import bench_speed
    from .sequences import load_sequence, save_sequence, walking_sequence

    if args.torch_threads < 0:
        raise SystemExit("--torch-threads must be 0 (torch's default) or more")
    limit_cpu_threads(args.torch_threads)       # as a node does with its torch_threads

    if args.sequence:
        frames, described = load_sequence(args.sequence)
        data = f"walking sequence {args.sequence.name}: {described['data']}"
    else:
        frames = walking_sequence(args.frames, view=args.view, seed=args.seed, organised=True)
        data = f"walking sequence, view {args.view}, seed {args.seed}, 15 Hz"
        if args.save_sequence:
            save_sequence(args.save_sequence, frames, {"data": data, "command": command_line()})
            print(f"{len(frames)} frames written to {args.save_sequence}")
            return 0
    ests = {name if backend == "posesdf" else f"{name}-{backend}":
            GaitPoseEstimator.from_pretrained(backend, name, args.device, args.weights, rotnet_turns=args.rotnet_turns,
                                              legseg_model=args.legseg_model)
            for name in args.profiles.split(",") for backend in args.backends.split(",")}
    result = bench_speed(ests, frames, track=not args.no_track, progress=not args.quiet)
    from ..provenance import git_commit
    from .benchmark import bench_canonicalise
    out = {"command": command_line(), "data": data,
           "frames": len(frames), "track": not args.no_track, "torch_threads": torch.get_num_threads(),
           "git_commit": git_commit(), "profiles": result}
    first = next(iter(ests.values()))
    if first.yaw_estimator is not None:
        out["canonicalise"] = bench_canonicalise(frames, first.yaw_estimator, progress=not args.quiet,
                                                 leg_classifier=first.leg_classifier, decimation=args.decimation)
    from .benchmark import bench_prior_step

    out["pose_prior"] = bench_prior_step(frames)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


def _bench_gait(args: argparse.Namespace) -> int:
    from .gait import evaluate_gait, markdown_table, plot_knee_curves

    noise = tuple(float(n) for n in args.noise_mm.split(","))
    result = evaluate_gait(args.subjects, fps=args.fps, cycles=args.cycles, noise_mm=noise, seed=args.seed,
                           progress=not args.quiet)
    result["command"] = command_line()
    if args.json:
        if not args.records:
            result["records"] = [{k: r[k] for k in ("sequence", "noise_mm", "valid", "reason", "errors") if k in r}
                                 for r in result["records"]]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot_knee_curves(args.plot, fps=args.fps, seed=args.seed)
    print(markdown_table(result))
    return 0


def _eval_segmentation(args: argparse.Namespace) -> int:
    from ..data.dataset import load_manifest
    from ..inference.legseg import load_for_cli
    from ..provenance import device_description, git_commit
    from .segmentation import measure_segmentation

    classifier = load_for_cli(args.classifier, args.legseg_weights)
    summary = {k: v for k, v in measure_segmentation(args.data, args.limit, leg_classifier=classifier,
                                                                 decimation=args.decimation).items()
               if k != "samples"}
    manifest = load_manifest(args.data)
    summary |= {"command": command_line(), "data_seed": manifest.get("seed"), "data_split": manifest.get("split"),
                "data_profile": manifest.get("profile", "paper"),
                "generator_version": manifest.get("generator_version"),
                "samples_per_cell": args.limit or "all", "decimation": args.decimation,
                "device": device_description("cpu"),
                "classifier": None if classifier is None else {
                    k: classifier.meta.get(k)
                    for k in ("epochs_done", "epochs_planned", "data_seed", "command", "scenes")}
                | {"points": classifier.model.config.points, "threshold": classifier.threshold,
                   "data_profile": classifier.meta.get("data_profile", "paper")},
                "git_commit": git_commit()}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import write_results_page

    print(write_results_page(args.runs, args.out, args.bench, args.yaw, args.segmentation, args.prior))
    return 0
