"""Callbacks: figures and evaluation, talking to models only through their sampling interface."""

from t2igan.callbacks.canvas import CanvasSteps, WordAlignment
from t2igan.callbacks.caption_consistency import CaptionConsistency
from t2igan.callbacks.checkpoint import RunCheckpoint
from t2igan.callbacks.image_metrics import ImageMetrics
from t2igan.callbacks.interpolation import (
    CaptionInterpolation,
    NoiseInterpolation,
    StyleTransferGrid,
)
from t2igan.callbacks.location import GeneratedKeypointsGrid, WhatGrid, WhereGrid
from t2igan.callbacks.run_config import SaveRunConfig
from t2igan.callbacks.samples import SampleGrid
from t2igan.callbacks.speed_ups import SpeedUps
from t2igan.callbacks.stages import StageSamples

__all__ = [
    "CanvasSteps",
    "CaptionConsistency",
    "CaptionInterpolation",
    "GeneratedKeypointsGrid",
    "ImageMetrics",
    "NoiseInterpolation",
    "RunCheckpoint",
    "SampleGrid",
    "SaveRunConfig",
    "SpeedUps",
    "StageSamples",
    "StyleTransferGrid",
    "WhatGrid",
    "WhereGrid",
    "WordAlignment",
]
