"""Metrics."""

from t2igan.metrics.caption_consistency import (
    CaptionAccuracy,
    box_iou,
    read_bird_layout,
    read_birds,
    swapped_caption_cosine,
)

__all__ = ["CaptionAccuracy", "box_iou", "read_bird_layout", "read_birds",
           "swapped_caption_cosine"]  # fmt: skip
