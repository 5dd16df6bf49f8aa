"""`posesdf train ...`: train the package's models."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..evaluation.cli import shard_argument
from ..inference.pretrained import WEIGHT_SET_HELP


def add_resume_arguments(parser, export_only: bool) -> None:
    """--no-resume, --max-minutes and (for trainers that can export a run cut short) --export-only."""
    parser.add_argument("--no-resume", action="store_true", help="start afresh even if --out has a checkpoint")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop cleanly after this wall time (checkpoint written); rerun to continue")
    if export_only:
        parser.add_argument("--export-only", action="store_true",
                            help="export the checkpoint in --out as it is (a run cut short), without training")


def add_parser(subparsers) -> None:
    train = subparsers.add_parser("train", help="train a model (PoseSDF, ...) on a training build")
    sub = train.add_subparsers(dest="train_command", required=True)
    from .posesdf_trainer import PRESETS

    p = sub.add_parser(
        "posesdf", help="auto-decoder training of PoseSDF on `posesdf data build --split train`",
        description="Train PoseSDF (shape + nine joint-sphere SDFs, one latent code per shape). Writes "
                    "checkpoint.pt (resumable), loss.csv, loss.png, config.json and the exported "
                    "posesdf.pt/posesdf.json into --out. Reruns resume from the checkpoint.")
    p.add_argument("--config", choices=PRESETS, default="small",
                   help="small: width 128, 200 epochs, about an hour on 2 CPU cores; "
                        "paper: the paper's width 256 and 3,000 epochs, for a GPU; tiny: tests only")
    p.add_argument("--data", type=Path, required=True,
                   help="training dataset folder, or its pack (`posesdf data pack`, a .npz) on a machine without it")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epoch count")
    p.add_argument("--lr", type=float, default=None,
                   help="override the preset's learning rate, for the network and the codes alike")
    p.add_argument("--lr-step-epochs", type=int, default=None,
                   help="override the preset's lr halving period in epochs")
    p.add_argument("--limit", type=int, default=None, help="train on the first N shapes only")
    add_resume_arguments(p, export_only=False)
    p.add_argument("--init-from", type=Path, default=None,
                   help="start from another run's checkpoint.pt (same model, same bodies) with a fresh schedule: "
                        "fine-tuning on a revised build")
    p.add_argument("--no-exchange", action="store_true", help="ablation: no feature exchange between decoders")
    p.add_argument("--no-encoder", action="store_true", help="ablation: no encoder")
    p.add_argument("--shape-only", action="store_true", help="baseline: DeepSDF-like, no pose decoder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train_posesdf)

    q = sub.add_parser(
        "pn2", help="the PN++ baseline: PointNet++ regressing the joints from a canonical leg cloud",
        description="Train the PN++ baseline on partial views (hidden point removal around view V1) of the "
                    "training shapes. Writes checkpoint.pt, loss.csv, loss.png and pn2.pt/pn2.json into --out.")
    q.add_argument("--config", choices=("small", "tiny"), default="small",
                   help="small: 40 epochs over 8 views of each shape; tiny: tests only")
    q.add_argument("--data", type=Path, required=True, help="training dataset folder")
    q.add_argument("--out", type=Path, required=True, help="run folder")
    q.add_argument("--device", default="cpu")
    q.add_argument("--epochs", type=int, default=None, help="override the preset's epoch count")
    q.add_argument("--limit", type=int, default=None, help="train on the first N shapes only")
    q.add_argument("--no-resume", action="store_true")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=_train_pn2)

    r = sub.add_parser(
        "rotnet", help="RotNet: the subject's heading from a leg cloud (PointNet++ + angle bins)",
        description="Train RotNet on partial views (hidden point removal from every azimuth) of the training "
                    "shapes, freshly augmented each batch. Writes checkpoint.pt (resumable), loss.csv, loss.png "
                    "and rotnet.pt/rotnet.json into --out. Reruns resume from the checkpoint.")
    r.add_argument("--config", choices=("small", "tiny"), default="small",
                   help="small: 60 epochs over 16 views of each shape, about 40 minutes on 2 CPU cores; "
                        "tiny: tests only")
    r.add_argument("--data", type=Path, required=True, help="training dataset folder")
    r.add_argument("--out", type=Path, required=True, help="run folder")
    r.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    r.add_argument("--epochs", type=int, default=None, help="override the preset's epoch count")
    r.add_argument("--limit", type=int, default=None, help="train on the first N shapes only")
    r.add_argument("--init", type=Path, default=None,
                   help="start from the RotNet in this folder (rotnet.pt, same config), e.g. the shipped one: "
                        "fine-tuning on another build")
    r.add_argument("--lr", type=float, default=None, help="override the preset's learning rate (1e-3)")
    add_resume_arguments(r, export_only=True)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_train_rotnet)

    e = sub.add_parser(
        "encoder", help="the amortised fit: a leg cloud to PoseSDF's code, normalisation and joints in one pass",
        description="Train the latent encoder (PointNet++) and its joint head against the frozen PoseSDF run's "
                    "training codes, on partial views (hidden point removal from every azimuth) of the same "
                    "training shapes, freshly augmented each batch. Writes checkpoint.pt (resumable), loss.csv, "
                    "loss.png and encoder.pt/encoder.json into --out; copy them beside the posesdf.pt they "
                    "were trained on (its SHA-256 is checked when loaded).")
    e.add_argument("--config", choices=("small", "tiny"), default="small",
                   help="small: 50 epochs over 16 views of each shape, about 20 minutes on 2 CPU cores; "
                        "tiny: tests only")
    e.add_argument("--data", type=Path, required=True, help="the training build the PoseSDF weights were trained on")
    e.add_argument("--out", type=Path, required=True, help="run folder")
    e.add_argument("--posesdf-weights", type=Path, default=None,
                   help="folder with posesdf.pt/json and posesdf_codes.npy, " + WEIGHT_SET_HELP)
    e.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    e.add_argument("--epochs", type=int, default=None, help="override the preset's epoch count")
    e.add_argument("--lr-step-epochs", type=int, default=None,
                   help="override the preset's lr halving period in epochs (20): scale it with --epochs")
    e.add_argument("--limit", type=int, default=None, help="train on the first N shapes only")
    add_resume_arguments(e, export_only=True)
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_train_encoder)

    g = sub.add_parser(
        "legseg", help="LegSegNet: the lower-limb points of a person's window in a scene (PointNet++ segmentation)",
        description="Render scenes of the training bodies like the test split's (every condition and view, "
                    "clutter, realistic noise; data seed 3 by default, apart from val's 2 and test's 1), cut out "
                    "each person's points below the pelvis guess + 0.3 m with perception.find_person, cache them "
                    "in --out/windows.npz, and train LegSegNet on their leg_mask labels under fresh augmentation. "
                    "Writes checkpoint.pt (resumable), loss.csv, loss.png and legseg.pt/legseg.json into --out.")
    g.add_argument("--config", choices=("small", "fast", "tiny"), default="small",
                   help="small: 1,024 points per window, 70 scenes per (condition, view) cell, 40 epochs; "
                        "fast: the same on 512 points with half as many neighbours per centre (a quarter of "
                        "the work per window); tiny: tests only")
    g.add_argument("--out", type=Path, required=True, help="run folder")
    g.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    g.add_argument("--epochs", type=int, default=None, help="override the preset's epoch count")
    g.add_argument("--scenes-per-cell", type=int, default=None, help="override the preset's scenes per cell")
    g.add_argument("--data-seed", type=int, default=None, help="seed of the training scenes (default 3)")
    g.add_argument("--profile", choices=("paper", "product", "mixed"), default=None,
                   help="scene engine: paper (the test split's, default), product (the domain-randomised "
                        "engine of `posesdf data build --profile product`: its bodies, gaits, cameras, sensor "
                        "models and clutter) or mixed (both, --scenes-per-cell scenes per cell from each)")
    add_resume_arguments(g, export_only=True)
    g.add_argument("--tune-on", type=Path, default=None,
                   help="a val build (`posesdf data build --split val`): after training, pick the probability "
                        "threshold that mislabels the fewest points there and store it in legseg.json")
    g.add_argument("--tune-only", action="store_true",
                   help="with --tune-on: only pick the threshold of the legseg.pt already in --out (an "
                        "exported run, or the shipped weights folder), no training")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_train_legseg)

    v = sub.add_parser(
        "nvf", help="the NVF vote head on top of the frozen PoseSDF (its training codes, same frame)",
        description="Train the Neural Voting Field head: per near-surface point and joint a vote (weight, "
                    "direction) read from the frozen PoseSDF's features, with the PoseSDF run's training codes. "
                    "Writes checkpoint.pt (resumable), loss.csv, loss.png, config.json, nvf.pt/nvf.json and a "
                    "copy of the PoseSDF weights into --out.")
    v.add_argument("--config", choices=("small", "tiny"), default="small",
                   help="small: 200 epochs, about 15 minutes with one CPU thread; tiny: tests only")
    v.add_argument("--data", type=Path, required=True, help="training dataset folder (the PoseSDF run's)")
    v.add_argument("--out", type=Path, required=True, help="run folder")
    v.add_argument("--posesdf-weights", type=Path, default=None,
                   help="folder with posesdf.pt/json and posesdf_codes.npy, " + WEIGHT_SET_HELP)
    v.add_argument("--radius", type=float, default=None, help="vote radius R, normalised units (default 0.25)")
    v.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    v.add_argument("--epochs", type=int, default=None, help="override the preset's epoch count")
    v.add_argument("--limit", type=int, default=None, help="train on the first N shapes only")
    v.add_argument("--fits", type=Path, default=None,
                   help="folder of `posesdf train nvf-fits` output: the head also learns from codes fitted to "
                        "depth views (their observed points and near-surface probes), as it reads them at "
                        "inference")
    v.add_argument("--val-fits", type=Path, default=None,
                   help="another such folder (other scenes) whose decoded joint error is logged each epoch, "
                        "next to the sphere centres' error on the same fits")
    v.add_argument("--init", type=Path, default=None,
                   help="start from the head in this folder (nvf.pt, same config), e.g. the shipped one")
    add_resume_arguments(v, export_only=False)
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=_train_nvf)

    f = sub.add_parser(
        "nvf-fits", help="fit PoseSDF codes to the depth views of a val build, for `train nvf --fits`",
        description="Run the estimator (PoseSDF, ground-truth heading and leg points) over a val build "
                    "(training bodies; never the test split) and write, per scene, the fitted code, the "
                    "voters the nvf backend would read and the ground-truth joints in the fit's frame, to "
                    "--out/fits_IofN.npz.")
    f.add_argument("--data", type=Path, required=True, help="a val build (`posesdf data build --split val`)")
    f.add_argument("--out", type=Path, required=True, help="fits folder")
    f.add_argument("--profile", choices=("accurate", "fast"), default="accurate",
                   help="estimator profile of the fits (default accurate, as `posesdf eval`)")
    f.add_argument("--weights", type=Path, default=None, help="PoseSDF weights folder, " + WEIGHT_SET_HELP)
    f.add_argument("--limit", type=int, default=None, help="at most N scenes per (condition, view) cell")
    f.add_argument("--shard", type=shard_argument, default=(0, 1), metavar="I/N",
                   help="fit every N-th scene from the I-th (0-based): N processes share the work, each "
                        "writing its own fits_IofN.npz into --out")
    f.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=_nvf_fits)

    d = sub.add_parser(
        "nvf-decoding", help="compare the NVF vote selections on fits of a val build (no test data)",
        description="Decode the joints of `posesdf train nvf-fits` output with a head under K nearest by weight "
                    "(K = 4 to 64) and the top 10 to 50 %% by weight, and print (or write) the mean joint error of "
                    "each next to the sphere centres' on the same fits.")
    d.add_argument("--fits", type=Path, required=True, help="a `posesdf train nvf-fits` folder")
    d.add_argument("--weights", type=Path, default=None,
                   help="folder with nvf.pt/json and its posesdf.pt/json, " + WEIGHT_SET_HELP)
    d.add_argument("--json", type=Path, default=None, help="also write the rows here")
    d.set_defaults(func=_nvf_decoding)

    n = sub.add_parser(
        "posendf", help="Pose-NDF: the distance of a lower-limb pose from the gait manifold (the pose prior)",
        description="Train Pose-NDF on gait poses of the training bodies (every condition, posed by anny; "
                    "generated on the first run and cached as manifold.npz) and noisy poses around them. Writes "
                    "checkpoint.pt (resumable), loss.csv, loss.png and posendf.pt/posendf.json into --out.")
    n.add_argument("--config", choices=("small", "tiny"), default="small",
                   help="small: 60 bodies x 5 conditions x 2 gaits x 64 phases, 60 epochs, about 20 minutes on "
                        "2 CPU cores; tiny: tests only")
    n.add_argument("--out", type=Path, required=True, help="run folder")
    n.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    n.add_argument("--epochs", type=int, default=None, help="override the preset's epoch count")
    add_resume_arguments(n, export_only=False)
    n.add_argument("--quiet", action="store_true", help="no progress bar")
    n.set_defaults(func=_train_posendf)


def _train_posesdf(args: argparse.Namespace) -> int:
    from .posesdf_trainer import preset, train_posesdf

    config = preset(args.config)
    if args.epochs is not None:
        config.epochs = args.epochs
    if args.lr is not None:
        config.lr = config.latent_lr = args.lr
    if args.lr_step_epochs is not None:
        config.lr_step_epochs = args.lr_step_epochs
    if args.no_exchange:
        config.model.exchange_layers = 0
    if args.no_encoder:
        config.model.encoder_layers = 0
    if args.shape_only:
        config.model.pose_decoder = False
    summary = train_posesdf(args.data, args.out, config, args.device, resume=not args.no_resume,
                            limit=args.limit, progress=not args.quiet, max_minutes=args.max_minutes,
                            init_from=args.init_from)
    print(json.dumps(summary, indent=1, default=float))
    return 0


def _train_pn2(args: argparse.Namespace) -> int:
    from .pn2_trainer import preset, train_pn2

    config = preset(args.config)
    if args.epochs is not None:
        config.epochs = args.epochs
    summary = train_pn2(args.data, args.out, config, args.device, resume=not args.no_resume, limit=args.limit,
                        progress=not args.quiet)
    print(json.dumps(summary, indent=1, default=float))
    return 0


def _train_rotnet(args: argparse.Namespace) -> int:
    from .rotnet_trainer import preset, train_rotnet

    config = preset(args.config)
    if args.epochs is not None:
        config.epochs = args.epochs
    if args.lr is not None:
        config.lr = args.lr
    summary = train_rotnet(args.data, args.out, config, args.device, resume=not args.no_resume, limit=args.limit,
                           progress=not args.quiet, max_minutes=args.max_minutes, export_only=args.export_only,
                           init=args.init)
    print(json.dumps(summary, indent=1, default=float))
    return 0


def _train_encoder(args: argparse.Namespace) -> int:
    from .encoder_trainer import preset, train_encoder

    config = preset(args.config)
    if args.epochs is not None:
        config.epochs = args.epochs
    if args.lr_step_epochs is not None:
        config.lr_step_epochs = args.lr_step_epochs
    summary = train_encoder(args.data, args.out, config, args.device, resume=not args.no_resume, limit=args.limit,
                            posesdf_weights=args.posesdf_weights, progress=not args.quiet,
                            max_minutes=args.max_minutes, export_only=args.export_only)
    print(json.dumps(summary, indent=1, default=float))
    return 0


def _train_legseg(args: argparse.Namespace) -> int:
    from .legseg_trainer import preset, train_legseg, tune_threshold

    config = preset(args.config)
    for field, value in (("epochs", args.epochs), ("scenes_per_cell", args.scenes_per_cell),
                         ("data_seed", args.data_seed), ("profile", args.profile)):
        if value is not None:
            setattr(config, field, value)
    if args.tune_only:
        if args.tune_on is None:
            raise SystemExit("--tune-only needs --tune-on VAL_BUILD")
        print(json.dumps({"threshold": tune_threshold(args.out, args.tune_on, progress=not args.quiet)},
                         indent=1, default=float))
        return 0
    summary = train_legseg(args.out, config, args.device, resume=not args.no_resume, progress=not args.quiet,
                           max_minutes=args.max_minutes, export_only=args.export_only)
    if args.tune_on is not None:
        summary["threshold"] = tune_threshold(args.out, args.tune_on, progress=not args.quiet)
    print(json.dumps(summary, indent=1, default=float))
    return 0


def _train_posendf(args: argparse.Namespace) -> int:
    from .posendf_trainer import preset, train_posendf

    config = preset(args.config)
    if args.epochs is not None:
        config.epochs = args.epochs
    summary = train_posendf(args.out, config, args.device, resume=not args.no_resume, progress=not args.quiet,
                            max_minutes=args.max_minutes)
    print(json.dumps(summary, indent=1, default=float))
    return 0


def _train_nvf(args: argparse.Namespace) -> int:
    from .nvf_trainer import preset, train_nvf

    config = preset(args.config)
    if args.epochs is not None:
        config.epochs = args.epochs
    if args.radius is not None:
        config.model.radius = args.radius
    summary = train_nvf(args.data, args.out, config, args.posesdf_weights, args.device, resume=not args.no_resume,
                        limit=args.limit, progress=not args.quiet, max_minutes=args.max_minutes, fits=args.fits,
                        val_fits=args.val_fits, init=args.init)
    print(json.dumps(summary, indent=1, default=float))
    return 0


def _nvf_fits(args: argparse.Namespace) -> int:
    from .nvf_fits import collect_fits

    path = collect_fits(args.data, args.out, args.profile, args.weights, limit=args.limit, shard=args.shard,
                        device=args.device, progress=not args.quiet)
    print(path)
    return 0


def _nvf_decoding(args: argparse.Namespace) -> int:
    from .nvf_trainer import decoding_sweep

    result = decoding_sweep(args.fits, args.weights)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    print(f"sphere centres: {result['sphere_mpjpe_mm']:.2f} mm on {result['views']} fits")
    for row in result["rows"]:
        rule = f"K = {row['k']}" if row["rule"] == "knn" else f"top {100 * row['keep']:g} % by weight"
        print(f"{rule}: {row['mpjpe_mm']:.2f} mm")
    return 0
