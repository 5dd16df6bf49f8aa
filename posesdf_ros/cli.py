"""The `posesdf` command."""
from __future__ import annotations

import argparse
import sys

from . import __version__
from .data import cli as data_cli


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posesdf",
        description="posesdf_ros: 3D gait monitoring from depth point clouds. "
                    "Build and preview the synthetic gait benchmark.")
    parser.add_argument("--version", action="version", version=f"posesdf_ros {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
