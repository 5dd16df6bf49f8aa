"""`pose_prior`: the estimator's joints in; smoothed, plausible joints, joint angles and gait parameters out.

Subscribes `joints` (geometry_msgs/PoseArray, JOINT_NAMES order, from the
estimator; NaN positions are joints to fill). Runs the Pose-NDF filter
(`PosePrior`: a fixed-lag smoother over the last `lag_frames` + 1 frames, so
each frame's output is published when `lag_frames` newer frames have come in,
or after `restart_gap_s` without a frame; 0 makes it causal) and the gait analysis over a sliding window. Publishes,
with the stamp and frame of the input frame each output belongs to:
- `~/joints` (geometry_msgs/PoseArray), `~/markers` (visualization_msgs/MarkerArray;
  grey while the filter is initialising);
- `~/quality` (diagnostic_msgs/DiagnosticArray, one status per output:
  WARN with `initialising: true` until the subject's bone lengths have
  settled (at most `warm_up_frames` frames after a new subject), then OK;
  key-values `initialising`, `lag_frames`, `bone_length_sd_mm`);
- `~/gait_angles` (sensor_msgs/JointState: hip flexion/adduction, knee
  flexion, ankle dorsiflexion per side, radians, positive = flexion /
  adduction / dorsiflexion; REP 155 expresses a body's pose as joint states);
- `~/gait` (diagnostic_msgs/DiagnosticArray with one status whose key-values
  are the gait parameters, units in the key names, e.g. `cadence_spm`,
  `stride_length_m`; empty values until the window holds enough steps).
"""
from __future__ import annotations

import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseArray
from sensor_msgs.msg import JointState
from visualization_msgs.msg import MarkerArray

from ..parameters import POSE_PRIOR_PARAMETERS
from .gait_messages import gait_status
from .markers import implausible_joints, joints_from_message, joints_to_pose_array, skeleton_markers
from .node_base import DroppedFrame, ManagedNode, stamp_seconds


def output_status(output, prior) -> DiagnosticStatus:
    """One output's settledness (`PriorOutput.initialising`) as a status: WARN while initialising, else OK."""
    sd = prior.bone_length_sd()
    values = {"initialising": str(output.initialising).lower(), "lag_frames": str(output.lag),
              "bone_length_sd_mm": f"{1000 * sd.max():.1f}" if np.isfinite(sd).all() else "",
              "frames_since_reset": str(prior.frames_in)}
    return DiagnosticStatus(
        level=DiagnosticStatus.WARN if output.initialising else DiagnosticStatus.OK, name="pose_prior: output",
        message="initialising: the bone lengths have not settled" if output.initialising else "ok",
        values=[KeyValue(key=k, value=v) for k, v in values.items()])


class PosePriorNode(ManagedNode):
    NODE_NAME = "pose_prior"
    PARAMETERS = POSE_PRIOR_PARAMETERS
    # A temporal filter wants every frame: a burst of up to this many (the estimator's frames come in
    # bunches on a loaded CPU) is worked off, not dropped; at 30 ms a step that is 150 ms of backlog at most.
    BACKLOG_FRAMES = 5

    def configure(self) -> None:
        from ..gait.parameters import GaitAnalyser
        from ..inference.pipeline import limit_cpu_threads
        from ..inference.prior import PosePrior

        p = self.p
        limit_cpu_threads(p.torch_threads)
        self.prior = PosePrior.from_pretrained(p.weights or None, p.device, observation_sigma_m=p.observation_sigma_m,
                                               motion_sigma_m=p.motion_sigma_m, jerk_sigma_m=p.jerk_sigma_m,
                                               prior_weight=p.prior_weight,
                                               periodic_fill=p.periodic_fill, restart_gap_s=p.restart_gap_s,
                                               lag_frames=p.lag_frames, iterations=p.iterations)
        self.headers: dict[float, object] = {}      # the headers of the frames not output yet, by stamp
        self.last_frame_at = -np.inf                # time.monotonic() of the last frame handled
        self.analyser = GaitAnalyser(window_s=p.gait_window_s)
        self.last_stamp = -np.inf
        qos = self.qos_overrides()
        self.pub_joints = self.create_lifecycle_publisher(PoseArray, "~/joints", 10, qos_overriding_options=qos)
        self.pub_markers = self.create_lifecycle_publisher(MarkerArray, "~/markers", 10, qos_overriding_options=qos)
        self.pub_angles = self.create_lifecycle_publisher(JointState, "~/gait_angles", 10, qos_overriding_options=qos)
        self.pub_gait = self.create_lifecycle_publisher(DiagnosticArray, "~/gait", 10, qos_overriding_options=qos)
        self.pub_quality = self.create_lifecycle_publisher(DiagnosticArray, "~/quality", 10,
                                                           qos_overriding_options=qos)
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
        return {"bone_lengths_m": " ".join(f"{v:.3f}" for v in lengths) if np.isfinite(lengths).all() else "",
                "initialising": str(self.warming_up()).lower(), "lag_frames": str(prior.config.lag_frames)}

    def warming_up(self) -> bool:
        """Frames have come in, and the prior still flags its outputs as initialising."""
        prior = getattr(self, "prior", None)
        return prior is not None and prior.frames_in > 0 and prior.initialising

    def standing_problem(self) -> str:
        if self.warming_up():
            return (f"initialising: bone lengths not settled ({self.prior.frames_in} frames in, settled at "
                    f"{self.prior.config.warm_up_frames} at the latest); outputs are flagged")
        return ""

    def process(self, msg: PoseArray) -> None:
        try:
            joints = joints_from_message(msg, self.p.max_coordinate_m)
        except ValueError as err:
            raise DroppedFrame("bad_joints", f"bad joints message: {err}") from None
        stamp = stamp_seconds(msg.header.stamp)
        problems = []
        if stamp < self.last_stamp:     # the stream went back in time (its ordering restarted): a cut
            # The frames before the cut go out with the look-ahead they have; then everything restarts.
            problems += self.publish_outputs(self.prior.flush(), end_of_stream=True)
            self.prior.reset()
            self.analyser.reset()
            self.headers.clear()
        self.last_stamp = stamp
        self.last_frame_at = time.monotonic()
        self.headers[stamp] = msg.header
        # None while the frame is in the smoother's window: it is published when `lag_frames` more arrive.
        t0 = time.perf_counter()
        outputs = self.prior.step(stamp, joints)
        t1 = time.perf_counter()
        problems += self.publish_outputs(outputs)
        self.stats.add_stage_times({"step": t1 - t0, "publish": time.perf_counter() - t1})
        if problems:
            raise DroppedFrame(*problems[-1])

    def idle(self) -> None:
        """No frame for `restart_gap_s`: the next one would restart the filter anyway, so the frames held back
        for look-ahead go out now (a stream that stops, or frames further apart than the gap)."""
        prior = getattr(self, "prior", None)
        if prior is None or not prior.open_frames or time.monotonic() - self.last_frame_at < self.p.restart_gap_s:
            return
        problems = self.publish_outputs(prior.flush(), end_of_stream=True)
        if problems:
            raise DroppedFrame(*problems[-1])

    def publish_outputs(self, outputs: list, end_of_stream: bool = False) -> list[tuple[str, str]]:
        """Publish smoothed frames; (kind, reason) of each that could not be. At the `end_of_stream` (a flush)
        the gait analysis after the last frame is brought up to date, so the walk's last strides count."""
        last = len(outputs) - 1
        return [problem for i, output in enumerate(outputs)
                if (problem := self.publish_output(output, final=end_of_stream and i == last))]

    def publish_output(self, output, final: bool = False) -> tuple[str, str] | None:
        """Publish one smoothed frame under its input's header; (kind, reason) when it cannot be published.
        `final`: the stream's last frame for now, whose gait analysis is recomputed whatever its period."""
        from ..gait.angles import ANGLE_NAMES, joint_angles

        header = self.headers.pop(output.stamp_s, None)
        if header is None:      # its input was forgotten by a reset
            return None
        smooth = output.joints
        if not np.isfinite(smooth).all():
            return "waiting_for_start", "waiting for a frame with all nine joints to start the filter"
        if problem := implausible_joints(smooth, self.p.max_coordinate_m):
            return "implausible_output", f"the filtered joints are implausible ({problem}); not published"
        self.pub_joints.publish(joints_to_pose_array(smooth, header))
        self.pub_markers.publish(MarkerArray(markers=skeleton_markers(
            smooth, header, self.p.marker_lifetime_s, self.p.joint_diameter_m, initialising=output.initialising)))
        self.pub_quality.publish(DiagnosticArray(header=header, status=[output_status(output, self.prior)]))
        angles = joint_angles(smooth)
        self.pub_angles.publish(JointState(header=header, name=list(ANGLE_NAMES),
                                           position=[float(angles[n]) for n in ANGLE_NAMES]))
        self.analyser.update(output.stamp_s, smooth)
        self.pub_gait.publish(DiagnosticArray(header=header, status=[
            gait_status(self.analyser.parameters(force=final).to_dict(), header.frame_id)]))
        self.mark_published(header.stamp)
        return None


def main(args=None) -> None:
    from .bringup import run_single

    run_single(PosePriorNode, args)
