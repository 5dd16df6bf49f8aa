"""posesdf_ros: live 3D gait monitoring from depth point clouds (PoseSDF, RotNet, Pose-NDF) for ROS 2."""
from .skeleton import BONES, JOINT_NAMES

__version__ = "0.2.1"
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
