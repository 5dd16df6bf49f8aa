"""`canonicaliser`: a depth camera's cloud in, the target person's legs and heading out.

Subscribes `points` (sensor_msgs/PointCloud2, sensor-data QoS, any frame
whose pose is known: tf2 or the camera_* parameters). Per frame: thin the
cloud (`decimation`: every n-th pixel row and column), move it into the
gravity frame, segment the target person's lower limbs
(`perception.segment_legs`, tracking the person from frame to frame:
`inference.canonical.PersonTracker`, shared with the bag replay; the leg
points picked by LegSegNet unless `leg_classifier` is false), and predict
the heading with RotNet. Publishes, all with the input's stamp:
- `~/legs` (PointCloud2, gravity frame): the lower-limb points;
- `~/occluders` (PointCloud2, gravity frame): the scene's other points
  that may hide a foot from the camera (`inference.quality.foot_occluders`:
  a box in front of a foot excuses it from the estimator's fit check);
- `~/person` (geometry_msgs/PoseArray, gravity frame): pose 0 is the
  person's heading frame (on the floor below the legs, x along the heading),
  pose 1 the camera's optical frame (for free-space samples and the overlay);
- `~/canonical_points` (PointCloud2, frame `canonical_frame`): the legs in
  the heading frame, as PoseSDF sees them (for inspection);
- where tf2_ros is installed, on /tf: `gravity_frame` -> `canonical_frame`
  (the heading frame) and, while the camera pose comes from the camera_*
  parameters, `gravity_frame` -> the cloud's frame (so RViz can place the
  camera's own cloud). `~/person` stays for the estimator and without tf2.
The estimator pairs `legs` and `person` by stamp, with `occluders` when they arrive first (they are
published first).
"""
from __future__ import annotations

import time

import numpy as np
from geometry_msgs.msg import PoseArray
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from ..geometry import yaw_matrix
from ..inference.canonical import PersonTracker
from ..parameters import CANONICALISER_PARAMETERS
from ..perception.segment import decimate
from .conversions import cloud_to_xyz, xyz_to_cloud
from .frames import Extrinsics, heading_pose, matrix_to_pose, pose_to_transform, tf2_ros
from .node_base import ManagedNode, stamp_seconds


class CanonicaliserNode(ManagedNode):
    NODE_NAME = "canonicaliser"
    PARAMETERS = CANONICALISER_PARAMETERS

    def configure(self) -> None:
        from ..inference.pipeline import limit_cpu_threads

        p = self.p
        self.extrinsics = Extrinsics(self, p.use_tf)
        # With tf2 the heading frame (and a camera pose taken from the parameters) also go on /tf.
        self.tf_broadcaster = tf2_ros.TransformBroadcaster(self) if tf2_ros is not None else None
        limit_cpu_threads(p.torch_threads)
        yaw_estimator, self.yaw_note = self._load_rotnet() if p.yaw_source == "rotnet" else (None, "assume_v1")
        qos = self.qos_overrides()
        self.pub_legs = self.create_lifecycle_publisher(PointCloud2, "~/legs", 5, qos_overriding_options=qos)
        self.pub_occluders = self.create_lifecycle_publisher(PointCloud2, "~/occluders", 5,
                                                             qos_overriding_options=qos)
        self.pub_person = self.create_lifecycle_publisher(PoseArray, "~/person", 5, qos_overriding_options=qos)
        self.pub_canonical = self.create_lifecycle_publisher(PointCloud2, "~/canonical_points", 5,
                                                             qos_overriding_options=qos)
        self.subscribe_frames(PointCloud2, "points")
        classifier, self.classifier_note = self._load_leg_classifier() if p.leg_classifier else (None, "off")
        self.tracker = PersonTracker.from_settings(p, yaw_estimator, classifier)
        self.tracker.warm_up()

    def _load_rotnet(self):
        try:
            from ..inference.yaw import YawEstimator

            est = YawEstimator.from_pretrained(self.p.device, self.p.rotnet_weights or None, self.p.rotnet_turns)
            return est, f"rotnet ({est.turns} turns)"
        except (ImportError, FileNotFoundError, RuntimeError, ValueError) as err:
            self.warn("rotnet", f"RotNet unavailable ({err}); assuming the canonical view V1, which is "
                                "only right for a camera at the person's front-left")
            return None, f"assume_v1 (RotNet unavailable: {err})"

    def _load_leg_classifier(self):
        try:
            from ..inference.legseg import LegClassifier

            return (LegClassifier.from_pretrained(self.p.device, model=self.p.legseg_model),
                    f"legseg ({self.p.legseg_model})")
        except (ImportError, FileNotFoundError, RuntimeError) as err:
            self.warn("legseg", f"LegSegNet unavailable ({err}); cropping the person at the pelvis guess")
            return None, f"pelvis crop (LegSegNet unavailable: {err})"

    def cleanup(self) -> None:
        self.tracker = None     # and with it RotNet and LegSegNet

    def diagnostic_values(self) -> dict[str, str]:
        tracker = getattr(self, "tracker", None)
        return {"yaw_source": getattr(self, "yaw_note", "n/a"),
                "leg_points": getattr(self, "classifier_note", "n/a"),
                "heading_flips_corrected": str(tracker.headings.corrected) if tracker else "0",
                "extrinsics": self.extrinsics.source if hasattr(self, "extrinsics") else "n/a"}

    def standing_problem(self) -> str:
        return self.extrinsics.problem if hasattr(self, "extrinsics") else ""

    def process(self, msg: PointCloud2) -> None:
        t0 = time.perf_counter()
        try:
            xyz = decimate(cloud_to_xyz(msg, keep_organised=True), self.p.decimation)
        except ValueError as err:
            self.drop("bad_cloud", f"cannot read the cloud: {err}")
            return
        if len(xyz) > self.p.max_points:
            self.warn("huge", f"cloud of {len(xyz)} valid points decimated to max_points {self.p.max_points}")
            xyz = xyz[np.linspace(0, len(xyz) - 1, self.p.max_points).astype(np.int64)]
        T = self.extrinsics.camera_to_gravity(msg.header, self.p.gravity_frame)
        # float32 throughout, as the segmentation takes it (float64 cost 3.6 against 1.2 ms a frame).
        points = xyz @ T[:3, :3].T.astype(np.float32) + T[:3, 3].astype(np.float32)
        t_convert = time.perf_counter() - t0
        frame = self.tracker.update(stamp_seconds(msg.header.stamp), points, T[:3, 3])
        timings = {"convert": t_convert, **frame.timings}
        if not frame.valid:
            self.stats.add_stage_times(timings | {"total": time.perf_counter() - t0})
            self.drop("no_person", frame.reason)
            return
        legs, centre, yaw = frame.legs, frame.segmentation.centre, frame.yaw
        header = Header(stamp=msg.header.stamp, frame_id=self.p.gravity_frame)
        person = PoseArray(header=header, poses=[heading_pose(centre, yaw), matrix_to_pose(T)])
        self.pub_occluders.publish(xyz_to_cloud(frame.occluders.astype(np.float32), header))
        self.pub_person.publish(person)
        if self.tf_broadcaster is not None:
            transforms = [pose_to_transform(person.poses[0], header, self.p.canonical_frame)]
            if self.extrinsics.source.startswith("parameters") and msg.header.frame_id:
                transforms.append(pose_to_transform(person.poses[1], header, msg.header.frame_id))
            self.tf_broadcaster.sendTransform(transforms)
        self.pub_legs.publish(xyz_to_cloud(legs.astype(np.float32), header))
        canonical = (legs - [centre[0], centre[1], 0.0]) @ yaw_matrix(-yaw).T
        self.pub_canonical.publish(xyz_to_cloud(canonical.astype(np.float32),
                                                Header(stamp=msg.header.stamp, frame_id=self.p.canonical_frame)))
        self.stats.add_stage_times(timings | {"total": time.perf_counter() - t0})
        self.mark_published(msg.header.stamp)


def main(args=None) -> None:
    from .bringup import run_single

    run_single(CanonicaliserNode, args)
