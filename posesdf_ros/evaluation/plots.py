"""Figures of live runs (the demo): the estimated legs beside the ground truth, and RGB overlays."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..skeleton import BONES, JOINT_NAMES


def _heading_frame(truth: np.ndarray) -> np.ndarray:
    """Rotation (3, 3) whose x axis is the walker's heading (perpendicular to the hip axis)."""
    left = truth[1] - truth[5]
    left[2] = 0.0
    left /= np.linalg.norm(left) + 1e-12
    forward = np.cross(left, [0.0, 0.0, 1.0])
    return np.stack([forward, left, [0.0, 0.0, 1.0]])


def write_legs_gif(path: Path, frames: list[dict], fps: float = 8.0) -> None:
    """Side (sagittal) and front views of estimate and ground truth, frame by frame: each frame a dict of
    `joints`, `truth` (9, 3), `mesh` ((V, 3), (F, 3)) or None, and `mpjpe_mm`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    fig, axes = plt.subplots(1, 2, figsize=(8, 4.4))
    R = _heading_frame(frames[0]["truth"])
    centre = frames[0]["truth"][0].copy()

    def draw(i: int):
        f = frames[i]
        for ax, (a, title) in zip(axes, ((0, "side view (walking right)"), (1, "front view"))):
            ax.clear()
            ax.set_title(title, fontsize=10)
            if f["mesh"] is not None:
                v = (f["mesh"][0] - centre) @ R.T
                ax.scatter(v[::7, a], v[::7, 2] + centre[2], s=0.4, c="#9bb7d4", alpha=0.5)
            for joints, truth, label in ((f["truth"], True, "ground truth"), (f["joints"], False, "estimate")):
                p = (joints - centre) @ R.T
                for j, (s, e) in enumerate(BONES):
                    colour = "k" if truth else ("#2a8cff" if "left" in JOINT_NAMES[e] else "#ff6e32")
                    ax.plot(p[[s, e], a], p[[s, e], 2] + centre[2], "--" if truth else "-", color=colour,
                            lw=1.2 if truth else 2, label=label if j == 0 else None)
            ax.set_xlim(-0.7, 0.7)
            ax.set_ylim(-0.05, 1.2)
            ax.set_aspect("equal")
            ax.set_xlabel("m")
        axes[0].legend(loc="upper left", fontsize=8)
        fig.suptitle(f"frame {i + 1}/{len(frames)}   MPJPE {f['mpjpe_mm']:.1f} mm", fontsize=10)

    FuncAnimation(fig, draw, frames=len(frames)).save(path, writer=PillowWriter(fps=fps))
    plt.close(fig)


def write_overlays(out: Path, overlays: list[np.ndarray], count: int = 6) -> None:
    """Up to `count` RGB overlays, evenly picked, as out/overlay_NNN.png and one contact sheet out/overlay.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = np.linspace(0, len(overlays) - 1, min(count, len(overlays))).astype(int)
    for n, i in enumerate(picks):
        plt.imsave(out / f"overlay_{n:03d}.png", overlays[i])
    cols = min(3, len(picks))
    rows = int(np.ceil(len(picks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), picks):
        ax.imshow(overlays[i])
    fig.tight_layout()
    fig.savefig(out / "overlay.png", dpi=110)
    plt.close(fig)
