"""The `posesdf` command."""
from __future__ import annotations

import argparse
import sys

from . import __version__
from .data import cli as data_cli
from .evaluation import cli as eval_cli
from .evaluation import yaw as yaw_eval
from .ros import cli as ros_cli
from .ros.bag import cli as bag_cli
from .training import cli as train_cli


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posesdf",
        description="posesdf_ros: 3D gait monitoring from depth point clouds. "
                    "Build the synthetic gait benchmark, train and evaluate the models, run the live ROS 2 demo.")
    parser.add_argument("--version", action="version", version=f"posesdf_ros {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_cli.add_parser(sub)
    train_cli.add_parser(sub)
    eval_cli.add_parsers(sub)
    yaw_eval.add_parser(sub)
    ros_cli.add_parser(sub)
    bag_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        # Bad arguments or missing data/weights: one clear line, not a traceback.
        print(f"posesdf: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
