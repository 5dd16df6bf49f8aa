#!/usr/bin/env python
"""A third scene generator, ray-cast, for validation only: `python tools/raycast_scenes.py --n N --seed S --out DIR`.

Writes scenes in the format `posesdf eval --data DIR` reads (manifest.json + samples/*.npz, split
"raycast"), from choices made apart from the paper generator, the product engine (data/domain.py) and
the shifted split (data/shifted.py); nothing is trained or tuned on it (docs/data.md, "A third
generator"):

- renderer: its own ray caster (open3d's RaycastingScene), pinhole cameras, its own shading;
- bodies: anny through the package's BodyModel (the benchmark's joints, rest corrections and lower-limb
  faces), phenotypes drawn here (gender mostly near either end, triangular age and weight), stature
  uniform 1.45 to 2.0 m, step width uniform 0.04 to 0.28 m;
- gait: a 5-harmonic Fourier series per angle fitted to its own table of normal gait, each subject's
  harmonics scaled and phase-shifted, speed 0.5 to 1.5 m/s setting cadence and stride; styles typical,
  slow, shuffling, stiff knee, asymmetric; arms swinging, still, hands in front, or one of each;
- cameras: Kinect v2, Azure Kinect wide mode 2 x 2 binned, RealSense D415 (1280 x 720 halved), a
  ZED-like 672 x 376; 0.4 to 1.7 m high, 1.2 to 4.5 m away, aimed at the hips with pitch, yaw and roll
  errors; the walker's heading uniform; the gravity frame's origin anywhere (the camera is not at it);
- Kinect-like noise: sigma_z = 0.0012 + 0.0019 (z - 0.4)^2 m, lateral jitter, flying pixels at depth
  steps, dropouts at grazing incidence and out of range, random holes, 1 mm steps;
- clutter: a finite floor, a box beside, behind or in front of the walker, a wall sometimes, a chair
  sometimes. A view with fewer than 200 leg points, an ankle outside the image or over 60 % of the
  legs hidden is drawn again (camera and clutter).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from posesdf_ros.data.scene import Box
from posesdf_ros.geometry import yaw_matrix

GENERATOR_VERSION = "raycast-1"
MIN_LEG_POINTS = 200
VIEWS = {"V1": 135.0, "V2": 90.0, "V3": 180.0, "V4": 225.0, "V5": 270.0, "V6": 0.0}
CONDITIONS = ("normal", "supination", "pronation", "in_toeing", "out_toeing")
COND_OFFSET = {"normal": (0, 0), "supination": (10, 20), "pronation": (10, 20), "in_toeing": (15, 25),
               "out_toeing": (15, 30)}

# name: (W, H, HFOV, VFOV, min range, max range, downsample)
CAMERAS = {
    "kinect_v2_512x424": (512, 424, 70.6, 60.0, 0.5, 4.5, 1),
    "azure_wfov_binned_512x512": (512, 512, 120.0, 120.0, 0.25, 2.9, 1),
    "d415_1280x720_half": (1280, 720, 65.0, 40.0, 0.3, 8.0, 2),
    "zed_like_672x376": (672, 376, 90.0, 60.0, 0.3, 10.0, 1),
}

# Own textbook table of normal gait (phase %, deg), roughly after Winter (1991) / Perry (1992).
TEXTBOOK = {
    "hip_flexion": [(0, 25), (10, 22), (20, 14), (30, 6), (40, -2), (50, -8), (56, -10), (62, -5), (70, 8),
                    (80, 20), (90, 27), (95, 26)],
    "knee_flexion": [(0, 3), (5, 10), (15, 18), (25, 12), (35, 6), (42, 4), (50, 8), (60, 36), (68, 57),
                     (73, 62), (80, 52), (90, 22), (96, 6)],
    "ankle_dorsiflexion": [(0, 0), (6, -6), (15, 2), (30, 8), (45, 11), (52, 8), (58, -5), (63, -18),
                           (70, -12), (80, -2), (90, 1)],
    "hip_adduction": [(0, 1), (15, 6), (30, 5), (50, 2), (62, -4), (75, -5), (90, -1)],
    "hip_rotation": [(0, 3), (25, 3), (50, -2), (65, -5), (85, 0)],
}
HARMONICS = 5


def _fit_fourier(table, k=HARMONICS):
    x = np.array([p for p, _ in table] + [100 + table[0][0]], float) / 100.0
    y = np.array([v for _, v in table] + [table[0][1]], float)
    g = np.linspace(0, 1, 400, endpoint=False)
    yy = np.interp(g, x, y)
    A = [np.ones_like(g)]
    for h in range(1, k + 1):
        A += [np.cos(2 * np.pi * h * g), np.sin(2 * np.pi * h * g)]
    c, *_ = np.linalg.lstsq(np.stack(A, 1), yy, rcond=None)
    a0 = c[0]
    amp = np.hypot(c[1::2], c[2::2])
    ph = np.arctan2(c[2::2], c[1::2])   # value = a0 + sum amp_h cos(2 pi h p - ph_h)
    return a0, amp, ph


FOURIER = {k: _fit_fourier(v) for k, v in TEXTBOOK.items()}


def fourier_eval(a0, amp, ph, p):
    h = np.arange(1, len(amp) + 1)
    return a0 + np.sum(amp * np.cos(2 * np.pi * h * np.asarray(p)[..., None] - ph), axis=-1)


# ----------------------------------------------------------------------------------------- subjects
def draw_build(rng):
    if rng.random() < 0.7:
        gender = float(np.clip(rng.normal(0.05 if rng.random() < 0.5 else 0.95, 0.08), 0, 1))
    else:
        gender = float(rng.uniform(0, 1))
    return {
        "gender": gender,
        "age": float(rng.triangular(0.5, 0.62, 1.0)),
        "muscle": float(0.05 + 0.9 * rng.beta(1.5, 1.5)),
        "weight": float(rng.triangular(0.0, 0.3, 0.9)),
        "proportions": float(rng.uniform(0.2, 0.8)),
        "stature_m": float(rng.uniform(1.45, 2.0)),
        "step_width_m": float(rng.uniform(0.04, 0.28)),
        "knee_correction": 1.0,
    }


STYLES = {  # weight, speed range
    "typical": (0.5, (0.95, 1.5)), "slow": (0.15, (0.5, 0.9)), "shuffling": (0.12, (0.5, 0.8)),
    "stiff_knee": (0.11, (0.5, 1.1)), "asymmetric": (0.12, (0.6, 1.2)),
}
ARM_MODES = {"swinging": 0.45, "still": 0.2, "hands_in_front": 0.2, "mixed": 0.15}


def _choice(rng, weights: dict):
    keys = list(weights)
    w = np.array([weights[k] if not isinstance(weights[k], tuple) else weights[k][0] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


def draw_gait(rng, condition, stature):
    style = _choice(rng, STYLES)
    speed = float(rng.uniform(*STYLES[style][1]))
    cadence = float(np.clip((64.0 + 36.0 * speed) * rng.uniform(0.92, 1.08), 70, 135))
    stride = 120.0 * speed / cadence
    r = stride / (1.45 * stature / 1.75)
    g = {"style": style, "speed_mps": speed, "cadence_spm": cadence, "stride_m": stride, "stride_ratio": r}
    # Per-subject curves: harmonic amplitudes scaled, phases shifted, offsets moved.
    curves = {}
    for name, (a0, amp, ph) in FOURIER.items():
        amp = amp * (1 + rng.normal(0, 0.08, len(amp)))
        shift = rng.normal(0, 0.012, len(amp))            # cycles, per harmonic
        ph = ph + 2 * np.pi * np.arange(1, len(amp) + 1) * shift
        off = {"hip_flexion": rng.normal(0, 4), "knee_flexion": rng.normal(0, 2), "ankle_dorsiflexion":
               rng.normal(0, 3), "hip_adduction": rng.normal(0, 1.5), "hip_rotation": rng.normal(0, 2)}[name]
        curves[name] = [float(a0 + off), amp.tolist(), ph.tolist()]
    g["curves"] = curves
    g["hip_scale"] = float(np.clip(r ** 0.9, 0.35, 1.3))
    g["knee_scale"] = float(np.clip(0.5 + 0.5 * r, 0.45, 1.15))
    g["ankle_scale"] = float(np.clip(0.4 + 0.6 * r, 0.4, 1.2))
    if style == "shuffling":
        g["knee_scale"] *= float(rng.uniform(0.4, 0.6))
        g["ankle_scale"] *= float(rng.uniform(0.3, 0.6))
    g["stiff_knee"] = [1.0, 1.0]
    if style == "stiff_knee":
        s = float(rng.uniform(0.3, 0.55))
        g["stiff_knee"] = [s, s] if rng.random() < 0.5 else ([s, 1.0] if rng.random() < 0.5 else [1.0, s])
    g["side_scale"] = [1.0, 1.0]
    if style == "asymmetric":
        k = int(rng.integers(2))
        g["side_scale"][k] = float(rng.uniform(0.6, 0.9))
    else:
        g["side_scale"][int(rng.integers(2))] = float(1 - rng.uniform(0, 0.06))
    g["right_lag"] = float(rng.uniform(-0.03, 0.03))
    g["pelvis_obliquity_deg"] = float(rng.uniform(2, 7))
    g["pelvis_rotation_deg"] = float(rng.uniform(2, 8) * min(1.2, r))
    g["pelvis_lag"] = float(rng.uniform(-0.05, 0.05))
    g["foot_progression_deg"] = float(rng.normal(6, 5))
    g["progression_hip_share"] = float(rng.uniform(0.4, 0.9))
    lo, hi = COND_OFFSET[condition]
    g["condition"] = condition
    g["condition_offset_deg"] = float(rng.uniform(lo, hi)) if hi else 0.0
    g["condition_hip_share"] = float(rng.uniform(0.5, 0.95))
    # Arms
    mode = _choice(rng, ARM_MODES)
    g["arm_mode"] = mode

    def arm(kind):
        if kind == "swing":
            return {"flex": rng.uniform(-10, 10), "abd": rng.uniform(0, 15), "elbow": rng.uniform(5, 40),
                    "swing": rng.uniform(5, 40) * min(1.0, speed / 1.2), "elbow_swing": rng.uniform(0, 15)}
        if kind == "still":
            return {"flex": rng.uniform(-5, 8), "abd": rng.uniform(0, 8), "elbow": rng.uniform(0, 20),
                    "swing": rng.uniform(0, 3), "elbow_swing": 0.0}
        return {"flex": rng.uniform(5, 35), "abd": rng.uniform(0, 15), "elbow": rng.uniform(50, 95),
                "swing": rng.uniform(0, 5), "elbow_swing": 0.0}
    if mode == "swinging":
        a = arm("swing")
        arms = [a, dict(a, swing=a["swing"] * rng.uniform(0.8, 1.2))]
    elif mode == "still":
        arms = [arm("still"), arm("still")]
    elif mode == "hands_in_front":
        arms = [arm("front"), arm("front")]
    else:
        arms = [arm("swing"), arm(str(rng.choice(["front", "still"])))]
        if rng.random() < 0.5:
            arms = arms[::-1]
    g["arms"] = [{k: float(v) for k, v in a.items()} for a in arms]
    g["arm_lag"] = float(rng.uniform(0.0, 0.08))
    return g


def gait_angles(g, phase):
    """Angle dict (rad, arrays of 1) in the package's BodyModel.pose / segment_rotations convention."""
    d = np.deg2rad
    out = {}
    for k, side in enumerate(("left", "right")):
        p = np.mod(phase - (0.5 + g["right_lag"] if side == "right" else 0.0), 1.0)
        sc = g["side_scale"][k]
        a = {}
        for name, (a0, amp, ph) in g["curves"].items():
            amp = np.array(amp)
            ph = np.array(ph)
            scale = {"hip_flexion": g["hip_scale"], "knee_flexion": g["knee_scale"],
                     "ankle_dorsiflexion": g["ankle_scale"]}.get(name, 1.0) * sc
            val = a0 + scale * (fourier_eval(a0, amp, ph, p) - a0)
            a[name] = val
        # knee: stiff-knee compresses the swing peak over the stance-phase level
        grid = np.linspace(0, 1, 200, endpoint=False)
        kc = g["curves"]["knee_flexion"]
        base = kc[0] + g["knee_scale"] * sc * (fourier_eval(kc[0], np.array(kc[1]), np.array(kc[2]), grid) - kc[0])
        kmin = base.min()
        knee_floor = np.percentile(base, 40)
        if g["stiff_knee"][k] < 1.0:
            kn = a["knee_flexion"]
            a["knee_flexion"] = np.where(kn > knee_floor, knee_floor + (kn - knee_floor) * g["stiff_knee"][k], kn)
        a["knee_flexion"] = np.maximum(a["knee_flexion"] - kmin + max(kmin, -2.0), -2.0)
        fp = g["foot_progression_deg"]
        hs = g["progression_hip_share"]
        hip_rot = a["hip_rotation"] - fp * hs
        foot_add = np.full_like(p, -fp * (1 - hs))
        inv = np.zeros_like(p)
        off = g["condition_offset_deg"] * sc
        c = g["condition"]
        if c == "supination":
            inv = inv + off
        elif c == "pronation":
            inv = inv - off
        elif c in ("in_toeing", "out_toeing"):
            s = 1.0 if c == "in_toeing" else -1.0
            hip_rot = hip_rot + s * off * g["condition_hip_share"]
            foot_add = foot_add + s * off * (1 - g["condition_hip_share"])
        out[f"{side}_hip_flexion"] = d(a["hip_flexion"])
        out[f"{side}_hip_adduction"] = d(a["hip_adduction"])
        out[f"{side}_hip_rotation"] = d(hip_rot)
        out[f"{side}_knee_flexion"] = d(a["knee_flexion"])
        out[f"{side}_ankle_dorsiflexion"] = d(a["ankle_dorsiflexion"])
        out[f"{side}_foot_inversion"] = d(inv)
        out[f"{side}_foot_adduction"] = d(foot_add)
        # arms: the left arm forward when the right leg is forward
        arm = g["arms"][k]
        sign = -1.0 if side == "left" else 1.0
        w = np.cos(2 * np.pi * (phase - g["arm_lag"]))
        out[f"{side}_shoulder_flexion"] = d(arm["flex"] + sign * arm["swing"] * w)
        out[f"{side}_shoulder_abduction"] = d(np.full_like(p, arm["abd"]))
        out[f"{side}_elbow_flexion"] = d(arm["elbow"] + arm["elbow_swing"] * np.maximum(0, sign * w))
    w = 2 * np.pi * (phase + g["pelvis_lag"])
    out["pelvis_obliquity"] = d(g["pelvis_obliquity_deg"] * np.sin(w))
    out["pelvis_rotation"] = d(-g["pelvis_rotation_deg"] * np.cos(w))
    return out


# ----------------------------------------------------------------------------------------- geometry
def cuboid(centre_xy, size, yaw, z0=0.0):
    """A box's mesh (`scene.Box.mesh`) lifted `z0` off the floor (a chair's seat and back)."""
    vertices, faces = Box((centre_xy[0], centre_xy[1]), tuple(size), yaw).mesh()
    return vertices + [0.0, 0.0, z0], faces


def merge(parts):
    vs, fs, n = [], [], 0
    for v, f in parts:
        vs.append(v)
        fs.append(f + n)
        n += len(v)
    return np.concatenate(vs), np.concatenate(fs)


def chair(centre_xy, yaw, rng):
    w = rng.uniform(0.38, 0.5)
    seat_h = rng.uniform(0.42, 0.48)
    parts = [cuboid((0, 0), (w, w, 0.04), 0.0, seat_h - 0.04)]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(cuboid((sx * (w / 2 - 0.02), sy * (w / 2 - 0.02)), (0.035, 0.035, seat_h - 0.04), 0.0))
    parts.append(cuboid((-w / 2 + 0.02, 0), (0.03, w, rng.uniform(0.35, 0.5)), 0.0, seat_h))
    v, f = merge(parts)
    v = v @ yaw_matrix(yaw).T + [centre_xy[0], centre_xy[1], 0]
    return v, f


def in_footprint(pts, centre_xy, size_xy, yaw, margin):
    local = (pts[:, :2] - centre_xy) @ yaw_matrix(yaw)[:2, :2]
    return (np.abs(local[:, 0]) < size_xy[0] / 2 + margin) & (np.abs(local[:, 1]) < size_xy[1] / 2 + margin)


def camera_pose(cam_pos, target, pitch_err, yaw_err, roll):
    f = target - cam_pos
    f = f / np.linalg.norm(f)
    # yaw error about z, pitch error about the camera's right axis
    f = yaw_matrix(yaw_err) @ f
    up = np.array([0, 0, 1.0])
    right = np.cross(f, up)
    right /= np.linalg.norm(right)
    c, s = np.cos(pitch_err), np.sin(pitch_err)   # positive = more down
    down0 = np.cross(f, right)
    f = c * f + s * down0
    f /= np.linalg.norm(f)
    right = np.cross(f, up)
    right /= np.linalg.norm(right)
    down = np.cross(f, right)
    cr, sr = np.cos(roll), np.sin(roll)
    x = cr * right + sr * down
    y = -sr * right + cr * down
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, f], 1)
    T[:3, 3] = cam_pos
    return T


# ----------------------------------------------------------------------------------------- rendering
GEOM_NAMES = ("body", "floor", "box", "wall", "chair")


def raycast(meshes, K, W, H, T):
    import open3d as o3d
    scene = o3d.t.geometry.RaycastingScene()
    ids = {}
    for name, (v, f) in meshes.items():
        ids[scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)),
                                o3d.core.Tensor(f.astype(np.uint32)))] = name
    u, vv = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    d_w = d_cam @ T[:3, :3].T
    rays = np.concatenate([np.broadcast_to(T[:3, 3], d_w.shape), d_w], -1).astype(np.float32)
    r = scene.cast_rays(o3d.core.Tensor(rays))
    t = r["t_hit"].numpy()
    gid = r["geometry_ids"].numpy().astype(np.int64)
    pid = r["primitive_ids"].numpy().astype(np.int64)
    nrm = r["primitive_normals"].numpy()
    name = np.full(t.shape, -1, np.int64)
    for k, n in ids.items():
        name[gid == k] = GEOM_NAMES.index(n)
    t = np.where(np.isfinite(t), t, np.nan)
    dn = d_w / np.linalg.norm(d_w, axis=-1, keepdims=True)
    cos = np.abs(np.sum(nrm * dn, -1))
    return t, name, pid, cos, d_w


def kinect_noise(depth, label, cos, rng, zmin, zmax):
    """Kinect-like depth noise on a true-depth image. Returns noisy depth (NaN invalid), labels, info."""
    H, W = depth.shape
    z = depth.copy()
    info = {}
    # flying pixels at depth discontinuities (computed on the clean image)
    far = np.where(np.isfinite(z), z, 50.0)
    pad = np.pad(far, 1, mode="edge")
    padl = np.pad(label, 1, mode="edge")
    neigh = np.stack([pad[1 + dy:H + 1 + dy, 1 + dx:W + 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    neighl = np.stack([padl[1 + dy:H + 1 + dy, 1 + dx:W + 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    zmin_n, zmax_n = neigh.min(0), neigh.max(0)
    edge = np.isfinite(z) & ((zmax_n - zmin_n) > 0.04)
    share = rng.uniform(0.3, 0.8)
    fly = edge & (rng.random((H, W)) < share)
    alpha = rng.uniform(0.05, 0.95, (H, W))
    fg_is_self = np.abs(far - zmin_n) < np.abs(far - zmax_n)
    other = np.where(fg_is_self, zmax_n, zmin_n)
    other_l = np.where(fg_is_self, np.take_along_axis(neighl, neigh.argmax(0)[None], 0)[0],
                       np.take_along_axis(neighl, neigh.argmin(0)[None], 0)[0])
    newz = far + alpha * (other - far)
    to_infinity = fly & (other > 40.0)
    fly_ok = fly & ~to_infinity
    z = np.where(fly_ok, newz, z)
    lab = label.copy()
    on_self = np.abs(newz - far) < 0.03
    on_other = np.abs(newz - other) < 0.03
    lab[fly_ok & on_other & ~on_self] = other_l[fly_ok & on_other & ~on_self]
    lab[fly_ok & ~on_self & ~on_other] = 0
    z[to_infinity & (rng.random((H, W)) < 0.7)] = np.nan
    info["flying"] = int(fly_ok.sum())
    # dropouts: grazing angle, range, random holes (scattered + small blobs)
    graze = rng.uniform(0.1, 0.2)
    drop = (cos < graze) & ~fly_ok
    drop |= rng.random((H, W)) < rng.uniform(0.002, 0.01)
    nblob = int(rng.integers(0, 25))
    for _ in range(nblob):
        cy, cx, r = rng.integers(0, H), rng.integers(0, W), rng.integers(1, 4)
        drop[max(0, cy - r):cy + r + 1, max(0, cx - r):cx + r + 1] = True
    z[drop] = np.nan
    # axial noise (+ a small per-frame bias), range gate, quantisation
    sig = 0.0012 + 0.0019 * (np.nan_to_num(z, nan=0.4) - 0.4) ** 2
    z = z + rng.normal(0, 1, (H, W)) * sig + rng.normal(0, 0.002)
    z[(z < zmin) | (z > zmax)] = np.nan
    z = np.round(z * 1000.0) / 1000.0
    info["graze_threshold"] = float(graze)
    info["flying_share"] = float(share)
    return z.astype(np.float32), lab, info


def shade(name, pid, cos, depth_true, d_w, T, albedo_of, lower_face_hit, crop):
    H, W = name.shape
    alb = np.full((H, W, 3), 25.0)
    for gi, col in albedo_of.items():
        alb[name == gi] = col
    hits = T[:3, 3] + d_w * np.nan_to_num(depth_true)[..., None]
    alb[lower_face_hit & (hits[..., 2] < crop)] = albedo_of["trousers"]
    fl = name == GEOM_NAMES.index("floor")
    grain = 0.85 + 0.15 * np.sin(hits[..., 0] * 9.0 + 2 * np.sin(hits[..., 1] * 1.3)) ** 2
    alb[fl] = alb[fl] * grain[fl, None]
    falloff = 1 + 0.03 * np.nan_to_num(depth_true, nan=10) ** 2
    light = ((0.25 + 0.75 * np.nan_to_num(cos)) / falloff)[..., None]
    return np.clip(alb * light * 1.4, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------- a scene
def make_scene(index, seed, body_model):
    from posesdf_ros.data.sdf import SURFACE_SAMPLES, lower_limb_surface, unit_sphere_normalisation

    rng = np.random.default_rng([seed, 48, index])
    build = draw_build(rng)
    azimuth = float(rng.uniform(0, 360))
    view = min(VIEWS, key=lambda v: abs((azimuth - VIEWS[v] + 180) % 360 - 180))
    cond = str(rng.choice(CONDITIONS[1:] if view == "V1" else CONDITIONS))
    gait = draw_gait(rng, cond, build["stature_m"])
    phase = float(rng.random())
    body = body_model.pose(build, gait_angles(gait, np.array([phase])))
    verts_s, joints_s = body.vertices[0], body.joints[0]
    lower_face = body_model.lower_limb_face
    faces = body.faces
    realised = float(verts_s[:, 2].max() - verts_s[:, 2].min())
    # the walker somewhere in the gravity frame
    walker_xy = rng.uniform(-2.5, 2.5, 2)
    redraws = 0
    reasons = []
    while True:
        r2 = np.random.default_rng([seed, 48, index, 1 + redraws])
        cam_name = str(r2.choice(list(CAMERAS)))
        Wf, Hf, hfov, vfov, zmin, zmax, ds = CAMERAS[cam_name]
        W, H = Wf // ds, Hf // ds
        fx = W / 2 / np.tan(np.deg2rad(hfov) / 2) * r2.uniform(0.97, 1.03)
        fy = H / 2 / np.tan(np.deg2rad(vfov) / 2) * r2.uniform(0.97, 1.03)
        K = np.array([[fx, 0, W / 2 * (1 + r2.uniform(-0.02, 0.02))], [0, fy, H / 2 * (1 + r2.uniform(-0.02, 0.02))],
                      [0, 0, 1.0]])
        cam_h = float(r2.uniform(0.4, 1.7))
        dmax = min(4.5, zmax - 0.4)
        dist = float(r2.uniform(1.2, dmax))
        bearing = float(r2.uniform(0, 2 * np.pi))           # direction walker -> camera in the gravity frame
        heading = bearing - np.deg2rad(azimuth)             # walker's facing yaw
        Rs = yaw_matrix(heading)
        S2G = np.eye(4)
        S2G[:3, :3] = Rs
        S2G[:2, 3] = walker_xy
        verts = verts_s @ Rs.T + S2G[:3, 3]
        joints = joints_s @ Rs.T + S2G[:3, 3]
        cam_pos = np.array([*(walker_xy + dist * np.array([np.cos(bearing), np.sin(bearing)])), cam_h])
        target = np.array([*walker_xy, joints[0, 2]])
        pitch_err = np.deg2rad(np.clip(r2.normal(0, 5), -12, 12))
        yaw_err = np.deg2rad(r2.uniform(-0.35, 0.35) * hfov / 2)
        roll = np.deg2rad(r2.normal(0, 2.5))
        T = camera_pose(cam_pos, target, pitch_err, yaw_err, roll)
        meshes = {"body": (verts, faces)}
        # finite floor covering camera and walker
        mid = 0.5 * (cam_pos[:2] + walker_xy) + r2.uniform(-0.5, 0.5, 2)
        half = 0.5 * (dist + r2.uniform(3, 7))
        fy_ = r2.uniform(0, np.pi)
        corners = np.array([[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]]) @ yaw_matrix(fy_).T
        meshes["floor"] = (corners + [*mid, 0], np.array([[0, 1, 2], [0, 2, 3]]))
        to_cam = (cam_pos[:2] - walker_xy) / dist
        side = np.array([-to_cam[1], to_cam[0]])
        clutter = {}
        # the box
        mode = str(r2.choice(["beside", "behind", "front"], p=[0.35, 0.3, 0.35]))
        for _ in range(40):
            size = (r2.uniform(0.2, 0.6), r2.uniform(0.2, 0.6), r2.uniform(0.3, 0.9))
            if mode == "beside":
                c = walker_xy + side * r2.choice([-1, 1]) * r2.uniform(0.4, 1.1) + to_cam * r2.uniform(-0.5, 0.5)
            elif mode == "behind":
                c = walker_xy - to_cam * r2.uniform(0.45, 1.3) + side * r2.uniform(-0.5, 0.5)
            else:
                c = walker_xy + to_cam * dist * r2.uniform(0.2, 0.65) + side * r2.uniform(-0.35, 0.35)
            yaw = float(np.arctan2(to_cam[1], to_cam[0]) + r2.uniform(-0.6, 0.6))
            if in_footprint(verts, c, size[:2], yaw, 0.03).any():
                continue
            if in_footprint(cam_pos[None], c, size[:2], yaw, 0.3).any():
                continue
            clutter["box"] = {"mode": mode, "centre_xy": c.tolist(), "size": list(size), "yaw": yaw}
            meshes["box"] = cuboid(c, size, yaw)
            break
        if r2.random() < 0.4:
            back = r2.uniform(0.6, 2.0)
            c = walker_xy - to_cam * back
            wyaw = float(np.arctan2(to_cam[1], to_cam[0]) + r2.uniform(-0.4, 0.4))
            size = (0.08, r2.uniform(3, 7), 2.5)
            if not in_footprint(verts, c, size[:2], wyaw, 0.03).any():
                clutter["wall"] = {"centre_xy": c.tolist(), "distance_behind_m": back, "yaw": wyaw}
                meshes["wall"] = cuboid(c, size, wyaw)
        if r2.random() < 0.25:
            for _ in range(20):
                c = walker_xy + side * r2.choice([-1, 1]) * r2.uniform(0.5, 1.5) + to_cam * r2.uniform(-1.2, 0.6)
                cyaw = float(r2.uniform(0, 2 * np.pi))
                if in_footprint(verts, c, (0.55, 0.55), cyaw, 0.03).any():
                    continue
                if "box" in clutter and np.linalg.norm(c - clutter["box"]["centre_xy"]) < 0.75:
                    continue
                clutter["chair"] = {"centre_xy": c.tolist(), "yaw": cyaw}
                meshes["chair"] = chair(c, cyaw, r2)
                break
        depth_true, name, pid, cos, d_w = raycast(meshes, K, W, H, T)
        is_body = name == 0
        lower_hit = np.zeros_like(is_body)
        lower_hit[is_body] = lower_face[pid[is_body]]
        # labels: 0 none, 1 floor, 2 clutter, 3 body, 4 lower limb
        label = np.zeros(name.shape, np.int64)
        label[name == 1] = 1
        label[name >= 2] = 2
        label[is_body] = 3
        label[lower_hit] = 4
        depth, lab, ninfo = kinect_noise(depth_true, label, cos, r2, zmin, zmax)
        valid = np.isfinite(depth)
        jit = r2.uniform(0.1, 0.35)
        vv, uu = np.nonzero(valid)
        zc = depth[valid].astype(np.float64)
        x = (uu + 0.5 + r2.normal(0, jit, len(uu)) - K[0, 2]) / K[0, 0] * zc
        y = (vv + 0.5 + r2.normal(0, jit, len(vv)) - K[1, 2]) / K[1, 1] * zc
        pts = np.stack([x, y, zc], 1) @ T[:3, :3].T + T[:3, 3]
        crop = float(joints[0, 2] + 0.10)
        leg_mask = (lab[valid] == 4) & (pts[:, 2] < crop)
        # how much of the legs the clutter hides: the body alone
        d_alone, n_alone, p_alone, _, _ = raycast({"body": (verts, faces)}, K, W, H, T)
        legs_alone = (n_alone == 0) & np.isfinite(d_alone)
        legs_alone[legs_alone] = lower_face[p_alone[legs_alone]]
        legs_alone &= (T[2, 3] + d_w[..., 2] * np.nan_to_num(d_alone)) < crop       # the legs proper
        legs_seen = (label == 4) & ((T[2, 3] + d_w[..., 2] * np.nan_to_num(depth_true)) < crop)
        hidden_share = float(1 - legs_seen.sum() / max(1, legs_alone.sum()))
        # joints in the image
        jc = (joints - T[:3, 3]) @ T[:3, :3]
        uvz = jc @ K.T
        u_, v_ = uvz[:, 0] / uvz[:, 2], uvz[:, 1] / uvz[:, 2]
        in_img = (uvz[:, 2] > 0) & (u_ >= 0) & (u_ < W) & (v_ >= 0) & (v_ < H)
        why = []
        if leg_mask.sum() < MIN_LEG_POINTS:
            why.append("leg points")
        if not in_img[[3, 7]].all():
            why.append("ankle out of the image")
        if hidden_share > 0.6:
            why.append("clutter hides legs")
        if not why or redraws >= 15:
            break
        reasons.append(why)
        redraws += 1
    # signed distance of the joints to the body mesh (negative inside)
    import open3d as o3d
    sc = o3d.t.geometry.RaycastingScene()
    sc.add_triangles(o3d.core.Tensor(verts.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    joint_sdf = sc.compute_signed_distance(o3d.core.Tensor(joints.astype(np.float32)), nsamples=3).numpy()
    # colours, rgb
    tones = [(40, 50, 80), (25, 25, 28), (140, 125, 100), (95, 95, 100), (60, 80, 50), (170, 160, 150),
             (110, 60, 40), (30, 60, 120)]
    albedo = {0: np.array(tones[int(rng.integers(len(tones)))], float) + rng.uniform(-15, 15, 3),
              1: rng.uniform(70, 190) * np.array([1.0, 0.92, 0.8]),
              2: rng.uniform(40, 220, 3), 3: np.array([200, 198, 190.0]) * rng.uniform(0.7, 1.0),
              4: rng.uniform(60, 160, 3)}
    albedo["trousers"] = np.array(tones[int(rng.integers(len(tones)))], float) + rng.uniform(-10, 10, 3)
    rgb = shade(name, pid, cos, depth_true, d_w, T, albedo, lower_hit, crop)
    surface = lower_limb_surface(verts, faces, lower_face, crop, SURFACE_SAMPLES, rng)
    centre, scale = unit_sphere_normalisation(surface)
    subject = f"raycast-{seed:02d}-{index:04d}"
    fname = f"samples/raycast_{cond}_{view}_{index:03d}.npz"
    arrays = {
        "points": pts.astype(np.float32), "leg_mask": leg_mask, "joints": joints.astype(np.float32),
        "camera_to_gravity": T, "gt_surface": surface.astype(np.float32), "norm_centre": centre,
        "norm_scale": np.float64(scale), "subject_to_gravity": S2G, "K": K, "rgb": rgb, "depth": depth,
        "condition": np.str_(cond), "view": np.str_(view), "azimuth_deg": np.float64(azimuth),
        "subject": np.str_(subject),
    }
    from posesdf_ros.data.dataset import protocols_of
    entry = {
        "file": fname, "split": "raycast", "condition": cond, "view": view, "azimuth_deg": azimuth,
        "subject": subject, "protocols": protocols_of(cond, view), "points": int(len(pts)),
        "leg_points": int(leg_mask.sum()), "noise": "kinect_like", "redraws": redraws,
        "clutter_objects": len(clutter), "clutter": clutter,
        "camera": {"preset": cam_name, "width": W, "height": H, "K": K.tolist(), "height_m": cam_h,
                   "distance_m": dist, "pitch_error_deg": float(np.rad2deg(pitch_err)),
                   "yaw_error_deg": float(np.rad2deg(yaw_err)), "roll_deg": float(np.rad2deg(roll)),
                   "pitch_down_deg": float(np.rad2deg(np.arcsin(-T[2, 2]))), "position": cam_pos.tolist(),
                   "lateral_jitter_px": float(jit)},
        "redraw_reasons": reasons, "noise_info": ninfo, "leg_hidden_by_clutter": hidden_share,
        "joints_in_image": in_img.astype(int).tolist(), "joint_sdf_m": joint_sdf.round(4).tolist(),
        "phenotype": build, "stature_realised_m": realised,
        "gait": {k: v for k, v in gait.items() if k != "curves"}, "phase": phase,
        "heading_deg": float(np.rad2deg(heading) % 360),
    }
    return arrays, entry


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="scenes to write (default 60)")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the build (default 1)")
    ap.add_argument("--out", type=Path, required=True, help="output folder (manifest.json, samples/)")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from posesdf_ros.data.body import BodyModel
    from posesdf_ros.data.dataset import save_npz

    out = args.out
    (out / "samples").mkdir(parents=True, exist_ok=True)
    bm = BodyModel()
    entries = []
    t0 = time.perf_counter()
    for i in range(args.n):
        t = time.perf_counter()
        arrays, entry = make_scene(i, args.seed, bm)
        save_npz(out / entry["file"], arrays)
        entries.append(entry)
        c = entry["camera"]
        print(f"[{i + 1}/{args.n}] {entry['file']} {c['preset']} h={c['height_m']:.2f} d={c['distance_m']:.2f} "
              f"pts={entry['points']} legs={entry['leg_points']} hidden={entry['leg_hidden_by_clutter']:.2f} "
              f"redraws={entry['redraws']} {time.perf_counter() - t:.1f}s", flush=True)
    manifest = {"generator": "tools/raycast_scenes.py", "generator_version": GENERATOR_VERSION, "split": "raycast",
                "seed": args.seed, "protocol": "all",
                "profile": "raycast", "sensor": "full", "noise": "kinect_like (per sample: noise_info)",
                "intrinsics": "per sample (camera)",
                "choices": {"cameras": CAMERAS, "styles": STYLES, "arm_modes": ARM_MODES, "textbook": TEXTBOOK},
                "count": len(entries), "samples": sorted(entries, key=lambda e: e["file"])}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"{len(entries)} scenes in {time.perf_counter() - t0:.0f} s -> {out}")


if __name__ == "__main__":
    main()
