"""The batch contract: the only thing models know about data.

Every dataset reader fills a :class:`Split`; :class:`~t2igan.data.dataset.TextImageDataset`
turns it into batches of the :class:`Batch` form below. Models read the keys they need and never
ask which dataset they are on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

import numpy as np
import torch

#: The 15 CUB-200-2011 part names, in the order and spelling of ``parts/parts.txt``.
CUB_PARTS = (
    "back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg",
    "left wing", "nape", "right eye", "right leg", "right wing", "tail", "throat",
)  # fmt: skip


class Batch(TypedDict):
    """One collated batch (B examples).

    Keys:
        images: (B, 3, H, W) float in [-1, 1].
        text_emb: (B, D) conditioning text embedding: the mean of ``num_captions`` caption
            embeddings sampled (with replacement) from the image's captions, as Reed et al. do.
        wrong_images: (B, 3, H, W) real images of a *different class*, for the matching-aware
            discriminator (the "wrong" pair of GAN-CLS).
        captions: B strings; the first of the sampled captions (for display and logging).
        labels: (B,) long class index.
        index: (B,) long index of the example within its split.
        boxes: (B, 4) float, normalised (x, y, w, h) with a top-left origin; only when the
            dataset has boxes.
        keypoints: (B, K, 3) float, normalised (x, y) and visibility in {0, 1}; invisible parts
            are (0, 0, 0). Only when the dataset has part keypoints.
        attributes: (B, A) long attribute values (synthetic birds only: what the evaluator
            checks; see :data:`t2igan.data.synthetic.ATTRIBUTES`).
        attributes_named: (B, A) bool, whether any of the sampled captions names that attribute.
        tokens: (B, L) long word ids of ``captions`` (the first sampled caption), padded with 0,
            unknown words 1, cut to ``L = max_words`` words (:mod:`t2igan.data.tokens`); when
            the data module has a vocabulary (built from the training captions).
        image_features: (B, V, F) float, the authors' fixed image features (V views of each
            image: Reed's GoogLeNet 1024-d, 10 crops); only from ``reed-cvpr``, which has no
            ``images`` or ``wrong_images``.
    """

    images: torch.Tensor
    text_emb: torch.Tensor
    wrong_images: torch.Tensor
    captions: list[str]
    labels: torch.Tensor
    index: torch.Tensor
    boxes: NotRequired[torch.Tensor]
    keypoints: NotRequired[torch.Tensor]
    attributes: NotRequired[torch.Tensor]
    attributes_named: NotRequired[torch.Tensor]
    tokens: NotRequired[torch.Tensor]
    image_features: NotRequired[torch.Tensor]


@dataclass
class Split:
    """What a dataset reader returns for one split: N images with their annotations.

    Args:
        images: N uint8 arrays (H, W, 3), or any sequence that yields them when indexed
            (a lazy reader over files or an HDF5 dataset); None for a split of image features
            only (``image_features``).
        captions: N lists of caption strings (at least one each).
        labels: (N,) int class ids, used to draw "wrong" images from other classes.
        names: N identifiers (file names), for error messages and provenance.
        boxes: (N, 4) normalised (x, y, w, h), or None.
        keypoints: (N, K, 3) normalised (x, y, visible), or None.
        part_names: names of the K keypoints, in order; needed to swap left/right on flips.
        attributes: (N, A) int attribute values, or None.
        caption_attributes: N bool arrays (C_i, A): which attributes each caption names.
        caption_emb: N float arrays (C_i, D) of precomputed caption embeddings (the papers'
            files), or None to compute them with the data module's text encoder.
        image_features: N float arrays (V, F), fixed features of V views of each image (Reed's
            GoogLeNet features), or None.
    """

    images: object
    captions: list[list[str]]
    labels: np.ndarray
    names: list[str]
    boxes: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    part_names: tuple[str, ...] = ()
    attributes: np.ndarray | None = None
    caption_attributes: list[np.ndarray] | None = None
    caption_emb: list[np.ndarray] | None = None
    image_features: list[np.ndarray] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.captions)
        for key in ("labels", "names", "boxes", "keypoints", "attributes", "caption_emb",
                    "image_features"):  # fmt: skip
            value = getattr(self, key)
            if value is not None and len(value) != n:
                raise ValueError(f"Split.{key} has {len(value)} entries for {n} images")
        if self.images is None and self.image_features is None:
            raise ValueError("a Split needs images or image_features")
        if self.images is not None and len(self.images) != n:
            raise ValueError(f"Split.images has {len(self.images)} entries for {n} caption lists")
        empty = [self.names[i] for i, caps in enumerate(self.captions) if not caps]
        if empty:
            raise ValueError(f"{len(empty)} images have no captions, e.g. {empty[:3]}")

    def __len__(self) -> int:
        return len(self.captions)
