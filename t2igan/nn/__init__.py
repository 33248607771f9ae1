"""Building blocks used identically by more than one paper."""

from t2igan.nn.init import init_dcgan_weights
from t2igan.nn.sizes import doublings_from_4x4

__all__ = ["doublings_from_4x4", "init_dcgan_weights"]
