"""Perception: from a whole scene cloud to the target person's lower limbs."""
from .segment import SegmentationConfig, SegmentationResult, decimate, segment_legs

__all__ = ["SegmentationConfig", "SegmentationResult", "decimate", "segment_legs"]
