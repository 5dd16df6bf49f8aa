"""Where a figure came from: the code's commit and the device it ran on, recorded in every result JSON."""
from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path


def git_commit() -> str:
    """The checkout's short commit, with "-dirty" when tracked files have uncommitted changes; where
    POSESDF_GIT_COMMIT is set, that (a copy of a checkout without its own git history, e.g. on a
    GPU machine, names the commit it was copied from)."""
    if os.environ.get("POSESDF_GIT_COMMIT"):
        return os.environ["POSESDF_GIT_COMMIT"]
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent,
                              timeout=5).stdout.strip()
    try:
        sha = git("rev-parse", "--short", "HEAD")
        return (sha + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_description(device) -> str:
    """"cuda: <GPU name>" or "cpu: <CPU model>, <torch threads> threads"."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {cpu}, {torch.get_num_threads()} threads"


def command_line() -> str:
    """The `posesdf` command this process runs, as a shell would take it back (recorded beside results)."""
    return "posesdf " + " ".join(shlex.quote(a) for a in sys.argv[1:])
