"""Perception: from a whole scene cloud to the target person's lower limbs."""
from .segment import SegmentationConfig, SegmentationResult, segment_legs

__all__ = ["SegmentationConfig", "SegmentationResult", "segment_legs"]
