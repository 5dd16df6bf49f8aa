"""Preview PNGs of the synthetic data a person can check at a glance."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..skeleton import BONES, JOINT_NAMES
from .body import BodyModel
from .dataset import SampleKey, make_test_sample
from .gait import CONDITIONS, GaitModel, GaitParams, normal_curve
from .scene import VIEWS


def _draw_skeleton(ax, joints: np.ndarray, dims: tuple[int, int]) -> None:
    for a, b in BONES:
        colour = "tab:red" if "left" in JOINT_NAMES[b] else "tab:green"
        ax.plot(joints[[a, b], dims[0]], joints[[a, b], dims[1]], "-", color=colour, lw=2)
    ax.scatter(joints[:, dims[0]], joints[:, dims[1]], c="k", s=12, zorder=3)


def preview_sample(arrays: dict, entry: dict, path: Path) -> None:
    """Depth, RGB, and the cloud from above and the side with the ground-truth skeleton."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts, leg, joints = arrays["points"], arrays["leg_mask"], arrays["joints"]
    fig, axs = plt.subplots(1, 4, figsize=(20, 4.6))
    im = axs[0].imshow(arrays["depth"], cmap="turbo")
    fig.colorbar(im, ax=axs[0], fraction=0.03, label="depth (m)")
    axs[0].set_title("depth (NaN = no return)")
    axs[1].imshow(arrays["rgb"])
    axs[1].set_title("RGB")
    sub = np.arange(0, len(pts), 7)
    near = np.linalg.norm(pts[sub, :2] - joints[0, :2], axis=1) < 1.5
    for ax, dims, title in ((axs[2], (0, 1), "from above (x, y)"), (axs[3], (0, 2), "from the side (x, z)")):
        s = sub[near]
        ax.scatter(pts[s, dims[0]], pts[s, dims[1]], s=0.3, c=np.where(leg[s], "tab:blue", "0.7"))
        _draw_skeleton(ax, joints, dims)
        ax.set_aspect("equal")
        ax.set_title(title + ": blue = leg_mask")
    for ax in axs[:2]:
        ax.axis("off")
    fig.suptitle(f"{entry['view']} (azimuth {entry['azimuth_deg']:.0f} deg), {entry['condition']}, "
                 f"{entry['subject']}, {entry['points']} points, {entry['leg_points']} on the legs, "
                 f"noise {entry['noise']}, camera {entry['camera']['distance_m']:.2f} m away, "
                 f"{entry['camera']['height_m']:.2f} m high", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_gait_curves(path: Path) -> None:
    """The normal sagittal curves of the gait model, with spec landmarks."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phase = np.linspace(0, 1, 201)
    fig, axs = plt.subplots(1, 3, figsize=(15, 4))
    for ax, name in zip(axs, ("hip_flexion", "knee_flexion", "ankle_dorsiflexion")):
        ax.plot(phase * 100, np.rad2deg(normal_curve(name, phase)), lw=2, label="population mean")
        model = GaitModel(GaitParams(condition="normal"))
        ax.plot(phase * 100, np.rad2deg(model.leg_angles(phase, "left")[name]), "--", label="default subject")
        ax.axvline(62, color="0.6", lw=1, ls=":")
        ax.set(title=name.replace("_", " "), xlabel="gait cycle (%), 0 = heel strike", ylabel="deg")
        ax.grid(alpha=0.3)
    axs[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_previews(out: Path, seed: int = 1, condition: str = "normal") -> list[Path]:
    """One PNG per view V1..V6 (test bodies, realistic noise, clutter) and the gait curves."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    body_model = BodyModel()
    paths = []
    for i, view in enumerate(VIEWS):
        arrays, entry = make_test_sample(body_model, SampleKey("test", i, condition, view), seed)
        path = out / f"preview_{view}.png"
        preview_sample(arrays, entry, path)
        paths.append(path)
    plot_gait_curves(out / "gait_curves.png")
    paths.append(out / "gait_curves.png")
    return paths
