"""The package builds with colcon into a ROS 2 workspace with the expected layout."""
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_package_xml_is_format_3_ament_python():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "posesdf_ros"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "geometry_msgs", "visualization_msgs", "shape_msgs",
            "diagnostic_msgs", "std_srvs", "std_msgs"} <= deps


def test_colcon_build_installs_a_ros_package(tmp_path):
    colcon = Path(sys.executable).with_name("colcon")
    ws = tmp_path / "ws"
    skip_at_root = {".venv", ".git", "build", "install", "log", "preview", "data"}

    def ignore(folder, names):
        root = Path(folder) == REPO
        return [n for n in names if n == "__pycache__" or n.endswith(".egg-info") or (root and n in skip_at_root)]

    shutil.copytree(REPO, ws / "src" / "posesdf_ros", ignore=ignore)
    run = subprocess.run([str(colcon), "build", "--event-handlers", "console_direct-"], cwd=ws,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    prefix = ws / "install" / "posesdf_ros"
    assert (prefix / "share/ament_index/resource_index/packages/posesdf_ros").is_file()
    assert (prefix / "share/posesdf_ros/package.xml").is_file()
    script = prefix / "lib/posesdf_ros/posesdf"
    assert script.is_file() and os.access(script, os.X_OK)
    # Launch files, the RViz and parameter configs, and one executable per node (`ros2 run posesdf_ros <node>`).
    share = prefix / "share/posesdf_ros"
    for name in ("launch/posesdf.launch.py", "launch/demo.launch.py", "config/posesdf.rviz", "config/posesdf.yaml"):
        assert (share / name).is_file(), f"share/posesdf_ros/{name} not installed"
    for name in ("bringup", "synthetic_camera", "canonicaliser", "estimator"):
        node_script = prefix / "lib/posesdf_ros" / name
        assert node_script.is_file() and os.access(node_script, os.X_OK), f"lib/posesdf_ros/{name} not installed"
    site = next(prefix.glob("lib/python3*/site-packages"))
    assert (site / "posesdf_ros" / "data" / "dataset.py").is_file()
    # The installed command runs from the workspace as `ros2 run posesdf_ros posesdf` would start it.
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0 and "usage: posesdf" in out.stdout
