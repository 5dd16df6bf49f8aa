"""Node processes as `ros2 launch` starts them: one `bringup` process per node, and their clean stop.

`posesdf demo` and `posesdf bag eval --live` start the pipeline this way,
so that no node's Python work waits for another's on the interpreter lock.
The processes inherit this process's environment (ROS_DOMAIN_ID, RMW
settings) and, as the launch files set it, the shipped Fast DDS profile.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from .transport import environment_with_profile


def start_node_processes(nodes: dict[str, tuple[dict, dict[str, str]]], params_file: Path | None,
                         logs: Path) -> dict[str, tuple[subprocess.Popen, object]]:
    """node name -> (parameter overrides, remappings); returns name -> (process, its open log file)."""
    logs.mkdir(parents=True, exist_ok=True)
    procs = {}
    for name, (overrides, remaps) in nodes.items():
        cmd = [sys.executable, "-m", "posesdf_ros.ros.bringup", "--nodes", name]
        if params_file is not None:
            cmd += ["--params-file", str(params_file)]
        # One token each: rcl would take a lone "k:=v" for a remap rule.
        cmd += [f"--set={key}:={value}" for key, value in overrides.items()]
        cmd += ["--ros-args"] + [arg for src, dst in remaps.items() for arg in ("-r", f"{src}:={dst}")]
        log = open(logs / f"{name}.log", "w")
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=environment_with_profile()),
                       log)
    return procs


def stop_node_processes(procs: dict) -> dict[str, int]:
    """SIGINT (a clean lifecycle shutdown, exit 0), then SIGKILL after 15 s; returns the exit codes."""
    for proc, _ in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    codes = {}
    for name, (proc, log) in procs.items():
        try:
            codes[name] = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[name] = proc.wait()
        log.close()
    return codes
