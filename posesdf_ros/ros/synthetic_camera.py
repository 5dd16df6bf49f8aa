"""`synthetic_camera`: a walking anny person seen by a virtual depth + RGB camera.

Publishes what a RealSense-like driver does, plus the ground truth:
- `~/points` (sensor_msgs/PointCloud2, organised 640 x 360, NaN where no
  return, camera optical frame, packed rgb),
- `~/image` (sensor_msgs/Image, rgb8) and `~/camera_info` (sensor_msgs/CameraInfo),
- `~/ground_truth/joints` (geometry_msgs/PoseArray, the nine joints in the
  gravity frame, JOINT_NAMES order);
- `~/ground_truth/gait` (diagnostic_msgs/DiagnosticArray, the walker's true
  gait parameters as the pose_prior node's `~/gait` gives them; once per loop).
The first four carry the same stamp. Rendering a frame takes about 0.2 s on a
CPU, so the node renders `loop_frames` frames on configure and then plays
them in a loop at `rate_hz`. With `loop_frames` 0 it renders one gait cycle
and plays it at the rate nearest `rate_hz` that makes the loop seamless (the
cycle over a whole number of frames), so that the walk it shows has the
walker's true cadence.
"""
from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from rclpy.lifecycle import Publisher
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from ..data.stream import StreamFrame, SyntheticWalker, WalkerConfig
from ..gait.truth import true_parameters
from ..parameters import SYNTHETIC_CAMERA_PARAMETERS
from .conversions import array_to_image, xyz_to_cloud
from .frames import extrinsics_from_parameters
from .gait_messages import gait_status
from .markers import joints_to_pose_array
from .node_base import ManagedNode


class SyntheticCameraNode(ManagedNode):
    NODE_NAME = "synthetic_camera"
    PARAMETERS = SYNTHETIC_CAMERA_PARAMETERS

    def configure(self) -> None:
        p = self.p
        config = WalkerConfig(condition=p.condition, view=p.view, body_index=p.body_index, seed=p.seed,
                              noise=p.noise, clutter_boxes=p.clutter_boxes, cadence_spm=p.cadence_spm,
                              distance_m=p.distance_m, camera_height_m=p.camera_height_m,
                              camera_pitch_deg=p.camera_pitch_deg)
        self.walker = SyntheticWalker(config)
        n = p.loop_frames or max(1, int(round(self.walker.cycle_s * p.rate_hz)))
        self.period_s = 1.0 / p.rate_hz if p.loop_frames else self.walker.cycle_s / n
        self.get_logger().info(f"rendering {n} frames of a {p.condition} walker at view {p.view} "
                               f"(cycle {self.walker.cycle_s:.2f} s, played at {1 / self.period_s:.2f} Hz)...")
        # Camera yaw and position only move the scene in the gravity frame; the walker is
        # placed relative to the camera, so the rendering is the same.
        self.frames: list[StreamFrame] = [self.walker.frame(i * self.period_s) for i in range(n)]
        # The messages too, once: packing a 640 x 360 cloud with its colours took 6 ms a tick.
        self.messages = [(xyz_to_cloud(f.cloud, Header(), rgb=f.rgb), array_to_image(f.rgb, "rgb8", Header()))
                         for f in self.frames]
        self.true_gait = true_parameters(self.walker.walker.subject).to_dict()
        self.get_logger().info(f"ready: {n} frames, {np.isfinite(self.frames[0].cloud).all(-1).sum()} points each")
        self.camera_to_gravity = extrinsics_from_parameters(self.p)
        qos = self.qos_overrides()
        self.pub_points: Publisher = self.create_lifecycle_publisher(PointCloud2, "~/points", 5,
                                                                     qos_overriding_options=qos)
        self.pub_image = self.create_lifecycle_publisher(Image, "~/image", 5, qos_overriding_options=qos)
        self.pub_info = self.create_lifecycle_publisher(CameraInfo, "~/camera_info", 5, qos_overriding_options=qos)
        self.pub_truth = self.create_lifecycle_publisher(PoseArray, "~/ground_truth/joints", 10,
                                                         qos_overriding_options=qos)
        self.pub_gait = self.create_lifecycle_publisher(DiagnosticArray, "~/ground_truth/gait", 1,
                                                        qos_overriding_options=qos)
        self.index = 0
        self.timer = self.create_timer(self.period_s, self._tick)

    def diagnostic_values(self) -> dict[str, str]:
        p = self.p
        return {"condition": p.condition, "view": p.view, "body_index": str(p.body_index), "seed": str(p.seed),
                "noise": p.noise, "rate_hz": f"{1 / getattr(self, 'period_s', 1 / p.rate_hz):.3g}",
                "loop_frames": str(len(getattr(self, "frames", [])))}

    def cleanup(self) -> None:
        if getattr(self, "timer", None) is not None:
            self.destroy_timer(self.timer)
            self.timer = None
        self.frames, self.messages = [], []

    def _tick(self) -> None:
        if not self.is_active or not self.frames:
            return
        frame = self.frames[self.index % len(self.frames)]
        cloud, image = self.messages[self.index % len(self.frames)]
        self.index += 1
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.p.camera_frame)
        cloud.header = image.header = header
        self.pub_points.publish(cloud)
        self.pub_image.publish(image)
        self.pub_info.publish(self.camera_info(header, frame))
        if self.p.publish_ground_truth:
            # The walker was rendered by a camera at the origin with no yaw; move its joints
            # into the gravity frame of this camera's configured pose.
            rendered_to_configured = self.camera_to_gravity @ np.linalg.inv(frame.camera_to_gravity)
            joints = frame.joints @ rendered_to_configured[:3, :3].T + rendered_to_configured[:3, 3]
            self.pub_truth.publish(joints_to_pose_array(joints, Header(stamp=header.stamp,
                                                                       frame_id=self.p.gravity_frame)))
            if (self.index - 1) % len(self.frames) == 0:     # the loop's first frame
                self.pub_gait.publish(DiagnosticArray(header=header, status=[gait_status(
                    self.true_gait, self.p.gravity_frame, "synthetic_camera: true gait parameters",
                    "the walker's gait parameters, from the generator")]))
        self.mark_published(header.stamp)

    @staticmethod
    def camera_info(header: Header, frame: StreamFrame) -> CameraInfo:
        K = frame.intrinsics.K
        info = CameraInfo(header=header, width=frame.intrinsics.width, height=frame.intrinsics.height,
                          distortion_model="plumb_bob")
        info.d = [0.0] * 5
        info.k = K.reshape(-1).tolist()
        info.r = np.eye(3).reshape(-1).tolist()
        info.p = np.hstack([K, np.zeros((3, 1))]).reshape(-1).tolist()
        return info


def main(args=None) -> None:
    from .bringup import run_single

    run_single(SyntheticCameraNode, args)
