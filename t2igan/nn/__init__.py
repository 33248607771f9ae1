"""Building blocks used identically by more than one paper."""

from t2igan.nn.conditioning import ConditioningAugmentation
from t2igan.nn.init import init_dcgan_weights

__all__ = ["ConditioningAugmentation", "init_dcgan_weights"]
