"""Callbacks: figures and evaluation, talking to models only through their sampling interface."""

from t2igan.callbacks.caption_consistency import CaptionConsistency
from t2igan.callbacks.samples import SampleGrid

__all__ = ["CaptionConsistency", "SampleGrid"]
