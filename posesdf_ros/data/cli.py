"""`posesdf data ...`: build benchmark datasets and preview them."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .dataset import PROFILES, PROTOCOLS, SPLITS, TEST_SAMPLES_PER_CELL, TRAIN_BODIES
from .domain import PRODUCT
from .shifted import SENSOR_PARTS

PRODUCT_TRAIN = PRODUCT.train_samples


def add_parser(subparsers) -> None:
    data = subparsers.add_parser("data", help="build and preview the synthetic gait benchmark")
    sub = data.add_subparsers(dest="data_command", required=True)

    build = sub.add_parser(
        "build", help="write a train, test, val or shifted dataset (npz samples + manifest.json)",
        description="Write a dataset folder of the benchmark spec. Deterministic (same seed, same bytes) "
                    "and safe to rerun: samples already written are kept.")
    build.add_argument("--split", choices=SPLITS, required=True,
                       help=f"train: {TRAIN_BODIES} training bodies (product: {PRODUCT_TRAIN}), SDF samples; "
                            "test: scene clouds of test bodies, per (condition, view) cell; val: the same scenes "
                            "of the training bodies, to tune on without touching the test bodies; shifted: scenes "
                            "of a second, independent generator (other bodies, gait curves, cameras, sensor "
                            "model and clutter), to validate on only")
    build.add_argument("--profile", choices=PROFILES, default=None,
                       help="paper (default): the benchmark spec's generator; product: the domain-randomised "
                            "engine (all conditions, gait styles, arms, camera presets and sensor models; "
                            "docs/data.md lists its ranges). Not for --split shifted, which has its own. "
                            "A folder holds one profile")
    build.add_argument("--sensor", choices=tuple(SENSOR_PARTS), default="full",
                       help="shifted split only: which halves of its structured-light model apply (default full; "
                            "depth-error: disparity noise and quantisation, no holes; holes: shadow, edge and "
                            "dark-surface holes, exact depth; none: the rendered depth). The same scenes pixel for "
                            "pixel, for an ablation of the sensor's share of the error (docs/results.md)")
    build.add_argument("--occluder", action="store_true",
                       help="test, val and shifted splits: stand a box between the camera and the walker in every "
                            "scene (0.2 to 0.6 m wide, 0.3 to 0.9 m high, 45 to 75 %% of the way to the walker, up "
                            "to 0.35 m aside; `scene.OccluderRanges`), hiding part of the legs or all of them: "
                            "the same scenes otherwise (where the legs stay in view), to measure how occlusion "
                            "is handled (docs/data.md)")
    build.add_argument("--protocol", choices=tuple(PROTOCOLS), default="all",
                       help="test/val/shifted cells to build: CC, CV, CCCV or all (default; ignored for train)")
    build.add_argument("--limit", type=int, default=None,
                       help=f"train: number of bodies (default {TRAIN_BODIES}, product {PRODUCT_TRAIN}); "
                            f"test/val/shifted: samples per (condition, view) cell (default {TEST_SAMPLES_PER_CELL})")
    build.add_argument("--seed", type=int, default=None,
                       help="data seed (default 0 for train, 1 for test, 2 for val, 3 for shifted)")
    build.add_argument("--out", type=Path, required=True, help="dataset folder")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(func=_build)

    pack = sub.add_parser(
        "pack", help="a compact copy of a train build (one .npz, float16), to train PoseSDF elsewhere",
        description="Keep a random subset of each training shape's SDF samples in float16 in one .npz that "
                    "`posesdf train posesdf --data PACK.npz` reads like the build: a product train build is "
                    "2 GB, its default pack about 40 MB, small enough to carry to a GPU machine. Deterministic.")
    pack.add_argument("--data", type=Path, required=True,
                      help="a train build folder (`posesdf data build --split train`)")
    pack.add_argument("--out", type=Path, required=True, help="the pack file (.npz)")
    pack.add_argument("--shape-samples", type=int, default=3072,
                      help="shape SDF samples kept per shape, of 50,000 (default 3072; 90 %% near the surface)")
    pack.add_argument("--joint-samples", type=int, default=192,
                      help="samples kept around each joint per shape, of 8,000 (default 192)")
    pack.add_argument("--seed", type=int, default=0, help="subset seed (default 0)")
    pack.add_argument("--quiet", action="store_true", help="no progress bar")
    pack.set_defaults(func=_pack)

    preview = sub.add_parser("preview", help="write preview PNGs: depth, RGB, cloud and skeleton for each view")
    preview.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    preview.add_argument("--seed", type=int, default=1, help="data seed (default 1, as the test split)")
    preview.add_argument("--condition", default="normal", help="gait condition shown (default normal)")
    preview.set_defaults(func=_preview)


def _build(args: argparse.Namespace) -> int:
    from .dataset import build_dataset

    if args.split == "shifted" and args.profile is not None:
        raise SystemExit("--split shifted has its own generator: build it without --profile")
    if args.split != "shifted" and args.sensor != "full":
        raise SystemExit("--sensor ablates the shifted split's sensor model: use it with --split shifted")
    if args.occluder and args.split == "train":
        raise SystemExit("--occluder stands a box in front of the walker in scenes: use it with a scene split")
    manifest = build_dataset(args.out, args.split, args.protocol, args.limit, args.seed, progress=not args.quiet,
                             profile=args.profile, sensor=args.sensor, occluder=args.occluder)
    stats = manifest["build_stats"]
    rate = f"{stats['samples_per_s']:.2f} samples/s" if stats["samples_per_s"] else "nothing new to write"
    print(json.dumps({"out": str(args.out), "split": manifest["split"], "profile": manifest["profile"],
                      "seed": manifest["seed"],
                      "samples": manifest["count"], "written_now": stats["written"],
                      "seconds": round(stats["seconds"], 1), "rate": rate}, indent=1))
    return 0


def _pack(args: argparse.Namespace) -> int:
    from .pack import pack_training_build

    if args.out.suffix != ".npz":
        raise SystemExit(f"--out {args.out}: a pack is one .npz file")
    print(json.dumps(pack_training_build(args.data, args.out, args.shape_samples, args.joint_samples, args.seed,
                                         progress=not args.quiet), indent=1))
    return 0


def _preview(args: argparse.Namespace) -> int:
    from .preview import write_previews

    for path in write_previews(args.out, args.seed, args.condition):
        print(path)
    return 0
