"""`estimator`: the canonicaliser's legs in, the nine joints, markers and mesh out.

Subscribes `legs` (PointCloud2) and `person` (PoseArray), both from the
canonicaliser and paired by stamp; `occluders` (PointCloud2, the scene's
points that may hide a foot: a box in front of a foot excuses it from the
fit check, docs/quality.md), taken with the pair of the same stamp when it
came first, as the canonicaliser publishes it; plus `image` and `camera_info` for the
overlay (RGB matched to the depth frame by the nearest stamp within
`image_sync_tolerance_s`). Runs PoseSDF latent optimisation, warm-started
from the previous frame while the track lasts. Publishes, with the input's
stamp, in the gravity frame:
- `~/joints` (geometry_msgs/PoseArray, JOINT_NAMES order; each pose's x
  axis along its segment: pelvis right-to-left hip, joint to child joint);
- `~/markers` (visualization_msgs/MarkerArray: joint spheres, bones, and
  the lower-limb mesh as a TRIANGLE_LIST at `mesh_rate_hz`);
- `~/mesh` (shape_msgs/Mesh, at `mesh_rate_hz`; made on a lower-priority thread of its own, so the
  frames never wait for it, and stamped with the frame it was made from);
- `~/overlay` (sensor_msgs/Image, rgb8: the skeleton drawn on the RGB image);
- `~/quality` (diagnostic_msgs/DiagnosticArray, the frame's stamp: the fit's
  quality score, per-joint confidences and an ensemble's per-joint spreads
  (`<joint>_spread_mm`), inference/quality; WARN under the
  retry threshold). A fit scoring under the rejection threshold is not
  published (dropped as `invalid`, "implausible fit: ..."); the marker
  spheres fade with their joint's confidence.
"""
from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseArray
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from shape_msgs.msg import Mesh
from visualization_msgs.msg import MarkerArray

from ..parameters import ESTIMATOR_PARAMETERS
from ..skeleton import JOINT_NAMES
from .conversions import array_to_image, cloud_to_xyz, image_to_rgb
from .frames import checked_pose, yaw_of
from .markers import MAX_SKELETON_EXTENT_M, joints_to_pose_array, mesh_marker, mesh_to_msg, skeleton_markers
from .node_base import (
    DroppedFrame,
    ManagedNode,
    NewestJob,
    SerializedFrame,
    serialized_stamp,
    stamp_seconds,
)
from .overlay import OverlayFrames, draw_skeleton


def quality_status(res, config) -> DiagnosticStatus:
    """One frame's fit quality (`EstimateResult.quality`, `joint_confidence`) as a status: OK at or above the
    retry threshold, else WARN; key-values `quality`, `<joint>_confidence`, an ensemble's `<joint>_spread_mm`
    and the checks behind them."""
    terms = {k: v for k, v in res.quality_terms.items() if k != "problems"}
    values = [KeyValue(key="quality", value=f"{res.quality:.3f}")]
    values += [KeyValue(key=f"{name}_confidence", value=f"{c:.3f}")
               for name, c in zip(JOINT_NAMES, res.joint_confidence)]
    if res.joint_spread is not None:    # an ensemble's: how far its members' joints lie from the published ones
        values += [KeyValue(key=f"{name}_spread_mm", value=f"{1000 * s:.1f}")
                   for name, s in zip(JOINT_NAMES, res.joint_spread)]
    # Numbers, and the names of the joints hidden from the camera (excused from the support check).
    values += [KeyValue(key=k, value=", ".join(v) if isinstance(v, list) else f"{v:.4g}") for k, v in terms.items()]
    level = DiagnosticStatus.OK if res.quality >= config.retry_below else DiagnosticStatus.WARN
    problems = "; ".join(res.quality_terms.get("problems", []))
    return DiagnosticStatus(level=level, name="estimator: fit quality", message=problems or "ok", values=values)


class StampPairer:
    """Pairs the legs' and the person's messages by identical header stamps (what the canonicaliser
    publishes), with any other kind (its occluders) that came with the same stamp before the pair was complete."""

    REQUIRED = ("legs", "person")

    def __init__(self, depth: int = 8):
        self.pending: OrderedDict[tuple[int, int], dict] = OrderedDict()
        self.depth = depth

    def add(self, kind: str, msg) -> dict | None:
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        entry = self.pending.setdefault(key, {})
        entry[kind] = msg
        if all(k in entry for k in self.REQUIRED):
            return self.pending.pop(key)
        while len(self.pending) > self.depth:
            self.pending.popitem(last=False)
        return None


class EstimatorNode(ManagedNode):
    NODE_NAME = "estimator"
    PARAMETERS = ESTIMATOR_PARAMETERS

    def configure(self) -> None:
        from ..inference.estimator import GaitPoseEstimator
        from ..inference.pipeline import EstimatorStep, limit_cpu_threads

        p = self.p
        limit_cpu_threads(p.torch_threads)
        self.estimator = GaitPoseEstimator.from_pretrained(p.backend, p.profile, p.device, p.weights or None,
                                                           rotnet=False, leg_classifier=False)
        if p.members:
            self.estimator = self.estimator.with_profile(members=p.members)
        self.estimator.warm_up()
        # The live parameters (track, track_reset_s, check_heading) are read by the step at every frame.
        self.step = EstimatorStep(self.estimator, p)
        self.pairer = StampPairer()
        self.overlays = OverlayFrames(p.image_sync_tolerance_s, p.image_buffer_s)
        self.camera_info: CameraInfo | None = None
        self.last_mesh = -np.inf
        # Marching cubes takes about a tenth of a second on a small CPU: on the worker it held up the next
        # frame once a second (the demo's p95 latency); on its own, lower-priority thread only the mesh waits.
        self.mesher = NewestJob(f"{self.get_name()}_mesher", self._publish_mesh,
                                lambda err: self.warn("mesh", f"mesh failed: {type(err).__name__}: {err}"),
                                p.torch_threads, niceness=10)
        qos = self.qos_overrides()
        self.pub_joints = self.create_lifecycle_publisher(PoseArray, "~/joints", 10, qos_overriding_options=qos)
        self.pub_markers = self.create_lifecycle_publisher(MarkerArray, "~/markers", 10, qos_overriding_options=qos)
        self.pub_mesh = self.create_lifecycle_publisher(Mesh, "~/mesh", 2, qos_overriding_options=qos)
        self.pub_overlay = self.create_lifecycle_publisher(Image, "~/overlay", 2, qos_overriding_options=qos)
        self.pub_quality = self.create_lifecycle_publisher(DiagnosticArray, "~/quality", 10,
                                                           qos_overriding_options=qos)
        self.last_quality = float("nan")
        self.subscribe(PointCloud2, "legs", lambda m: self._on_part("legs", m))
        self.subscribe(PointCloud2, "occluders", lambda m: self._on_part("occluders", m))
        self.subscribe(PoseArray, "person", lambda m: self._on_part("person", m))
        # Serialized: only the images that get an overlay are converted.
        self.subscribe(Image, "image", self._on_image, raw=True)
        self.subscribe(CameraInfo, "camera_info", self._on_info)

    def cleanup(self) -> None:
        if getattr(self, "mesher", None) is not None:
            self.mesher.stop()
            self.mesher = None
        on_gpu = getattr(self, "estimator", None) is not None and self.estimator.device.type == "cuda"
        self.estimator = self.step = None
        if on_gpu:
            import torch

            torch.cuda.empty_cache()

    def diagnostic_values(self) -> dict[str, str]:
        return {"backend": self.p.backend, "profile": self.p.profile, "device": self.p.device,
                "last_fit_quality": f"{getattr(self, 'last_quality', float('nan')):.2f}"}

    def _on_image(self, raw: bytes) -> None:
        stamp = serialized_stamp(raw)
        if stamp is None:
            self.warn("image", "cannot read an image: not CDR-serialized")
        elif self.p.overlay:
            self._publish_overlays(*self.overlays.add_image(stamp_seconds(stamp), SerializedFrame(raw, Image)))

    def _on_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    def _on_part(self, kind: str, msg) -> None:
        pair = self.pairer.add(kind, msg)
        if pair is not None and not self.check_stamp(msg.header):
            if self.p.overlay:
                self.overlays.add_frame(stamp_seconds(msg.header.stamp))
            self.submit(pair)

    def _read_pair(self, legs: PointCloud2, person: PoseArray) -> tuple[np.ndarray, np.ndarray]:
        """(leg points (N, 3), camera pose (4, 4)); DroppedFrame if either message is malformed or
        implausible, so that nothing non-finite or absurd reaches the fit."""
        if len(person.poses) != 2:
            raise DroppedFrame("bad_person", f"person message needs 2 poses (heading, camera), got {len(person.poses)}")
        try:
            heading = checked_pose(person.poses[0], self.p.max_coordinate_m, "the person's heading pose")
            camera = checked_pose(person.poses[1], self.p.max_coordinate_m, "the camera pose")
        except ValueError as err:
            raise DroppedFrame("bad_person", f"bad person message: {err}") from None
        try:
            points = cloud_to_xyz(legs)
        except ValueError as err:
            raise DroppedFrame("bad_cloud", f"cannot read the legs cloud: {err}") from None
        farthest = float(np.abs(points).max()) if len(points) else 0.0
        if farthest > self.p.max_coordinate_m:
            raise DroppedFrame("implausible", f"a leg point is {farthest:.3g} m from the origin "
                                              f"(> max_coordinate_m {self.p.max_coordinate_m})")
        if len(points) and np.linalg.norm(points[:, :2].mean(0) - heading[:2, 3]) > MAX_SKELETON_EXTENT_M:
            raise DroppedFrame("implausible", "the legs cloud lies far from the person's heading pose")
        return points, camera

    def _read_occluders(self, msg: PointCloud2 | None) -> np.ndarray | None:
        """The scene's points that may hide a foot (the canonicaliser's `occluders`), or None: without them
        only the leg points hide a joint. A malformed cloud is warned about and left out, not the frame."""
        if msg is None:
            return None
        try:
            points = cloud_to_xyz(msg)
        except ValueError as err:
            self.warn("bad_occluders", f"cannot read the occluders cloud, fitting without it: {err}")
            return None
        points = points[np.isfinite(points).all(axis=1)]
        if len(points) and float(np.abs(points).max()) > self.p.max_coordinate_m:
            self.warn("bad_occluders", f"an occluder point lies beyond max_coordinate_m "
                                       f"{self.p.max_coordinate_m}; fitting without the occluders")
            return None
        return points

    def process(self, pair: dict) -> None:
        legs, person = pair["legs"], pair["person"]
        points, camera = self._read_pair(legs, person)
        occluders = self._read_occluders(pair.get("occluders"))
        stamp = stamp_seconds(legs.header.stamp)
        if self.p.overlay:
            self.overlays.start(stamp)
        if stamp < self.last_mesh:          # the stream restarted
            self.last_mesh = -np.inf
        want_mesh = self.p.mesh_rate_hz > 0 and stamp - self.last_mesh >= 1.0 / self.p.mesh_rate_hz
        res = self.step.run(stamp, points, yaw_of(person.poses[0]), camera[:3, 3], occluders)
        self.stats.add_stage_times(res.timings)
        if not res.valid:
            raise DroppedFrame("invalid", f"no estimate: {res.reason}")
        if not np.isfinite(res.joints).all():
            raise DroppedFrame("non_finite_output", "the fit gave non-finite joints; not published")
        header = person.header
        self.last_quality = res.quality
        self.pub_joints.publish(joints_to_pose_array(res.joints, header))
        self.pub_quality.publish(DiagnosticArray(header=header, status=[quality_status(res, self.estimator.quality)]))
        self.pub_markers.publish(MarkerArray(markers=skeleton_markers(
            res.joints, header, self.p.marker_lifetime_s, self.p.joint_diameter_m, res.joint_confidence)))
        if want_mesh and not self.mesher.busy:
            self.mesher.submit((res, header, stamp))
        if self.p.overlay:
            self._publish_overlays(*self.overlays.add_result(stamp, (res.joints, camera)))
        self.mark_published(legs.header.stamp)

    def _publish_mesh(self, job: tuple) -> None:
        """On the mesher thread: the lower-limb mesh of a frame's fit, as a marker and a shape_msgs/Mesh
        under the frame's header. A fit without a surface leaves `last_mesh`, so the next frame tries."""
        res, header, stamp = job
        t = time.perf_counter()
        mesh = self.estimator.mesh_of(res)
        self.stats.add_stage_times({"meshing": time.perf_counter() - t})
        if mesh is None:
            return
        self.last_mesh = stamp
        verts, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
        # The mesh outlives the skeleton: it is refreshed only at mesh_rate_hz.
        life = max(self.p.marker_lifetime_s, 1.5 / self.p.mesh_rate_hz)
        self.pub_markers.publish(MarkerArray(markers=[mesh_marker(verts, faces, header, life)]))
        self.pub_mesh.publish(mesh_to_msg(verts, faces))

    def _publish_overlays(self, ready: list, expired: int) -> None:
        """Draw the results whose RGB image is in; warn about those given up."""
        if expired:
            self.warn("sync", f"no RGB image within {self.p.image_sync_tolerance_s} s of the depth frame")
        for image, (joints, camera_to_gravity) in ready:
            self._publish_overlay(image, joints, camera_to_gravity)

    def _publish_overlay(self, serialized: SerializedFrame, joints: np.ndarray, camera_to_gravity: np.ndarray) -> None:
        info = self.camera_info
        try:
            image = serialized.message()
        except Exception as err:  # noqa: BLE001  (a message the middleware let through must not stop the node)
            self.warn("image", f"cannot deserialize the image: {err}")
            return
        if info is None:
            self.warn("camera_info", "no camera_info received yet; no overlay")
            return
        if (image.width, image.height) != (info.width, info.height):
            self.warn("image", f"image is {image.width}x{image.height} but camera_info says "
                               f"{info.width}x{info.height}; no overlay")
            return
        K = np.asarray(info.k, float).reshape(3, 3)
        if not (np.isfinite(K).all() and K[0, 0] > 0 and K[1, 1] > 0):
            self.warn("camera_info", f"camera_info has no usable intrinsics (K = {K.ravel().tolist()}); no overlay")
            return
        try:
            rgb = image_to_rgb(image)
        except ValueError as err:
            self.warn("image", f"cannot read the image: {err}")
            return
        drawn = draw_skeleton(rgb, joints, camera_to_gravity, K)
        self.pub_overlay.publish(array_to_image(drawn, "rgb8", image.header))


def main(args=None) -> None:
    from .bringup import run_single

    run_single(EstimatorNode, args)
