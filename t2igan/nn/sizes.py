"""Image-size arithmetic shared by the DCGAN-style papers."""

from __future__ import annotations

import math


def doublings_from_4x4(image_size: int, smallest: int) -> int:
    """Number of factor-2 (de)convolution steps between 4 x 4 and ``image_size``, which must be
    a power of two no smaller than ``smallest``."""
    n = math.log2(image_size) - 2
    if n != int(n) or image_size < smallest:
        raise ValueError(f"image_size must be a power of two >= {smallest}, got {image_size}")
    return int(n)
