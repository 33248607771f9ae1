"""A classifier of synthetic birds: the feature space of their FID and KID, and a second reader
of their colours beside the parser (:func:`~t2igan.metrics.caption_consistency.read_birds`).

No pretrained network has seen synthetic birds, so Inception features would measure mostly
what Inception knows about plain backgrounds. This small CNN is trained once on the training
split of synthetic birds (rendered at 32 and 64 pixels, both read at 32) to predict the six
attributes (body, head and wing colour, background, facing, size); its 128-d penultimate layer
is the feature space of FID and KID, and its predictions are a learned reading of the colours.
It is cached next to the data (``<root>/synthetic/``) and its SHA-256 is recorded with every
score computed from it: a score is only comparable with scores of the same classifier.

The two readers fail differently: the parser reads pixel colours by rules (a blurry bird is the
colours it shows), the classifier reads what it learned from clean birds. Where they agree the
reading is safe; docs/evaluation.md says how far they agree.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from t2igan.atomic import save_atomic
from t2igan.data.synthetic import ATTRIBUTES, BACKGROUNDS, PALETTE, SyntheticBirds

#: Classes of each attribute, in :data:`~t2igan.data.synthetic.ATTRIBUTES` order.
CLASSES = (len(PALETTE), len(PALETTE), len(PALETTE), len(BACKGROUNDS), 2, 2)
SIDE = 32  # every image is read at 32 x 32
FEATURES = 128
VERSION = 1  # bump when the network or its training changes: the cache file is keyed by it


class BirdClassifier(nn.Module):
    """Three stride-2 convolutions and a 128-d feature layer; one linear head per attribute.

    Args:
        width: channels of the first convolution (doubled at each of the next two).
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(),  # (B, w, 16, 16)
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.BatchNorm2d(2 * width), nn.ReLU(),  # 8x8
            nn.Conv2d(2 * width, 4 * width, 3, 2, 1), nn.BatchNorm2d(4 * width), nn.ReLU(),  # 4
            nn.Flatten(), nn.Linear(4 * width * 16, FEATURES), nn.ReLU(),
        )  # fmt: skip
        self.heads = nn.Linear(FEATURES, sum(CLASSES))

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (or uint8 in 0..255) of any side as float (B, 3, 32, 32)."""
        if images.dtype == torch.uint8:
            images = images.float() / 127.5 - 1
        if images.shape[-1] != SIDE or images.shape[-2] != SIDE:
            images = F.interpolate(images.float(), size=(SIDE, SIDE), mode="bilinear",
                                   antialias=True, align_corners=False)  # fmt: skip
        return images.float()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 128) features of images (see :meth:`prepare`)."""
        return self.trunk(self.prepare(images))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """One (B, classes) logit matrix per attribute."""
        return list(self.heads(self.features(images)).split(CLASSES, 1))

    @torch.no_grad()
    def read(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 6) attributes read from images, as :func:`read_birds` returns them."""
        was = self.training
        self.eval()
        try:
            return torch.stack([lg.argmax(1) for lg in self(images)], 1).cpu()
        finally:
            self.train(was)


class ClassifierFeatures(nn.Module):
    """The classifier's feature layer as torchmetrics' FID and KID take a feature extractor:
    uint8 images in, (N, 128) out, always in eval mode."""

    num_features = FEATURES

    def __init__(self, classifier: BirdClassifier) -> None:
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> ClassifierFeatures:
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(images)


def training_images(num_images: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The synthetic training split drawn at 32 and at 64 pixels: ((2N, 3, 32, 32) images in
    [-1, 1], (2N, 6) attributes)."""
    images, attrs = [], []
    for size in (SIDE, 2 * SIDE):
        split = SyntheticBirds(size, num_images, 0, seed).load("train")
        x = torch.from_numpy(split.images).permute(0, 3, 1, 2).float() / 127.5 - 1
        images.append(BirdClassifier.prepare(x))
        attrs.append(torch.as_tensor(split.attributes, dtype=torch.long))
    return torch.cat(images), torch.cat(attrs)


def train_classifier(num_images: int = 3000, epochs: int = 6, seed: int = 0) -> BirdClassifier:
    """Train a :class:`BirdClassifier` on ``num_images`` training birds of dataset ``seed``
    (about half a minute on two CPU cores)."""
    torch.manual_seed(seed)
    images, attrs = training_images(num_images, seed)
    net = BirdClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(images), generator=g).split(128):
            x = images[idx]
            # brightness jitter and blur now and then: samples are rarely clean
            x = (x + 0.1 * torch.randn(len(x), 1, 1, 1, generator=g)).clamp(-1, 1)
            if torch.rand((), generator=g) < 0.5:
                x = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
            loss = sum(F.cross_entropy(lg, attrs[idx, a]) for a, lg in enumerate(net(x)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


def classifier_path(root: str | Path, seed: int = 0) -> Path:
    """Where the classifier of dataset ``seed`` is cached under the data root."""
    return Path(root) / "synthetic" / f"bird_classifier_v{VERSION}_seed{seed}.pt"


def save_classifier(net: BirdClassifier, path: Path) -> None:
    """Write ``net``'s weights to ``path`` atomically (a killed run leaves no half file)."""
    save_atomic(net.state_dict(), path)


def load_or_train(root: str | Path, seed: int = 0) -> tuple[BirdClassifier, Path]:
    """The cached classifier (trained and cached first if there is none) and its file."""
    path = classifier_path(root, seed)
    net = BirdClassifier()
    if not path.is_file():
        print(f"training the synthetic-bird classifier once (cached as {path})")
        save_classifier(train_classifier(seed=seed), path)
    try:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError, ValueError) as err:
        why = str(err).strip().splitlines()[0]
        raise ValueError(f"{path} is not a bird classifier of this t2igan ({why}); delete it "
                         "and it is trained again") from None  # fmt: skip
    return net.eval().requires_grad_(False), path


def agreement(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Fraction of images on which two readings (B, 6) agree, per colour attribute and on all
    three colours at once."""
    out = {}
    for name in ("body", "head", "wing"):
        k = ATTRIBUTES.index(name)
        out[name] = float((a[:, k] == b[:, k]).float().mean())
    colours = [ATTRIBUTES.index(n) for n in ("body", "head", "wing")]
    out["all_colours"] = float((a[:, colours] == b[:, colours]).all(1).float().mean())
    return out


__all__ = [
    "BirdClassifier",
    "ClassifierFeatures",
    "agreement",
    "load_or_train",
    "save_classifier",
    "train_classifier",
    "classifier_path",
]
