"""Metrics."""

from t2igan.metrics.caption_consistency import CaptionAccuracy, read_birds

__all__ = ["CaptionAccuracy", "read_birds"]
