"""Caption consistency on synthetic birds: do generated images show what their captions say?

The synthetic dataset knows which attributes each caption names. A small attribute classifier,
trained on freshly drawn synthetic birds (a seed disjoint from the data splits) with blur and
noise augmentation so it also reads imperfect generated images, predicts body, head and wing
colour, background, facing and size. ``caption_acc`` is the fraction of (image, named colour
attribute) pairs whose colour the classifier reads back from the generated image; per-attribute
scores cover all six attributes. Chance is 1/8 for colours.

We chose a classifier over a deterministic colour check at drawn part positions because a
generated bird's layout is its own (carried by the noise), so the real image's keypoints do not
say where to look.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric

from t2igan.data.synthetic import (
    ATTRIBUTE_CLASSES,
    ATTRIBUTES,
    BACKGROUNDS,
    PALETTE,
    SyntheticBirds,
)

log = logging.getLogger(__name__)
#: The attributes ``caption_acc`` averages over.
COLOUR_ATTRIBUTES = ("body", "head", "wing")
_INPUT = 32


class AttributeClassifier(nn.Module):
    """Small CNN: (B, 3, S, S) in [-1, 1] -> one logit vector per synthetic-bird attribute."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        colours = list(PALETTE.values()) + list(BACKGROUNDS.values())
        self.register_buffer("palette", torch.tensor(colours, dtype=torch.float32) / 127.5 - 1)
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3 + len(colours), w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),  # 16
            nn.Conv2d(2 * w, 2 * w, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(),  # 8
            nn.Conv2d(4 * w, 4 * w, 3, 2, 1, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(),  # 4
            nn.Flatten(), nn.Linear(4 * w * 16, 256), nn.ReLU(),
        )  # fmt: skip
        self.heads = nn.ModuleList(nn.Linear(256, k) for k in ATTRIBUTE_CLASSES)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images.float()
        # Soft membership of each pixel in each palette and background colour, computed at full
        # resolution and area-pooled to 32 x 32, so small parts (the head) survive as partial
        # coverage; a fixed transform that leaves the network the "which part has which colour"
        # question only.
        dist = (x[:, None] - self.palette[None, :, :, None, None]).pow(2).sum(2)  # (B, 12, H, W)
        x = torch.cat([x, torch.exp(-dist / 0.05)], 1)
        x = F.adaptive_avg_pool2d(x, _INPUT)
        return [head(h) for head, h in zip(self.heads, [self.features(x)] * len(self.heads))]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(B, A) predicted attribute values."""
        return torch.stack([logits.argmax(1) for logits in self(images)], 1)


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Blur, noise and brightness jitter, so generated (imperfect) birds are read too."""
    if torch.rand((), generator=g) < 0.5:
        k = 3
        x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, 1)
    x = x + 0.1 * torch.rand((), generator=g) * torch.randn(x.shape, generator=g)
    x = x * (1 + 0.1 * (torch.rand(len(x), 1, 1, 1, generator=g) - 0.5))
    return x.clamp(-1, 1)


def train_classifier(
    image_size: int,
    num_images: int = 4000,
    epochs: int = 4,
    seed: int = 12345,
    batch_size: int = 32,
) -> AttributeClassifier:
    """Train the attribute classifier on ``num_images`` synthetic birds drawn with ``seed``."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    # Draw from the train and the held-out combinations (3:1, so all 64 (body, head) pairs are
    # equally likely): a classifier that never saw a pair would read it as a seen one.
    reader = SyntheticBirds(image_size, num_images * 3 // 4, num_images // 4, seed=seed)
    splits = [reader.load("train"), reader.load("test")]
    images = torch.from_numpy(np.concatenate([s.images for s in splits]))
    images = images.permute(0, 3, 1, 2).float() / 127.5 - 1
    targets = torch.from_numpy(np.concatenate([s.attributes for s in splits])).long()
    num_images = len(images)
    model = AttributeClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        for idx in torch.randperm(num_images, generator=g).split(batch_size):
            logits = model(_augment(images[idx], g))
            loss = sum(F.cross_entropy(lg, targets[idx, a]) for a, lg in enumerate(logits))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval().requires_grad_(False)


def load_or_train_classifier(image_size: int, cache_dir: str | Path) -> AttributeClassifier:
    """The classifier for ``image_size``, trained once and cached in ``cache_dir``."""
    key = hashlib.sha256(f"v1-{image_size}-{ATTRIBUTES}".encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"attribute-classifier-{image_size}-{key}.pt"
    if path.exists():
        model = AttributeClassifier()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval().requires_grad_(False)
    log.info("training the caption-consistency attribute classifier (%d px)", image_size)
    model = train_classifier(image_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    return model


class CaptionAccuracy(Metric):
    """Accumulates per-attribute hits over the attributes the captions name."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("hits", torch.zeros(len(ATTRIBUTES)), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(len(ATTRIBUTES)), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, targets: torch.Tensor, named: torch.Tensor) -> None:
        named = named.bool()
        self.hits += ((preds == targets) & named).sum(0).float()
        self.count += named.sum(0).float()

    def compute(self) -> dict[str, torch.Tensor]:
        out = {}
        for a, name in enumerate(ATTRIBUTES):
            if self.count[a] > 0:
                out[name] = self.hits[a] / self.count[a]
        colour = [ATTRIBUTES.index(a) for a in COLOUR_ATTRIBUTES]
        out["caption_acc"] = self.hits[colour].sum() / self.count[colour].sum().clamp(min=1)
        return out
