"""The colcon-built package runs as a ROS user runs it, and its nodes stop cleanly on SIGINT and SIGTERM.

Each node is its own process started from `install/posesdf_ros/lib/posesdf_ros/`
with the environment `source install/setup.bash` gives, from a folder outside
the source tree, and with no `.pth` hooks (`python -S`), so the editable
install cannot lend the source tree's modules (`ColconInstall` in conftest.py).
The nodes talk over real Fast DDS, on a domain of their own.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

import numpy as np
import rclpy
from geometry_msgs.msg import PoseArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy

from posesdf_ros.ros.bringup import NODE_CLASSES, remaps_for
from posesdf_ros.ros.markers import pose_array_to_joints

DOMAIN = 101 + os.getpid() % 50
#: What no node may print on a clean run or stop.
ERROR_PATTERNS = re.compile(r"Traceback|\[ERROR\]|RCLError|context is invalid|frame failed|Exception")


def _start(colcon_install, name: str, names: list[str], logs) -> tuple[subprocess.Popen, object]:
    args = ["--ros-args", "--params-file", str(colcon_install.share / "config" / "posesdf.yaml")]
    if name == "synthetic_camera":      # a short loop renders quickly on configure
        args += ["-p", "rate_hz:=4.0", "-p", "loop_frames:=4"]
    for src, dst in remaps_for(name, names).items():
        args += ["-r", f"{src}:={dst}"]
    log = open(logs / f"{name}.log", "w")
    proc = subprocess.Popen(colcon_install.command(name, *args), stdout=log, stderr=subprocess.STDOUT,
                            env=colcon_install.env | {"ROS_DOMAIN_ID": str(DOMAIN)}, cwd=logs)
    return proc, log


def test_installed_nodes_publish_joints_and_exit_cleanly_on_signals(colcon_install, tmp_path):
    names = list(NODE_CLASSES)      # synthetic_camera, canonicaliser, estimator, pose_prior
    logs = tmp_path / "logs"
    logs.mkdir()
    got: dict[str, list] = {"/estimator/joints": [], "/pose_prior/joints": []}
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN)
    listener = rclpy.create_node("installed_listener", context=context)
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    for topic, kept in got.items():
        listener.create_subscription(PoseArray, topic, kept.append, qos)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener)
    stop = threading.Event()
    spinner = threading.Thread(target=lambda: [executor.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)])
    spinner.start()
    procs = {name: _start(colcon_install, name, names, logs) for name in names}
    codes: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(got["/pose_prior/joints"]) < 3:
            assert all(p.poll() is None for p, _ in procs.values()), {n: p.poll() for n, (p, _) in procs.items()}
            time.sleep(0.2)
        # SIGINT as Ctrl-C and `ros2 launch` send it, SIGTERM as a service manager does; mid-stream, with
        # the estimator most likely inside a fit.
        for name, (proc, _) in procs.items():
            proc.send_signal(signal.SIGTERM if name == "pose_prior" else signal.SIGINT)
        for name, (proc, _) in procs.items():
            try:
                codes[name] = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
    finally:
        for proc, log in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        stop.set()
        spinner.join()
        executor.shutdown()
        listener.destroy_node()
        rclpy.shutdown(context=context)
    text = {name: (logs / f"{name}.log").read_text() for name in names}
    assert len(got["/pose_prior/joints"]) >= 3, f"no joints from the installed pipeline; logs: {text}"
    for msg in got["/estimator/joints"] + got["/pose_prior/joints"]:
        joints = pose_array_to_joints(msg)
        assert joints.shape == (9, 3) and np.isfinite(joints).all() and msg.header.frame_id == "base_link"
    for name in names:
        assert codes[name] == 0, f"{name} exited {codes[name]}: {text[name][-3000:]}"
        assert not ERROR_PATTERNS.search(text[name]), f"{name} logged an error: {text[name][-3000:]}"
