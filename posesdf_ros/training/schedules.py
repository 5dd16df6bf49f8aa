"""Training schedules as functions of the training progress t in [0, 1]."""
from __future__ import annotations


def linear_ramp(start: float, end: float, t: float) -> float:
    """`start` at t=0 to `end` at t=1, held outside."""
    t = min(max(t, 0.0), 1.0)
    return start + (end - start) * t


def step_lr(base: float, epoch: int, step_epochs: int, factor: float = 0.5) -> float:
    """The paper's schedule: `base`, multiplied by `factor` every `step_epochs` epochs."""
    return base * factor ** (epoch // max(step_epochs, 1))
