"""The torch Dataset every paper model trains on: a :class:`Split` in, :class:`Batch` items out."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from t2igan.data.contract import Split


def flip_permutation(part_names: tuple[str, ...]) -> list[int]:
    """Index map that swaps "left X" with "right X" parts (identity for unsided parts)."""
    index = {name: i for i, name in enumerate(part_names)}
    perm = []
    for name in part_names:
        side, _, part = name.partition(" ")
        other = {"left": "right", "right": "left"}.get(side)
        perm.append(index.get(f"{other} {part}", index[name]) if other else index[name])
    return perm


class TextImageDataset(Dataset):
    """Images, conditioning text and annotations of one split, in the batch-contract form.

    Args:
        split: what the reader produced.
        caption_emb: one (C_i, D) float array per image, aligned with ``split.captions``.
        image_size: output side; images are resized to ``load_size`` then cropped to it.
        load_size: side images are resized to before cropping (Reed: 76 for 64); None = no crop.
        random_crop: random crop position when training; centre crop otherwise.
        flip: random horizontal flip with p = 0.5; boxes and keypoints follow, and left/right
            parts swap (the authors' GAWWN loader forgot the swap; this one does not).
        num_captions: caption embeddings sampled with replacement and averaged per image
            (Reed et al.: 4; StackGAN-PyTorch: 1).
        wrong_images: draw a real image of another class per item (``wrong_images``); False
            leaves the key out (the data module then pairs images within the batch).
        tokens: one (C_i, L) int64 array of word ids per image, aligned with
            ``split.captions`` (:class:`~t2igan.data.tokens.Vocabulary`); each item then holds
            ``tokens``, the ids of its first sampled caption (the one in ``captions``).
        images: False leaves ``images`` and ``wrong_images`` out of every item (no image is
            read), for models that read only the annotations and captions.
    """

    def __init__(
        self,
        split: Split,
        caption_emb: list[np.ndarray],
        image_size: int,
        load_size: int | None = None,
        random_crop: bool = False,
        flip: bool = False,
        num_captions: int = 4,
        wrong_images: bool = True,
        tokens: list[np.ndarray] | None = None,
        images: bool = True,
    ) -> None:
        if len(caption_emb) != len(split):
            raise ValueError(f"{len(caption_emb)} embedding arrays for {len(split)} images")
        for name, caps, emb in zip(split.names, split.captions, caption_emb):
            if len(emb) != len(caps):
                raise ValueError(f"{name}: {len(emb)} caption embeddings for {len(caps)} captions")
        if num_captions < 1:
            raise ValueError(f"num_captions must be >= 1, got {num_captions}")
        if tokens is not None and len(tokens) != len(split):
            raise ValueError(f"{len(tokens)} token arrays for {len(split)} images")
        self.tokens = None if tokens is None else [torch.as_tensor(t) for t in tokens]
        self.split = split
        self.emb = [torch.as_tensor(e, dtype=torch.float32) for e in caption_emb]
        self.image_size = image_size
        self.load_size = load_size or image_size
        if self.load_size < image_size:
            raise ValueError(f"load_size {self.load_size} is smaller than image_size {image_size}")
        self.random_crop = random_crop
        self.flip = flip
        self.num_captions = num_captions
        self.has_images = images and split.images is not None
        self.wrong_images = wrong_images and self.has_images
        self.features = (None if split.image_features is None else
                         [torch.as_tensor(f, dtype=torch.float32) for f in split.image_features])  # fmt: skip
        labels = np.asarray(split.labels)
        if self.wrong_images and len(np.unique(labels)) < 2:
            raise ValueError("a split needs at least two classes to draw mismatched images")
        # Images sorted by class: drawing r in [0, N - n_c) and skipping class c's block gives a
        # uniform draw over the images of every other class.
        self._order = torch.as_tensor(np.argsort(labels, kind="stable"))
        classes, starts, counts = np.unique(labels[self._order.numpy()], return_index=True,
                                            return_counts=True)  # fmt: skip
        self._block = {int(c): (int(s), int(n)) for c, s, n in zip(classes, starts, counts)}
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self._flip_perm = flip_permutation(split.part_names) if split.part_names else None

    def __len__(self) -> int:
        return len(self.split)

    def image(self, i: int) -> torch.Tensor:
        """Image ``i`` as a (3, load, load) uint8 tensor."""
        if not self.has_images:
            raise ValueError(f"this split is read without images ({self.split.names[i]})")
        img = self.split.images[i]
        if img.shape[0] != self.load_size or img.shape[1] != self.load_size:
            size = (self.load_size, self.load_size)
            img = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BICUBIC))
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)

    def centre_image(self, i: int) -> torch.Tensor:
        """Image ``i`` as the model sees it at evaluation: centre crop, no flip, in [-1, 1]."""
        slack = (self.load_size - self.image_size) // 2
        return self._apply(self.image(i), slack, slack, False)

    def wrong_index(self, i: int, generator: torch.Generator | None = None) -> int:
        start, count = self._block[int(self.labels[i])]
        r = int(torch.randint(len(self) - count, (), generator=generator))
        return int(self._order[r + count if r >= start else r])

    def _crop_flip(self, generator: torch.Generator | None) -> tuple[int, int, bool]:
        slack = self.load_size - self.image_size
        if self.random_crop and slack:
            ox, oy = torch.randint(slack + 1, (2,), generator=generator).tolist()
        else:
            ox = oy = slack // 2
        return ox, oy, bool(self.flip and torch.rand((), generator=generator) < 0.5)

    def _apply(self, img: torch.Tensor, ox: int, oy: int, flipped: bool) -> torch.Tensor:
        s = self.image_size
        img = img[:, oy : oy + s, ox : ox + s]
        if flipped:
            img = img.flip(-1)
        return img.float().div_(127.5).sub_(1.0)

    def _crop_image(self, i: int, ox: int, oy: int, flipped: bool) -> torch.Tensor:
        """``_apply(image(i), ox, oy, flipped)`` computed on the (H, W, 3) array: a few numpy
        operations instead of a dozen small torch calls, since this is the loader's hot path."""
        img = self.split.images[i]
        if img.shape[0] != self.load_size or img.shape[1] != self.load_size:
            size = (self.load_size, self.load_size)
            img = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BICUBIC))
        s = self.image_size
        img = img[oy : oy + s, ox : ox + s]
        if flipped:
            img = img[:, ::-1]
        out = img.transpose(2, 0, 1).astype(np.float32, order="C")  # (3, s, s), one copy
        out /= np.float32(127.5)
        out -= np.float32(1.0)
        return torch.from_numpy(out)

    def annotations(self, i: int, ox: int, oy: int, flipped: bool) -> dict:
        """Boxes and keypoints of image ``i`` (where the split has them) in the crop at
        ``(ox, oy)`` of the ``load_size`` image, mirrored with left and right parts swapped when
        ``flipped``: ``{"boxes": (4,), "keypoints": (K, 3)}``."""
        out = {}
        # Annotations with Python floats and numpy, one tensor each at the end: see _crop_image.
        scale = self.load_size / self.image_size
        shift = (ox / self.image_size, oy / self.image_size)
        if self.split.boxes is not None:
            x, y, w, h = (float(v) * scale for v in self.split.boxes[i])
            # the crop cuts the box: keep the part inside the image
            x0, y0 = min(max(x - shift[0], 0.0), 1.0), min(max(y - shift[1], 0.0), 1.0)
            x1, y1 = min(max(x + w - shift[0], 0.0), 1.0), min(max(y + h - shift[1], 0.0), 1.0)
            box = [x0, y0, x1 - x0, y1 - y0]
            if flipped:
                box[0] = 1 - x0 - box[2]
            out["boxes"] = torch.tensor(box)
        if self.split.keypoints is not None:
            kp = np.array(self.split.keypoints[i], np.float32)
            kp[:, :2] = kp[:, :2] * np.float32(scale) - np.array(shift, np.float32)
            # A part the crop cut off is no longer visible in the image.
            outside = ((kp[:, :2] < 0) | (kp[:, :2] > 1)).any(1)
            kp[outside | (kp[:, 2] <= 0)] = 0.0
            if flipped:
                vis = kp[:, 2] > 0
                kp[vis, 0] = 1 - kp[vis, 0]
                if self._flip_perm is not None:
                    kp = kp[self._flip_perm]
            out["keypoints"] = torch.from_numpy(kp)
        return out

    def centre_annotations(self, i: int) -> dict:
        """:meth:`annotations` of the evaluation view (:meth:`centre_image`)."""
        slack = (self.load_size - self.image_size) // 2
        return self.annotations(i, slack, slack, False)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        """Item ``i``, or ``(i, seed)``: its random draws (crop, flip, captions, mismatched
        image) then come from ``seed`` alone (see :class:`~t2igan.data.sampler.EpochSampler`);
        else from torch's global RNG."""
        i, seed = item if isinstance(item, tuple) else (item, None)
        g = None if seed is None else torch.Generator().manual_seed(seed)
        ox, oy, flipped = self._crop_flip(g)
        emb = self.emb[i]
        picks = torch.randint(len(emb), (self.num_captions,), generator=g)
        item = {
            "text_emb": emb[picks].mean(0),
            "captions": self.split.captions[i][int(picks[0])],
            "labels": self.labels[i],
            "index": torch.tensor(i),
        }
        if self.has_images:
            item["images"] = self._crop_image(i, ox, oy, flipped)
        if self.features is not None:
            item["image_features"] = self.features[i]
        if self.tokens is not None:
            item["tokens"] = self.tokens[i][int(picks[0])]
        if self.wrong_images:
            item["wrong_images"] = self._crop_image(self.wrong_index(i, g), *self._crop_flip(g))
        item.update(self.annotations(i, ox, oy, flipped))
        if self.split.attributes is not None:
            item["attributes"] = torch.as_tensor(self.split.attributes[i], dtype=torch.long)
            named = self.split.caption_attributes[i][picks.numpy()].any(0)
            item["attributes_named"] = torch.as_tensor(named)
        return item
