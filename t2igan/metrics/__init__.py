"""Metrics."""

from t2igan.metrics.caption_consistency import (
    AttributeClassifier,
    CaptionAccuracy,
    load_or_train_classifier,
)

__all__ = ["AttributeClassifier", "CaptionAccuracy", "load_or_train_classifier"]
