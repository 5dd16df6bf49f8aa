"""`pose_prior`: the estimator's joints in; smoothed, plausible joints, joint angles and gait parameters out.

Subscribes `joints` (geometry_msgs/PoseArray, JOINT_NAMES order, from the
estimator; NaN positions are joints to fill). Runs the Pose-NDF filter
(`PosePrior`: no look-ahead, so no added latency in frames) and the gait
analysis over a sliding window. Publishes, with the input's stamp and frame:
- `~/joints` (geometry_msgs/PoseArray), `~/markers` (visualization_msgs/MarkerArray);
- `~/gait_angles` (sensor_msgs/JointState: hip flexion/adduction, knee
  flexion, ankle dorsiflexion per side, radians, positive = flexion /
  adduction / dorsiflexion; REP 155 expresses a body's pose as joint states);
- `~/gait` (diagnostic_msgs/DiagnosticArray with one status whose key-values
  are the gait parameters, units in the key names, e.g. `cadence_spm`,
  `stride_length_m`; empty values until the window holds enough steps).
"""
from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseArray
from sensor_msgs.msg import JointState
from visualization_msgs.msg import MarkerArray

from ..parameters import POSE_PRIOR_PARAMETERS
from .markers import implausible_joints, joints_from_message, joints_to_pose_array, skeleton_markers
from .node_base import DroppedFrame, ManagedNode, set_torch_threads, stamp_seconds


def gait_status(parameters: dict, frame_id: str) -> DiagnosticStatus:
    """Gait parameters (`GaitParameters.to_dict()`) as key-values, units in the keys; unknown values empty."""
    def text(v) -> str:
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return ""
        return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)

    values = [KeyValue(key=k, value=text(v)) for k, v in parameters.items()]
    return DiagnosticStatus(level=DiagnosticStatus.OK, name="pose_prior: gait parameters", hardware_id=frame_id,
                            message="gait parameters over the analysis window", values=values)


class PosePriorNode(ManagedNode):
    NODE_NAME = "pose_prior"
    PARAMETERS = POSE_PRIOR_PARAMETERS

    def configure(self) -> None:
        from ..gait.parameters import GaitAnalyser
        from ..inference.prior import PosePrior

        p = self.p
        set_torch_threads(p.torch_threads)
        self.prior = PosePrior.from_pretrained(p.weights or None, p.device, observation_sigma_m=p.observation_sigma_m,
                                               motion_sigma_m=p.motion_sigma_m, prior_weight=p.prior_weight,
                                               periodic_fill=p.periodic_fill, restart_gap_s=p.restart_gap_s)
        self.analyser = GaitAnalyser(window_s=p.gait_window_s)
        self.last_stamp = -np.inf
        qos = self.qos_overrides()
        self.pub_joints = self.create_lifecycle_publisher(PoseArray, "~/joints", 10, qos_overriding_options=qos)
        self.pub_markers = self.create_lifecycle_publisher(MarkerArray, "~/markers", 10, qos_overriding_options=qos)
        self.pub_angles = self.create_lifecycle_publisher(JointState, "~/gait_angles", 10, qos_overriding_options=qos)
        self.pub_gait = self.create_lifecycle_publisher(DiagnosticArray, "~/gait", 10, qos_overriding_options=qos)
        # Joints are small and every frame matters to a temporal filter: reliable, not sensor-data QoS.
        self.subscribe(PoseArray, "joints", self.on_frame, 10)

    def cleanup(self) -> None:
        self.prior = None

    def diagnostic_values(self) -> dict[str, str]:
        prior = getattr(self, "prior", None)
        if prior is None:
            return {}
        # Out-of-order stamps never reach the prior here: check_stamp drops and counts them.
        lengths = prior.bone_lengths()
        return {"bone_lengths_m": " ".join(f"{v:.3f}" for v in lengths) if np.isfinite(lengths).all() else ""}

    def process(self, msg: PoseArray) -> None:
        from ..gait.angles import ANGLE_NAMES, joint_angles

        try:
            joints = joints_from_message(msg, self.p.max_coordinate_m)
        except ValueError as err:
            raise DroppedFrame("bad_joints", f"bad joints message: {err}") from None
        stamp = stamp_seconds(msg.header.stamp)
        if stamp < self.last_stamp:     # the stream went back in time (its ordering restarted): a cut
            self.prior.reset()
            self.analyser.reset()
        self.last_stamp = stamp
        smooth = self.prior.filter(stamp, joints)
        if not np.isfinite(smooth).all():
            raise DroppedFrame("warming_up", "waiting for a frame with all nine joints to start the filter")
        if problem := implausible_joints(smooth, self.p.max_coordinate_m):
            raise DroppedFrame("implausible_output", f"the filtered joints are implausible ({problem}); not published")
        header = msg.header
        self.pub_joints.publish(joints_to_pose_array(smooth, header))
        self.pub_markers.publish(MarkerArray(markers=skeleton_markers(smooth, header, self.p.marker_lifetime_s,
                                                                      self.p.joint_diameter_m)))
        angles = joint_angles(smooth)
        self.pub_angles.publish(JointState(header=header, name=list(ANGLE_NAMES),
                                           position=[float(angles[n]) for n in ANGLE_NAMES]))
        self.analyser.update(stamp, smooth)
        self.pub_gait.publish(DiagnosticArray(header=header, status=[
            gait_status(self.analyser.parameters().to_dict(), header.frame_id)]))
        self.mark_published(msg.header.stamp)


def main(args=None) -> None:
    from .bringup import run_single

    run_single(PosePriorNode, args)
