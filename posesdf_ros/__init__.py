"""posesdf_ros: live 3D gait monitoring from depth point clouds (PoseSDF, RotNet, Pose-NDF) for ROS 2."""
from importlib.metadata import PackageNotFoundError, version

from .skeleton import BONES, JOINT_NAMES

try:    # the installed metadata, which setup.py takes from package.xml (the one place the version is written)
    __version__ = version("posesdf_ros")
except PackageNotFoundError:  # a source tree on sys.path without any install
    __version__ = "unknown"
__all__ = ["BONES", "JOINT_NAMES", "GaitPoseEstimator", "PosePrior", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `import posesdf_ros` (the data tools, the ROS message glue) does not load torch.
    if name == "GaitPoseEstimator":
        from .inference.estimator import GaitPoseEstimator
        return GaitPoseEstimator
    if name == "PosePrior":
        from .inference.prior import PosePrior
        return PosePrior
    raise AttributeError(f"module 'posesdf_ros' has no attribute {name!r}")
