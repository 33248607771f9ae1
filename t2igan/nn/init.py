"""Weight initialisation of dcgan.torch, used by every Reed and StackGAN network."""

from __future__ import annotations

from torch import nn


def init_dcgan_weights(module: nn.Module, linear: bool = False) -> None:
    """Conv and transposed-conv weights ~ N(0, 0.02), biases 0; BatchNorm gamma ~ N(1, 0.02),
    beta 0 (icml2016 main_cls_int.lua#L77-86). Linear layers keep PyTorch's default
    U(+-1/sqrt(fan_in)), which is Torch7's default too, unless ``linear`` (StackGAN: N(0, 0.02)).
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d) or (linear and isinstance(m, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
