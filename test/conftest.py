import numpy as np
import pytest


@pytest.fixture(scope="session")
def body_model():
    from posesdf_ros.data.body import BodyModel

    return BodyModel()


@pytest.fixture(scope="session")
def raycast_tool():
    """tools/raycast_scenes.py, the third validation generator, as a module (`main`, `make_scene`)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "raycast_scenes", Path(__file__).resolve().parents[1] / "tools" / "raycast_scenes.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def graph():
    """Real nodes on a background executor in their own rclpy context and domain (test/ros_graph.py)."""
    from ros_graph import Graph

    g = Graph()
    yield g
    g.close()


@pytest.fixture(scope="session")
def train_build(tmp_path_factory, body_model):
    """Two training shapes (seed 0), as `posesdf data build --split train --limit 2` writes them."""
    from posesdf_ros.data.dataset import build_dataset

    out = tmp_path_factory.mktemp("train_build")
    build_dataset(out, "train", limit=2, progress=False, body_model=body_model)
    return out


@pytest.fixture(scope="session")
def test_build(tmp_path_factory, body_model):
    """One sample per cell of the CC and CV protocols (9 samples, seed 1)."""
    from posesdf_ros.data.dataset import build_dataset

    out = tmp_path_factory.mktemp("test_build")
    build_dataset(out, "test", protocol="CC", limit=1, progress=False, body_model=body_model)
    build_dataset(out, "test", protocol="CV", limit=1, progress=False, body_model=body_model)
    return out


class ColconInstall:
    """This package built by `colcon build` into a workspace, and how a ROS user's shell runs it.

    `env` is what `source install/setup.bash` gives, plus the venv's
    site-packages for the dependencies (rclpy wheels, torch, anny) as a
    path entry only: `python -S` processes no `.pth` file, so the editable
    install's import hook, which maps `posesdf_ros` onto the source tree,
    is not there, and every module must come from the install.
    """

    def __init__(self, ws):
        import os
        import subprocess
        import sys
        import sysconfig
        from pathlib import Path

        self.ws = Path(ws)
        self.prefix = self.ws / "install" / "posesdf_ros"
        self.lib = self.prefix / "lib" / "posesdf_ros"
        self.share = self.prefix / "share" / "posesdf_ros"
        self.site = next(self.prefix.glob("lib/python3*/site-packages"))
        shell = subprocess.run(["bash", "-c", f"source {self.ws / 'install' / 'setup.bash'} && env -0"],
                               capture_output=True, check=True, env={"PATH": os.environ["PATH"],
                                                                     "HOME": os.environ.get("HOME", "/tmp")})
        env = dict(line.split("=", 1) for line in shell.stdout.decode().split("\0") if "=" in line)
        venv_site = Path(sysconfig.get_paths()["purelib"])
        ros_libs = [str(p) for p in sorted(venv_site.glob("ros_*.libs"))] + [str(Path(sys.prefix) / "lib")]
        env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(venv_site)])
        # What the ros wheels' bootstrap .pth would have set before re-executing the interpreter.
        env["LD_LIBRARY_PATH"] = os.pathsep.join(ros_libs + [os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
        env["_ROS_WHEELS_BOOTSTRAP_COMPLETE"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        self.env = env

    def command(self, executable: str, *args: str) -> list[str]:
        """Run lib/posesdf_ros/<executable> with the interpreter its shebang names, without .pth hooks."""
        import sys

        return [sys.executable, "-S", str(self.lib / executable), *args]


@pytest.fixture(scope="session")
def colcon_install(tmp_path_factory) -> ColconInstall:
    """The working tree copied into `ws/src` and built with `colcon build` (no --symlink-install)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    ws = tmp_path_factory.mktemp("colcon_ws")
    skip_at_root = {".venv", ".git", "build", "install", "log", "preview", "data", "demo_out", "runs"}

    def ignore(folder, names):
        root = Path(folder) == repo
        return [n for n in names if n == "__pycache__" or n.endswith(".egg-info") or (root and n in skip_at_root)]

    shutil.copytree(repo, ws / "src" / "posesdf_ros", ignore=ignore)
    colcon = Path(sys.executable).with_name("colcon")
    run = subprocess.run([str(colcon), "build", "--event-handlers", "console_direct-"], cwd=ws,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return ColconInstall(ws)
