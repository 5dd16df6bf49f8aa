"""Gait parameters on ROS topics: one DiagnosticStatus whose key-values are
`GaitParameters.to_dict()` (units in the key names, e.g. `cadence_spm`,
`left_stance_pct`; an empty value where a parameter is not known yet).

The pose_prior node publishes the measured ones on `~/gait`, the synthetic
camera its walker's true ones on `~/ground_truth/gait`; `gait_values` reads
either back.
"""
from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue


def gait_status(parameters: dict, frame_id: str, name: str = "pose_prior: gait parameters",
                message: str = "gait parameters over the analysis window") -> DiagnosticStatus:
    """Gait parameters (`GaitParameters.to_dict()`) as key-values; unknown values empty."""
    def text(v) -> str:
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return ""
        return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)

    values = [KeyValue(key=k, value=text(v)) for k, v in parameters.items()]
    return DiagnosticStatus(level=DiagnosticStatus.OK, name=name, hardware_id=frame_id, message=message,
                            values=values)


def gait_values(status: DiagnosticStatus) -> dict:
    """A gait status back to a dict: numbers as floats, empty values as None, other text as is."""
    out = {}
    for kv in status.values:
        if kv.value == "":
            out[kv.key] = None
            continue
        try:
            out[kv.key] = float(kv.value)
        except ValueError:
            out[kv.key] = kv.value
    return out
