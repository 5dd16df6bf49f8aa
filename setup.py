"""ament_python package setup: `colcon build` installs it as ROS 2 expects."""
import xml.etree.ElementTree as ET
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "posesdf_ros"
#: package.xml holds the one version (ROS tools read it there); the Python metadata takes it from it.
VERSION = ET.parse(Path(__file__).resolve().parent / "package.xml").getroot().findtext("version")

setup(
    name=PACKAGE,
    version=VERSION,
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: [f"weights/{sub}*.{ext}" for sub in ("", "product/") for ext in ("pt", "json", "npy")]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        *[(f"share/{PACKAGE}/weights/{sub}".rstrip("/"),
           sorted(f for ext in ("pt", "json", "npy") for f in glob(f"{PACKAGE}/weights/{sub}*.{ext}")))
          for sub in ("", "product/")],
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="posesdf_ros maintainers",
    maintainer_email="maintainers@posesdf-ros.invalid",
    description="Live 3D gait monitoring from depth point clouds (PoseSDF) for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "posesdf = posesdf_ros.cli:main",
            "bringup = posesdf_ros.ros.bringup:main",
            "synthetic_camera = posesdf_ros.ros.synthetic_camera:main",
            "canonicaliser = posesdf_ros.ros.canonicaliser:main",
            "estimator = posesdf_ros.ros.estimator:main",
            "pose_prior = posesdf_ros.ros.pose_prior:main",
        ],
    },
)
