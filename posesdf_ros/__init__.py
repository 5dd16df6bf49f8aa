"""posesdf_ros: live 3D gait monitoring from depth point clouds (PoseSDF, RotNet, Pose-NDF) for ROS 2."""
from .skeleton import BONES, JOINT_NAMES

__version__ = "0.1.0"
__all__ = ["BONES", "JOINT_NAMES", "__version__"]
