"""The bag layout `posesdf bag record` writes and `posesdf bag eval` reads by default (docs/bags.md).

Topic -> rosbag2 type name. The camera topics are those of a ROS 2 depth
camera driver; the ground truth has its own namespace so that a replay
never feeds it to the pipeline.
"""
from __future__ import annotations

POINTS_TOPIC = "/camera/points"
IMAGE_TOPIC = "/camera/image"
CAMERA_INFO_TOPIC = "/camera/camera_info"
TF_STATIC_TOPIC = "/tf_static"
TF_TOPIC = "/tf"
GT_JOINTS_TOPIC = "/ground_truth/joints"
GT_GAIT_TOPIC = "/ground_truth/gait"
CLOCK_TOPIC = "/clock"
#: What the live pipeline publishes and `eval --live` records: the estimator's joints, the prior's.
ESTIMATE_TOPIC = "/estimator/joints"
PRIOR_TOPIC = "/pose_prior/joints"

GRAVITY_FRAME = "base_link"
CAMERA_FRAME = "camera_depth_optical_frame"

TYPES = {
    POINTS_TOPIC: "sensor_msgs/msg/PointCloud2",
    IMAGE_TOPIC: "sensor_msgs/msg/Image",
    CAMERA_INFO_TOPIC: "sensor_msgs/msg/CameraInfo",
    TF_STATIC_TOPIC: "tf2_msgs/msg/TFMessage",
    GT_JOINTS_TOPIC: "geometry_msgs/msg/PoseArray",
    GT_GAIT_TOPIC: "diagnostic_msgs/msg/DiagnosticArray",
}

#: DiagnosticStatus.name of a ground-truth gait message; its values are the keys below.
GT_GAIT_STATUS = "ground_truth: gait"
#: Ground-truth gait keys (units in the names: spm = steps/min, m, m/s, s, deg).
GT_GAIT_KEYS = ("sequence", "condition", "view", "azimuth_deg", "body_index", "subject", "seed", "noise",
                "cadence_spm", "stride_length_m", "walking_speed_mps", "cycle_s", "foot_progression_deg",
                "condition_offset_deg")
