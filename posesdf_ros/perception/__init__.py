"""Perception: from a whole scene cloud to the target person's lower limbs."""
from .segment import SegmentationConfig, SegmentationResult, measure_segmentation, segment_legs

__all__ = ["SegmentationConfig", "SegmentationResult", "measure_segmentation", "segment_legs"]
