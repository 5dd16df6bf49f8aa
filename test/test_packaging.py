"""The package builds with colcon into a ROS 2 workspace with the expected layout, and nothing is left out.

The colcon build itself is the session fixture `colcon_install` (conftest.py);
`test_installed.py` runs its nodes, `test_launch.py` checks its launch files.
"""
import ast
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "posesdf_ros"


def test_package_xml_is_format_3_ament_python():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "posesdf_ros"
    assert root.find("export/build_type").text == "ament_python"


#: Python module -> its rosdep key, where they differ.
ROSDEP_KEYS = {"tf2_ros": "tf2_ros_py", "yaml": "python3-yaml"}
#: Modules from ROS packages (rosdep keys are the package names).
ROS_MODULES = {"rclpy", "launch", "launch_ros", "launch_pytest", "ament_index_python", "tf2_ros"}


def _imported_modules(paths) -> set[str]:
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _is_ros(module: str) -> bool:
    return module in ROS_MODULES or module.endswith(("_msgs", "_interfaces"))


def test_package_xml_declares_every_ros_package_it_uses_and_no_other():
    """What the package and its launch files import is an exec_depend (launch_pytest, for the tests, a
    test_depend); no ROS package is declared that nothing imports, and no RMW is forced on the user."""
    root = ET.parse(REPO / "package.xml").getroot()
    exec_deps = {e.text for e in root.findall("exec_depend")}
    used = _imported_modules([*(REPO / PACKAGE).rglob("*.py"), *(REPO / "launch").glob("*.py")])
    needed = {ROSDEP_KEYS.get(m, m) for m in used if _is_ros(m) or m == "yaml"}
    assert needed <= exec_deps, needed - exec_deps
    tests = _imported_modules((REPO / "test").glob("*.py"))
    assert {m for m in tests if _is_ros(m)} - used <= {e.text for e in root.findall("test_depend")}
    ros_declared = {d for d in exec_deps if not d.startswith("python3-")} - {"rviz2"}   # rviz2: launched, not imported
    assert ros_declared <= {ROSDEP_KEYS.get(m, m) for m in used if _is_ros(m)}, "declared but never imported"
    assert not any(d.startswith("rmw_") for d in exec_deps)


def test_one_version():
    """package.xml holds the version; setup.py and posesdf_ros.__version__ take it from there."""
    import posesdf_ros

    version = ET.parse(REPO / "package.xml").getroot().findtext("version")
    assert posesdf_ros.__version__ == version
    assert version not in (REPO / "setup.py").read_text()
    assert version not in (REPO / PACKAGE / "__init__.py").read_text()


def module_folders() -> set[str]:
    """Dotted names of the package's folders that hold Python modules (the weights hold none)."""
    return {".".join(path.parent.relative_to(REPO).parts) for path in (REPO / PACKAGE).rglob("*.py")
            if "__pycache__" not in path.parts}


def test_every_folder_of_modules_is_a_package():
    """A folder without __init__.py is a namespace package: the editable install imports it, but
    setuptools' find_packages() leaves it out, so a colcon-built node dies with ModuleNotFoundError."""
    missing = sorted(f for f in module_folders() if not (REPO / Path(*f.split(".")) / "__init__.py").is_file())
    assert not missing, f"no __init__.py in {missing}"


def test_setup_finds_every_package():
    """What setup.py's find_packages() installs covers every folder of modules (the weights are package
    data: `test_colcon_build_installs_a_ros_package` finds each of them in the install)."""
    from setuptools import find_packages

    assert module_folders() <= set(find_packages(str(REPO), exclude=["test", "test.*"]))


def test_colcon_build_installs_a_ros_package(colcon_install):
    prefix = colcon_install.prefix
    assert (prefix / "share/ament_index/resource_index/packages/posesdf_ros").is_file()
    assert (prefix / "share/posesdf_ros/package.xml").is_file()
    script = colcon_install.lib / "posesdf"
    assert script.is_file() and os.access(script, os.X_OK)
    # Launch files, the RViz and parameter configs, and one executable per node (`ros2 run posesdf_ros <node>`).
    for name in ("launch/posesdf.launch.py", "launch/demo.launch.py", "config/posesdf.rviz", "config/posesdf.yaml",
                 "config/fastdds.xml"):
        assert (colcon_install.share / name).is_file(), f"share/posesdf_ros/{name} not installed"
    for name in ("bringup", "synthetic_camera", "canonicaliser", "estimator", "pose_prior"):
        node_script = colcon_install.lib / name
        assert node_script.is_file() and os.access(node_script, os.X_OK), f"lib/posesdf_ros/{name} not installed"
    # Every source module and every shipped weight file is in the install.
    site = colcon_install.site
    for path in (REPO / PACKAGE).rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".pt", ".json", ".npy"):
            rel = path.relative_to(REPO)
            assert (site / rel).is_file(), f"{rel} is not installed"


def test_installed_modules_import_without_the_source_tree(colcon_install, tmp_path):
    """Every module of the installed package imports from the install, as `ros2 run` would load it."""
    probe = (
        "import importlib, pkgutil, posesdf_ros\n"
        "names = [m.name for m in pkgutil.walk_packages(posesdf_ros.__path__, 'posesdf_ros.')]\n"
        "for name in names:\n"
        "    mod = importlib.import_module(name)\n"
        "    assert mod.__file__.startswith(posesdf_ros.__path__[0]), (name, mod.__file__)\n"
        "print(posesdf_ros.__file__, len(names))\n"
    )
    out = subprocess.run([colcon_install.command("posesdf")[0], "-S", "-c", probe], capture_output=True, text=True,
                         env=colcon_install.env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    where, count = out.stdout.split()
    assert where.startswith(str(colcon_install.site)) and int(count) >= len(module_folders())
    # The installed command runs from the workspace as `ros2 run posesdf_ros posesdf` would start it.
    out = subprocess.run(colcon_install.command("posesdf", "--help"), capture_output=True, text=True,
                         env=colcon_install.env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0 and "usage: posesdf" in out.stdout, out.stderr
