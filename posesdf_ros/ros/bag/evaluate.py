"""`posesdf bag eval BAG` offline: every cloud through the pipeline, scored against the bag's ground truth.

Records (one per cloud) hold the stamp, the frame's sequence labels, the
joints (or why there are none), the ground truth and the errors; the
summary has the issue's keys (`frames`, `frames_with_person`, `mpjpe_mm`,
`per_joint_mm`, `dropped_frames`, `fps`) plus breakdowns, the figures a
bag without ground truth still allows, and gait parameters.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ...evaluation.metrics import joint_errors_mm
from ...inference.pipeline import NodePipeline, PipelineSettings, load_prior
from ...skeleton import JOINT_NAMES, bone_lengths
from .frames import FrameSource, iter_frames
from .layout import ESTIMATE_TOPIC
from .messages import gait_values, pose_array_joints, stamp_ns
from .reader import BagReader

#: The keys of `--json FILE` (issue 8).
JSON_KEYS = ("frames", "frames_with_person", "mpjpe_mm", "per_joint_mm", "dropped_frames", "fps")
NO_OUTPUT = "no output with this stamp (dropped, or no person)"


def frame_record(stamp_s: float, labels: dict, joints: np.ndarray | None, truth: np.ndarray | None, reason: str,
                 seconds: float | None = None) -> dict:
    rec = {"stamp_s": stamp_s, "sequence": labels.get("sequence"), "condition": labels.get("condition"),
           "view": labels.get("view"), "labels": labels, "valid": joints is not None, "reason": reason,
           "seconds": seconds,
           "joints": None if joints is None else np.asarray(joints).tolist(),
           "truth": None if truth is None else np.asarray(truth).tolist(), "errors_mm": None}
    if joints is not None and truth is not None:
        rec["errors_mm"] = joint_errors_mm(joints, truth).tolist()
    return rec


def evaluate_offline(bag: Path, source: FrameSource, settings: PipelineSettings, prior: bool = True,
                     limit: int | None = None, progress: bool = True, weights: Path | None = None
                     ) -> tuple[dict, list[dict]]:
    """Run the pipeline over the bag's clouds; returns (summary, per-frame records)."""
    from tqdm import tqdm

    notes: list[str] = []
    with BagReader(bag) as reader:
        total = reader.topics[source.points_topic].count if source.points_topic in reader.topics else None
        pipe = NodePipeline(settings, load_prior(prior, settings, notes), weights)
        prior_used = pipe.prior is not None
        records, dropped = [], 0
        # Frames waiting for their output (the prior's fixed lag), by stamp: (labels, truth, reason, seconds).
        waiting: dict[float, tuple] = {}

        def finished(outputs: list[tuple[float, np.ndarray | None]]) -> None:
            for stamp, joints in outputs:
                labels, truth, reason, seconds = waiting.pop(stamp)
                records.append(frame_record(stamp, labels, joints, truth, "" if joints is not None else
                                            (reason or "the prior has not started"), seconds))

        bar = tqdm(total=min(total, limit) if total and limit else total, desc="bag eval", unit="frame",
                   disable=not progress)
        for frame in iter_frames(reader, source, limit):
            if frame.points is None:
                dropped += 1
                notes.append(f"frame at {frame.stamp_s:.3f} s dropped: {frame.problem}")
                records.append(frame_record(frame.stamp_s, frame.labels, None, frame.truth, frame.problem))
            else:
                step = pipe.step(frame.stamp_s, frame.points, frame.camera_origin)
                waiting[frame.stamp_s] = (frame.labels, frame.truth, step.reason, step.seconds)
                finished(step.outputs)
            bar.update()
        finished(pipe.finish())
        for stamp, (labels, truth, _, seconds) in waiting.items():     # stamps the prior refused (not increasing)
            records.append(frame_record(stamp, labels, None, truth, "dropped by the prior: stamp out of order",
                                        seconds))
        bar.close()
        records.sort(key=lambda r: r["stamp_s"])
        topics = {t: {"type": i.msgtype, "count": i.count} for t, i in reader.topics.items()}
        notes = reader.notes + notes
    seconds = [r["seconds"] for r in records if r["seconds"] is not None]
    summary = summarise(records, dropped, float(len(seconds) / np.sum(seconds)) if seconds else None)
    summary |= {"mode": "offline", "bag": str(bag), "topics": topics, "notes": _dedupe(notes),
                "source": {"points_topic": source.points_topic, "gt_topic": source.gt_topic,
                           "gait_topic": source.gait_topic, "gravity_frame": source.gravity_frame,
                           "extrinsics": "fixed (--camera-pose)" if source.camera_to_gravity is not None
                           else "the bag's /tf_static and /tf"},
                "settings": vars(settings) | {"prior": prior_used}}
    return summary, records


def node_drops(diagnostics: dict[str, dict[str, str]], frames: int, answered: int) -> tuple[int, dict]:
    """Frames dropped on the way (skipped by a node, or lost between nodes), and the nodes' counters.

    A frame without an output is dropped unless a node reported it as one
    without a person (the canonicaliser's `no_person`, the estimator's
    `invalid`), from their last /diagnostics.
    """
    counters = {node: {k: v for k, v in diagnostics.get(node, {}).items() if k.startswith(("dropped_", "frames_"))}
                for node in ("canonicaliser", "estimator")}
    no_person = sum(int(counters[node].get(f"dropped_{k}", 0))
                    for node, k in (("canonicaliser", "no_person"), ("estimator", "invalid")))
    return max(0, frames - answered - no_person), counters


def read_outputs(bag: Path, topic: str = ESTIMATE_TOPIC) -> tuple[dict[int, np.ndarray], dict, list[str], list[float]]:
    """An output bag's joints by header stamp (ns), the last /diagnostics values per node, notes, receive times (s)."""
    joints, diagnostics, received = {}, {}, []
    with BagReader(bag) as reader:
        reader.require(topic, ("geometry_msgs/msg/PoseArray",))
        for t, t_ns, msg in reader.messages([topic, "/diagnostics"]):
            if t == topic:
                joints[stamp_ns(msg.header.stamp)] = pose_array_joints(msg)
                received.append(t_ns * 1e-9)
            elif gait_values(msg) is None:
                for status in msg.status:
                    diagnostics[status.name.split(":")[0]] = {kv.key: kv.value for kv in status.values}
        return joints, diagnostics, reader.notes, received


def evaluate_estimates(bag: Path, source: FrameSource, estimates: Path, topic: str = ESTIMATE_TOPIC,
                       limit: int | None = None) -> tuple[dict, list[dict]]:
    """Score joints recorded elsewhere (e.g. `ros2 bag record` of a bag_replay.launch.py run) against the bag's
    truth."""
    joints, diagnostics, out_notes, received = read_outputs(estimates, topic)
    with BagReader(bag) as reader:
        records = [frame_record(f.stamp_s, f.labels, joints.get(f.stamp_ns), f.truth, f.problem or NO_OUTPUT)
                   for f in iter_frames(reader, source, limit)]
        notes, topics = reader.notes + out_notes, {t: {"type": i.msgtype, "count": i.count}
                                                   for t, i in reader.topics.items()}
    dropped, counters = node_drops(diagnostics, len(records), sum(r["valid"] for r in records))
    span = received[-1] - received[0] if len(received) > 1 else 0.0
    summary = summarise(records, dropped, (len(received) - 1) / span if span > 0 else None)
    return summary | {"mode": "recorded estimates", "bag": str(bag), "estimates": str(estimates), "topics": topics,
                      "notes": _dedupe(notes), "node_drops": counters,
                      "source": {"points_topic": source.points_topic, "gt_topic": source.gt_topic,
                                 "estimate_topic": topic}}, records


def _dedupe(notes: list[str]) -> list[str]:
    """Notes in order, once each; many dropped-frame notes are folded into a count."""
    out, drops = [], [n for n in notes if n.startswith("frame at ")]
    for n in notes:
        if n not in out and not n.startswith("frame at "):
            out.append(n)
    if drops:
        out.append(f"{len(drops)} frames dropped; the first: {drops[0]}")
    return out


# --------------------------------------------------------------------------- figures


def _mean_errors(recs: list[dict]) -> tuple[float | None, dict | None]:
    errs = np.array([r["errors_mm"] for r in recs if r["errors_mm"] is not None])
    if not len(errs):
        return None, None
    return float(errs.mean()), dict(zip(JOINT_NAMES, errs.mean(0).round(2).tolist()))


def sequences(records: list[dict], gap_s: float = 1.0) -> list[list[dict]]:
    """Records split into sequences: by their ground-truth sequence label, else by gaps longer than `gap_s`."""
    out: list[list[dict]] = []
    for r in records:
        new = not out or (r["sequence"] != out[-1][-1]["sequence"] if r["sequence"] is not None
                          else r["stamp_s"] - out[-1][-1]["stamp_s"] > gap_s)
        if new:
            out.append([])
        out[-1].append(r)
    return out


def _track_figures(seq: list[dict], key: str) -> dict:
    """Stability figures of one sequence's joints (`key`: "joints" or "truth") over consecutive frames."""
    ok = [r for r in seq if r[key] is not None]
    if len(ok) < 2:
        return {}
    t = np.array([r["stamp_s"] for r in ok])
    J = np.array([r[key] for r in ok])
    bones = bone_lengths(J) * 1e3                                        # (T, 8) mm
    out = {"bone_length_std_mm": float(bones.std(0).mean()),
           "pelvis_speed_mps": float(np.median(np.linalg.norm(np.diff(J[:, 0, :2], axis=0), axis=1) / np.diff(t)))}
    if len(ok) >= 3:
        # Second differences of positions: what noise adds to a smooth walk (mm per frame^2).
        out["jitter_mm"] = float(np.linalg.norm(J[2:] - 2 * J[1:-1] + J[:-2], axis=-1).mean() * 1e3)
    return out


def _gait(seqs: list[list[dict]]) -> dict:
    """Ground-truth gait per sequence, and the parameters estimated from the joints where posesdf_ros.gait exists."""
    truth = [dict(s[0]["labels"] or {}) for s in seqs]
    try:
        from ...gait.parameters import gait_parameters
    except ImportError as err:
        return {"truth": truth, "estimated": None,
                "note": f"estimated gait parameters need posesdf_ros.gait.parameters ({err}); ground truth only"}
    estimated = []
    for s in seqs:
        ok = [r for r in s if r["joints"] is not None]
        if len(ok) < 2:
            estimated.append(None)
            continue
        params = gait_parameters(np.array([r["stamp_s"] for r in ok]), np.array([r["joints"] for r in ok]))
        estimated.append(params.to_dict())
    errors = []
    for t, e in zip(truth, estimated):
        errors.append({k: float(e[k]) - float(t[k]) for k in ("cadence_spm", "stride_length_m", "walking_speed_mps")
                       if e and k in e and k in t and e[k] is not None and t[k] not in ("", None)})
    return {"truth": truth, "estimated": estimated, "error": errors}


def summarise(records: list[dict], dropped: int, fps: float | None) -> dict:
    """The issue's figures and the breakdowns of a list of frame records."""
    scored = [r for r in records if r["errors_mm"] is not None]
    mpjpe, per_joint = _mean_errors(records)
    seqs = sequences(records)
    by = {}
    for key in ("condition", "view"):
        groups = defaultdict(list)
        for r in scored:
            groups[r[key]].append(r)
        by[f"by_{key}"] = {str(k): _mean_errors(v)[0] for k, v in sorted(groups.items(), key=lambda kv: str(kv[0]))}
    per_seq = []
    for s in seqs:
        m, _ = _mean_errors(s)
        per_seq.append({"sequence": s[0]["sequence"], "condition": s[0]["condition"], "view": s[0]["view"],
                        "start_s": s[0]["stamp_s"], "frames": len(s),
                        "frames_with_person": sum(r["valid"] for r in s), "mpjpe_mm": m,
                        "estimate": _track_figures(s, "joints"), "truth": _track_figures(s, "truth")})
    with_person = sum(r["valid"] for r in records)
    reasons = defaultdict(int)
    for r in records:
        if not r["valid"]:
            reasons[r["reason"].split(":")[0]] += 1
    return {"frames": len(records), "frames_with_person": with_person, "mpjpe_mm": mpjpe, "per_joint_mm": per_joint,
            "dropped_frames": dropped, "fps": fps,
            "frames_with_truth": sum(r["truth"] is not None for r in records), "frames_scored": len(scored),
            "mpjpe_median_mm": float(np.median([np.mean(r["errors_mm"]) for r in scored])) if scored else None,
            "detection_rate": with_person / len(records) if records else None,
            "no_person_reasons": dict(reasons), **by, "sequences": per_seq,
            "gait": _gait(seqs)}


def json_figures(summary: dict) -> dict:
    """Exactly the `--json FILE` object of the issue."""
    return {k: summary[k] for k in JSON_KEYS}


def compare_reports(a: Path, b: Path) -> dict:
    """MPJPE of two report folders over all their scored frames and over the frames both scored (by stamp)."""
    import json

    loaded = []
    for folder in (a, b):
        path = Path(folder) / "records.json"
        if not path.exists():
            raise FileNotFoundError(f"no records.json in {folder}: give report folders of `posesdf bag eval`")
        loaded.append({round(r["stamp_s"], 6): np.mean(r["errors_mm"]) for r in json.loads(path.read_text())
                       if r["errors_mm"] is not None})
    common = sorted(set(loaded[0]) & set(loaded[1]))
    out = {"reports": [str(a), str(b)], "scored": [len(x) for x in loaded],
           "mpjpe_mm": [float(np.mean(list(x.values()))) if x else None for x in loaded],
           "common_frames": len(common),
           "mpjpe_common_mm": [float(np.mean([x[t] for t in common])) if common else None for x in loaded]}
    m = out["mpjpe_common_mm"]
    out["relative_difference_common"] = abs(m[1] - m[0]) / m[0] if common and m[0] else None
    return out
