"""Building blocks used identically by more than one paper."""

from t2igan.nn.init import init_dcgan_weights

__all__ = ["init_dcgan_weights"]
