"""What every posesdf_ros node shares: declared parameters, lifecycle with
autostart, newest-frame processing, throttled warnings and /diagnostics.

A node subclasses `ManagedNode`, lists its parameters as `Param`s in one
tuple (name, default, description, range, live), and implements
`configure` (load models, create lifecycle publishers, declare inputs with
`subscribe`), `process` (one frame, run on the node's worker thread) and
optionally `cleanup`. The constructor makes no transition: `start()`
(called by main() and bringup) configures and activates when `autostart`
is set. Inputs are subscribed on activate and dropped on deactivate, and
lifecycle publishers publish only while active, so an inactive node takes
and gives nothing. Parameters marked `live` are applied to the running
node by `ros2 param set`; the others are read-only. Subscription callbacks
only `submit` frames: the worker always takes the newest one, so a slow
model never builds a queue, and every frame it skips is counted (a node
whose every frame matters, the pose prior, keeps a short backlog instead:
`BACKLOG_FRAMES`). Large
frames (`subscribe_frames`) are taken serialized and only the one the
worker processes is deserialized: on a loaded CPU, converting every 3.7 MB
cloud in the executor's thread held the interpreter lock for a third of
the time and starved the worker.
"""
from __future__ import annotations

import os
import struct
import threading
import time
from collections import Counter, deque
from types import SimpleNamespace
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions

from ..parameters import Param, with_common

WARN_PERIOD_S = 5.0
#: The worker calls `idle()` after this long without a frame (s).
IDLE_PERIOD_S = 0.1


class DroppedFrame(Exception):
    """Raised while a frame is processed to drop it: counted on /diagnostics as `dropped_<kind>`, the reason
    logged (throttled) and kept as the node's last problem."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


def descriptor(prm: Param) -> ParameterDescriptor:
    """The ROS parameter descriptor of a `Param`: description, range, read-only unless live."""
    text = prm.description + (f" One of: {', '.join(prm.choices)}." if prm.choices else "")
    d = ParameterDescriptor(name=prm.name, description=text, read_only=not prm.live)
    if prm.range is not None:
        if isinstance(prm.default, bool) or not isinstance(prm.default, (int, float)):
            raise TypeError(f"parameter {prm.name}: a range needs a numeric default")
        if isinstance(prm.default, int):
            d.integer_range = [IntegerRange(from_value=int(prm.range[0]), to_value=int(prm.range[1]), step=1)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(prm.range[0]),
                                                         to_value=float(prm.range[1]), step=0.0)]
    return d


def set_thread_torch_threads(threads: int) -> None:
    """torch's thread count for the calling thread's OpenMP team (and MKL's); the nodes set the process's
    (torch and BLAS) at configure with `inference.pipeline.limit_cpu_threads`. Set on the main thread at
    configure, the limit did not reach the worker's: the canonicaliser's torch layers ran on two OpenMP
    threads that spun against the other nodes (its process took 1.04 cores in the demo, which fell to 4 to
    9 frames/s). Not `threadpool_limits`: its scan of the loaded libraries deadlocked against an import
    on the main thread."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def serialized_stamp(raw: bytes) -> SimpleNamespace | None:
    """The header stamp (`sec`, `nanosec`) of a serialized message whose first field is a std_msgs/Header
    (clouds, images): CDR's 4-byte encapsulation header (big or little endian), then the stamp's int32
    and uint32. None when the bytes are not CDR."""
    if len(raw) < 12 or raw[0] != 0 or raw[1] not in (0, 1):
        return None
    sec, nanosec = struct.unpack_from("<iI" if raw[1] == 1 else ">iI", raw, 4)
    return SimpleNamespace(sec=sec, nanosec=nanosec)


class SerializedFrame:
    """A frame as it came off the wire; `message()` deserializes it (on the worker thread)."""

    __slots__ = ("raw", "msg_type")

    def __init__(self, raw: bytes, msg_type):
        self.raw, self.msg_type = raw, msg_type

    def message(self):
        from rclpy.serialization import deserialize_message

        return deserialize_message(self.raw, self.msg_type)


def lower_thread_priority(niceness: int) -> bool:
    """Add `niceness` (0..19) to the calling thread's scheduling niceness: on Linux a thread's own, so a
    node's background work can yield the cores to the frames of every node in the process and beyond.
    False where it could not be set (another OS, a sandbox forbidding it)."""
    if niceness <= 0:
        return True
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness))
    except (AttributeError, OSError):
        return False
    return True


class NewestJob:
    """A thread of its own that runs `work(item)` on the newest item handed to it, for work a node's frames
    must not wait for (the estimator's mesh): an item not yet started is replaced by a newer one. An
    exception goes to `on_error` and the thread carries on."""

    def __init__(self, name: str, work: Callable[[Any], None], on_error: Callable[[Exception], None],
                 torch_threads: int = 0, niceness: int = 0):
        """niceness: added to the thread's scheduling niceness (Linux: per thread), so that on a loaded CPU
        the node's frames go first."""
        self._work, self._on_error, self._torch_threads, self._niceness = work, on_error, torch_threads, niceness
        self._item: Any = None
        self._busy = False
        self._running = True
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """An item waits or is being worked on."""
        with self._cv:
            return self._busy or self._item is not None

    def submit(self, item: Any) -> None:
        with self._cv:
            self._item = item
            self._cv.notify()

    def stop(self, timeout_s: float = 10.0) -> None:
        with self._cv:
            self._running, self._item = False, None
            self._cv.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        set_thread_torch_threads(self._torch_threads)
        lower_thread_priority(self._niceness)
        while True:
            with self._cv:
                while self._item is None and self._running:
                    self._cv.wait()
                if not self._running:
                    return
                item, self._item, self._busy = self._item, None, True
            try:
                self._work(item)
            except Exception as err:  # noqa: BLE001  (a failed job must not end the thread)
                self._on_error(err)
            finally:
                with self._cv:
                    self._busy = False


class FrameStats:
    """Counts and latencies reported on /diagnostics."""

    def __init__(self):
        self.lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.published = 0
        self.dropped: Counter[str] = Counter()
        self.ordering_resets = 0
        self.latencies = deque(maxlen=100)
        self.stage_times: dict[str, deque] = {}     # stage -> its last 100 times (s)
        self.arrivals = deque(maxlen=100)
        self.outputs = deque(maxlen=100)
        self.last_problem = ""

    def add_stage_times(self, timings: dict[str, float]) -> None:
        """Record one frame's (or one job's) per-stage times (s)."""
        with self.lock:
            for stage, seconds in timings.items():
                self.stage_times.setdefault(stage, deque(maxlen=100)).append(seconds)

    def rate(self, times: deque) -> float:
        now = time.monotonic()
        recent = [t for t in times if now - t < 5.0]
        return len(recent) / 5.0 if recent else 0.0


class ManagedNode(LifecycleNode):
    """A lifecycle node with declared parameters, a newest-frame worker and diagnostics."""

    NODE_NAME = ""
    PARAMETERS: tuple[Param, ...] = ()
    # Frames waiting for the worker: one (the newest) for camera input, where a slow model should skip
    # frames rather than fall behind; more where a burst should be worked off instead of dropped.
    BACKLOG_FRAMES = 1

    def __init__(self, node_name: str | None = None, **kwargs):
        super().__init__(node_name or self.NODE_NAME, **kwargs)
        self.p = self._declare(with_common(self.PARAMETERS))
        self.stats = FrameStats()
        self._warned: dict[str, float] = {}
        self._waiting: deque = deque()          # frames submitted, not taken by the worker yet, oldest first
        self._waiting_cv = threading.Condition()
        self._worker: threading.Thread | None = None
        self._running = False
        self._last_stamp: float | None = None      # of the last frame accepted
        self._behind: float | None = None          # of the last frame dropped as out of order since then
        self._input_specs: list[tuple] = []     # what `subscribe` asked for (on configure)
        self._inputs: list = []                  # the subscriptions, while active
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(self.p.diagnostics_period_s, self._publish_diagnostics)

    def start(self) -> None:
        """Configure and activate the node if its `autostart` parameter says so: called by main() and
        bringup after construction (the constructor itself makes no transition)."""
        if self.p.autostart:
            self.trigger_configure()
            if self.lifecycle_state == "inactive":
                self.trigger_activate()

    # -- parameters ---------------------------------------------------------------------------
    def _declare(self, params: tuple[Param, ...]) -> SimpleNamespace:
        values = {}
        self._live = {prm.name: prm for prm in params if prm.live}
        for prm in params:
            values[prm.name] = self.declare_parameter(prm.name, prm.default, descriptor(prm)).value
            if prm.choices and values[prm.name] not in prm.choices:
                raise ValueError(f"parameter {prm.name}={values[prm.name]!r} must be one of {prm.choices}")
        # rclpy refuses read-only parameters, wrong types and out-of-range values before these run.
        self.add_on_set_parameters_callback(self._check_live_parameters)
        self.add_post_set_parameters_callback(self._apply_live_parameters)
        return SimpleNamespace(**values)

    def _check_live_parameters(self, parameters) -> SetParametersResult:
        for param in parameters:
            prm = self._live.get(param.name)
            if prm is not None and prm.choices and param.value not in prm.choices:
                return SetParametersResult(successful=False, reason=f"{param.name} must be one of {prm.choices}")
        return SetParametersResult(successful=True)

    def _apply_live_parameters(self, parameters) -> None:
        """The worker reads `self.p` per frame, so a set parameter takes effect from the next frame."""
        for param in parameters:
            if param.name in self._live:
                setattr(self.p, param.name, param.value)

    @staticmethod
    def qos_overrides() -> QoSOverridingOptions:
        """Lets users override reliability, durability, history and depth per topic (REP 2003)."""
        return QoSOverridingOptions.with_default_policies()

    # -- lifecycle ----------------------------------------------------------------------------
    def configure(self) -> None:
        """Load models, create publishers and subscriptions. Raise to fail the transition."""

    def cleanup(self) -> None:
        """Release what `configure` made (models, GPU memory)."""

    def process(self, frame: Any) -> None:
        """Handle one frame on the worker thread."""

    def idle(self) -> None:
        """Called on the worker thread every `IDLE_PERIOD_S` without a frame (e.g. to publish what is held back)."""

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self.configure()
        except Exception as err:  # noqa: BLE001  (a failed transition must be reported, not raised)
            self.get_logger().error(f"configure failed: {err}")
            self.stats.last_problem = f"configure failed: {err}"
            return TransitionCallbackReturn.FAILURE
        return super().on_configure(state)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._running = True
        self._worker = threading.Thread(target=self._work, name=f"{self.get_name()}_worker", daemon=True)
        self._worker.start()
        for msg_type, topic, callback, qos, raw in self._input_specs:
            self._inputs.append(self.create_subscription(msg_type, topic, callback, qos, raw=raw,
                                                         qos_overriding_options=self.qos_overrides()))
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._close_inputs()
        self._stop_worker()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release_inputs_and_models()
        return super().on_cleanup(state)

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._release_inputs_and_models()
        return super().on_shutdown(state)

    def _release_inputs_and_models(self) -> None:
        self._close_inputs()
        self._stop_worker()
        self._input_specs = []
        self.cleanup()

    def _close_inputs(self) -> None:
        for sub in self._inputs:
            self.destroy_subscription(sub)
        self._inputs = []

    def subscribe(self, msg_type, topic: str, callback, qos=qos_profile_sensor_data, raw: bool = False) -> None:
        """Declare an input (called in `configure`): subscribed while the node is active, with sensor-data QoS
        unless given, overridable per REP 2003; an inactive node takes no input. With `raw` the callback
        gets the serialized bytes."""
        self._input_specs.append((msg_type, topic, callback, qos, raw))

    def subscribe_frames(self, msg_type, topic: str, qos=qos_profile_sensor_data) -> None:
        """Declare a frame input of a type that starts with a std_msgs/Header, taken serialized: the
        stamp is read from the bytes, and `process` gets the deserialized message of the frames it
        takes only (the newest; skipped frames are never converted)."""
        self.subscribe(msg_type, topic, lambda raw: self.on_serialized_frame(raw, msg_type), qos, raw=True)

    def on_frame(self, msg) -> None:
        """Callback of a frame topic: drop a stale or out-of-order stamp, else hand the frame to the worker."""
        if not self.check_stamp(msg.header):
            self.submit(msg)

    def on_serialized_frame(self, raw: bytes, msg_type) -> None:
        """`on_frame` for a serialized frame."""
        stamp = serialized_stamp(raw)
        if stamp is None:
            self.drop("bad_message", f"cannot read a {msg_type.__name__}: not CDR-serialized")
        elif not self.check_stamp(SimpleNamespace(stamp=stamp)):
            self.submit(SerializedFrame(raw, msg_type))

    def release(self) -> None:
        """Shut down: the lifecycle transition while the context lives (after Ctrl-C it is gone),
        and in any case stop the worker and free the models before the node is destroyed."""
        if self.context.ok() and self.lifecycle_state != "finalized":
            try:
                self.trigger_shutdown()
                return
            except Exception as err:  # noqa: BLE001  (rcl errors when the context ends meanwhile)
                self.get_logger().debug(f"shutdown transition failed: {err}")
        self._release_inputs_and_models()

    @property
    def is_active(self) -> bool:
        return self._running

    @property
    def lifecycle_state(self) -> str:
        """"unconfigured", "inactive", "active" or "finalized" (rclpy keeps it in the state machine)."""
        return self._state_machine.current_state[1]

    def now_s(self) -> float:
        """The node's clock (sim time under `use_sim_time`), seconds."""
        return self.get_clock().now().nanoseconds * 1e-9

    # -- frames -------------------------------------------------------------------------------
    def check_stamp(self, header) -> str:
        """"" if the frame's stamp is usable, else why it is dropped (and the drop is counted).

        The stamp policy (README, "Stamps"):
        - ahead of the node's clock by more than `future_tolerance_s`: dropped
          ("future"), and it never becomes the newest stamp;
        - older than `max_age_s`: dropped ("stale");
        - before the last accepted stamp: dropped ("out_of_order"), unless the
          frame dropped just before was also behind and this one follows it:
          two frames in order behind the last accepted one mean the stream
          itself went back (a replay restarted, a clock reset, a bad stamp
          within the tolerance was accepted), so the ordering restarts from
          this frame ("ordering_resets" on /diagnostics). One bad stamp thus
          costs at most one good frame.
        Until the clock runs (sim time before the first /clock message reads
        0) only the ordering is checked.
        """
        stamp = stamp_seconds(header.stamp)
        now = self.now_s()
        clock_runs = now > 0.0
        if clock_runs and 0 < self.p.future_tolerance_s < stamp - now:
            kind, reason = "future", (f"frame stamped {stamp - now:.3f} s ahead of the node's clock > "
                                      f"future_tolerance_s {self.p.future_tolerance_s} (clock skew or a bad stamp)")
        elif clock_runs and 0 < self.p.max_age_s < now - stamp:
            kind, reason = "stale", f"stale frame ({now - stamp:.2f} s old > max_age_s {self.p.max_age_s})"
        elif self._last_stamp is not None and stamp < self._last_stamp and \
                (self._behind is None or stamp < self._behind):
            self._behind = stamp
            kind, reason = "out_of_order", f"stamp went backwards ({stamp:.3f} s after {self._last_stamp:.3f} s)"
        else:
            if self._last_stamp is not None and stamp < self._last_stamp:
                with self.stats.lock:
                    self.stats.ordering_resets += 1
                self.warn("ordering_reset", f"the input stream went back in time ({stamp:.3f} s after "
                                            f"{self._last_stamp:.3f} s, twice in a row): ordering restarted")
            self._last_stamp, self._behind = stamp, None
            return ""
        self.drop(kind, reason)
        return reason

    def submit(self, frame: Any) -> None:
        """Hand a frame to the worker; an unprocessed older frame is dropped and counted."""
        with self.stats.lock:
            self.stats.received += 1
            self.stats.arrivals.append(time.monotonic())
        if not self._running:
            self.drop("inactive", "frame received while the node is not active")
            return
        with self._waiting_cv:
            if len(self._waiting) >= self.BACKLOG_FRAMES:
                self._waiting.popleft()
                self.drop("superseded")
            self._waiting.append(frame)
            self._waiting_cv.notify()

    def drop(self, kind: str, reason: str = "") -> None:
        with self.stats.lock:
            self.stats.dropped[kind] += 1
        if reason:
            self.warn(kind, reason)

    def warn(self, key: str, text: str) -> None:
        """A warning logged at most every WARN_PERIOD_S per key, and kept for /diagnostics."""
        self.stats.last_problem = text
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) >= WARN_PERIOD_S:
            self._warned[key] = now
            self.get_logger().warning(text)

    def mark_published(self, stamp) -> None:
        """Record an output for the frame stamped `stamp` (latency = receipt clock - stamp)."""
        latency = self.now_s() - stamp_seconds(stamp)
        with self.stats.lock:
            self.stats.published += 1
            self.stats.outputs.append(time.monotonic())
            self.stats.latencies.append(latency)
            self.stats.last_problem = ""

    def _stop_worker(self) -> None:
        self._running = False
        with self._waiting_cv:
            self._waiting.clear()
            self._waiting_cv.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=10.0)
        self._worker = None

    def _work(self) -> None:
        set_thread_torch_threads(getattr(self.p, "torch_threads", 0))
        if not lower_thread_priority(self.p.worker_niceness):
            self.warn("niceness", f"cannot lower the worker thread's priority by {self.p.worker_niceness}: "
                                  "it runs at the process's")
        while True:
            with self._waiting_cv:
                if not self._waiting and self._running:
                    self._waiting_cv.wait(IDLE_PERIOD_S)
                if not self._running:
                    return
                frame = self._waiting.popleft() if self._waiting else None
            try:
                if isinstance(frame, SerializedFrame):
                    frame = frame.message()
                self.idle() if frame is None else self.process(frame)
            except DroppedFrame as dropped:
                self.drop(dropped.kind, str(dropped))
            except Exception as err:  # noqa: BLE001  (bad input must never stop the node)
                if not self.context.ok():
                    return      # the context ended under this frame (not through main()): nothing to report
                self.drop("error", f"frame failed: {type(err).__name__}: {err}")
            if frame is not None:
                with self.stats.lock:
                    self.stats.processed += 1

    # -- diagnostics --------------------------------------------------------------------------
    def diagnostic_values(self) -> dict[str, str]:
        """Extra key-values of a node's status."""
        return {}

    def standing_problem(self) -> str:
        """A problem that lasts beyond one frame (e.g. a camera pose guessed from parameters), kept on
        /diagnostics as a warning while it lasts; "" when there is none."""
        return ""

    def _publish_diagnostics(self) -> None:
        s = self.stats
        with s.lock:
            lat = sorted(s.latencies)
            values = {
                "state": self.lifecycle_state,
                "input_rate_hz": f"{s.rate(s.arrivals):.2f}",
                "output_rate_hz": f"{s.rate(s.outputs):.2f}",
                "latency_mean_ms": f"{1e3 * sum(lat) / len(lat):.1f}" if lat else "n/a",
                "latency_p95_ms": f"{1e3 * lat[int(0.95 * (len(lat) - 1))]:.1f}" if lat else "n/a",
                "frames_received": str(s.received),
                "frames_processed": str(s.processed),
                "frames_published": str(s.published),
                "frames_dropped": str(sum(s.dropped.values())),
                "ordering_resets": str(s.ordering_resets),
            } | {f"dropped_{k}": str(v) for k, v in sorted(s.dropped.items())} | {
                f"time_{k}_ms": f"{1e3 * sum(v) / len(v):.1f}" for k, v in s.stage_times.items()}
            problem = s.last_problem
        values |= self.diagnostic_values()
        problem = problem or self.standing_problem()
        if values["state"] != "active":
            level, message = DiagnosticStatus.WARN, f"node is {values['state']}" + (f": {problem}" if problem else "")
        elif problem:
            level, message = DiagnosticStatus.WARN, problem
        else:
            level, message = DiagnosticStatus.OK, "ok"
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: pipeline", message=message,
                                  hardware_id=self.get_fully_qualified_name(),
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(msg)
