"""Gait analysis from the nine joints: clinical angles, events, spatiotemporal parameters.

ROS-free; `truth` gives the data engine's true values for evaluation.
"""
from .angles import ANGLE_NAMES, joint_angles
from .events import GaitEvents, detect_events
from .parameters import GaitAnalyser, GaitParameters, gait_parameters

__all__ = ["ANGLE_NAMES", "GaitAnalyser", "GaitEvents", "GaitParameters", "detect_events", "gait_parameters",
           "joint_angles"]
