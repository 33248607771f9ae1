"""The scores the papers report (IS, FID, KID, R-precision, CLIP score), computed one way.

Every score comes from torchmetrics (``InceptionScore``, ``FrechetInceptionDistance``,
``KernelInceptionDistance``, ``CLIPScore``); this module only decides *what* they are fed (the
protocol of :data:`PROTOCOLS`, written out in docs/evaluation.md) and loads their feature
extractors from files on the user's disk: nothing is downloaded. A missing file raises
:class:`MissingWeightsError`, which names the file needed and where it is published.

R-precision (Xu et al., AttnGAN, CVPR 2018) is the one score torchmetrics does not have: for
each generated image, its own caption and 99 captions of other images are ranked by cosine
similarity in the space of an :class:`EncoderPair`; the score is the fraction of images whose
own caption ranks first, as mean and spread over 10 runs (:func:`r_precision`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol as TypingProtocol

import torch
import torch.nn.functional as F
from torch import nn

from t2igan.atomic import file_digest

#: Where each feature extractor is published (the error for a missing file names it).
PUBLISHED = {
    "inception": (
        "torch-fidelity's conversion of the TF Inception-v3 of 2015-12-05 (the weights of the "
        "papers' IS and FID), weights-inception-2015-12-05-6726825d.pth: https://github.com/"
        "toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
    ),
    "clip": (
        "a CLIP model folder (config.json, weights, tokenizer and preprocessor files), e.g. "
        "`huggingface-cli download openai/clip-vit-base-patch16 --local-dir DIR`"
    ),
    "damsm": (
        "AttnGAN's DAMSM text and image encoders (text_encoder*.pth, image_encoder*.pth in "
        "DAMSMencoders/bird.zip or coco.zip) and the dataset's captions.pickle (its vocabulary), "
        "all linked from https://github.com/taoxugit/AttnGAN; or, as a fallback not comparable "
        "with the papers, --sje-ckpt with a DS-SJE encoder t2igan trained (`t2igan fit --config "
        "experiments/char_cnn_rnn.yaml`)"
    ),
}


class MissingWeightsError(FileNotFoundError):
    """A feature extractor's file is not on disk; the message says which and where it is
    published."""


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file, or of a folder (the digests of its files, in name order)."""
    path = Path(path)
    if not path.is_dir():
        return file_digest(path, "sha256")
    files = sorted(p for p in path.rglob("*") if p.is_file())
    lines = "".join(f"{p.relative_to(path)} {file_digest(p, 'sha256')}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def require(path: str | Path | None, flag: str, what: str, folder: bool = False) -> Path:
    """``path`` if that file (or folder) exists, else a :class:`MissingWeightsError` naming
    ``flag`` and where ``what`` (a key of :data:`PUBLISHED`) is published."""
    ok = path is not None and (Path(path).is_dir() if folder else Path(path).is_file())
    if not ok:
        given = "not given" if path is None else f"{path} does not exist"
        raise MissingWeightsError(f"{flag} {given}: it needs {PUBLISHED[what]}")
    return Path(path)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] as uint8 in 0..255, what the Inception and CLIP metrics read."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


# ------------------------------------------------------------------ feature extractors
class Select(nn.Module):
    """One of the features of torchmetrics' Inception (built with several) as the ``(N, d)``
    matrix its metrics take: one network for IS and FID, not two."""

    def __init__(self, net: nn.Module, index: int, num_features: int) -> None:
        super().__init__()
        self.net = net
        self.index = index
        self.num_features = num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # NoTrainInceptionV3.forward returns only its first feature; this returns them all
        return self.net._torch_fidelity_forward(images)[self.index].reshape(len(images), -1)


def load_inception(path: str | Path | None) -> tuple[nn.Module, nn.Module]:
    """The papers' Inception-v3 from a local file: ``(pool features (N, 2048), unbiased logits
    (N, 1008))`` modules taking uint8 images of any size (resized inside to 299 x 299 with
    TF1's bilinear filter, as torch-fidelity and the papers' TF code).

    Args:
        path: ``weights-inception-2015-12-05-6726825d.pth`` (torch-fidelity's format).
    """
    from torchmetrics.image.fid import NoTrainInceptionV3

    path = check_inception_weights(path)
    net = NoTrainInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"], str(path))
    return Select(net, 0, 2048), Select(net, 1, 1008)


def check_inception_weights(path: str | Path | None) -> Path:
    """``path`` once it is known to hold torch-fidelity's Inception-v3 state dict: a
    :class:`MissingWeightsError` when it is not there, a ValueError when it holds something
    else (a text file, another network)."""
    path = require(path, "--inception-weights", "inception")
    # torch-fidelity reads the file with weights_only=False: check first that it is plain
    # tensors (a file that unpickles anything else is refused here, not run).
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable file gets the same answer
        raise ValueError(f"--inception-weights {path} is not a PyTorch state dict of tensors: it "
                         f"needs {PUBLISHED['inception']}") from None  # fmt: skip
    if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise ValueError(f"--inception-weights {path} is not torch-fidelity's Inception-v3 "
                         f"state dict: it needs {PUBLISHED['inception']}")  # fmt: skip
    return path


def _projected(output) -> torch.Tensor:
    """transformers >= 5 returns CLIP's projected features inside an output object, which
    torchmetrics (<= 1.9) expects as a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def load_clip(folder: str | Path | None) -> Callable[[], tuple[nn.Module, object]]:
    """What ``CLIPScore(model_name_or_path=...)`` takes to load a CLIP model from ``folder``
    (transformers' ``CLIPModel`` and ``CLIPProcessor``, local files only)."""
    folder = require(folder, "--clip-model", "clip", folder=True)
    from transformers import CLIPModel, CLIPProcessor

    class TensorCLIP(CLIPModel):
        def get_image_features(self, *args, **kwargs) -> torch.Tensor:
            return _projected(super().get_image_features(*args, **kwargs))

        def get_text_features(self, *args, **kwargs) -> torch.Tensor:
            return _projected(super().get_text_features(*args, **kwargs))

    def load():
        try:
            return (TensorCLIP.from_pretrained(folder, local_files_only=True),
                    CLIPProcessor.from_pretrained(folder, local_files_only=True))  # fmt: skip
        except OSError as err:
            raise MissingWeightsError(
                f"--clip-model {folder} is not a complete CLIP model folder ({err}); it needs "
                f"{PUBLISHED['clip']}"
            ) from None

    return load


# ------------------------------------------------------------------------ R-precision
class EncoderPair(TypingProtocol):
    """An image encoder and a text encoder into one space, for :func:`r_precision`.

    ``name`` is recorded with the score; ``comparable`` says whether the papers used this pair
    (AttnGAN's DAMSM) or not (t2igan's own encoders): scores of the latter are not comparable
    with the papers'.
    """

    name: str
    comparable: bool

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(N, d) features of images in [-1, 1], shape (N, 3, H, W)."""

    def encode_texts(self, captions: list[str]) -> torch.Tensor:
        """(N, d) features of N captions."""


def r_precision(
    image_features: torch.Tensor, text_features: torch.Tensor, runs: int = 10,
    candidates: int = 100, seed: int = 0,
) -> tuple[float, float]:  # fmt: skip
    """R-precision as AttnGAN defines it: each image's own caption (row ``i`` of
    ``text_features``) among ``candidates - 1`` captions of other images drawn at random; the
    fraction ranked first by cosine similarity. Returns (mean, standard deviation) over
    ``runs`` runs with their own draws.

    Args:
        image_features: (N, d) features of the generated images.
        text_features: (N, d) features of the caption each image was generated from.
        runs: independent runs (AttnGAN: 10).
        candidates: captions ranked per image (AttnGAN: 100, the true one and 99 mismatched).
        seed: seed of the draws.
    """
    n = len(image_features)
    if len(text_features) != n:
        raise ValueError(f"{n} image features but {len(text_features)} text features")
    if n < candidates:
        raise ValueError(f"R-precision ranks {candidates} captions per image: it needs at "
                         f"least {candidates} images, got {n}")  # fmt: skip
    img = F.normalize(image_features.float(), dim=1)
    txt = F.normalize(text_features.float(), dim=1)
    g = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(runs):
        # (N, candidates - 1) other images' indices: j in [0, N-1) skipping i itself
        others = torch.randint(n - 1, (n, candidates - 1), generator=g)
        others += (others >= torch.arange(n)[:, None]).long()
        pool = torch.cat([torch.arange(n)[:, None], others], 1)  # (N, candidates), true first
        sims = (img[:, None, :] * txt[pool]).sum(-1)  # (N, candidates)
        # ties count against the true caption (a constant encoder scores 0, not 1)
        top = sims[:, 0] > sims[:, 1:].max(1).values
        scores.append(top.float().mean().item())
    t = torch.tensor(scores)
    return t.mean().item(), t.std(unbiased=False).item()


# --------------------------------------------------------------------------- protocol
@dataclass(frozen=True)
class EvalProtocol:
    """How the images scored are chosen; see docs/evaluation.md for each dataset.

    Args:
        num_samples: generated images (StackGAN: 30,000 for CUB and Oxford-102).
        split: the split whose captions condition them, each caption in turn: sample ``k`` is
            caption ``k // N mod C`` of image ``k mod N`` (N images, C captions each).
        is_splits: splits of the samples for the Inception score's mean and spread (10).
        kid_subset: subset size of KID (its mean and spread are over 100 subsets).
        r_precision_runs: runs of R-precision.
        r_precision_candidates: captions ranked per image.
        seed: seed of the noise.
    """

    num_samples: int
    split: str = "test"
    is_splits: int = 10
    kid_subset: int = 1000
    r_precision_runs: int = 10
    r_precision_candidates: int = 100
    seed: int = 0
    real_images: str = "the split's images, centre crop at the model's image size, no flip"
    inception_input: str = "uint8 images resized to 299 x 299 inside the extractor (TF1 bilinear)"


#: The pinned protocol of each dataset (docs/evaluation.md says where it meets each paper's).
PROTOCOLS = {
    "cub": EvalProtocol(num_samples=30_000),
    "flowers": EvalProtocol(num_samples=30_000),
    "mhp": EvalProtocol(num_samples=30_000),
    "port-hdf5": EvalProtocol(num_samples=30_000),
    # synthetic test split: 512 images x 6 captions; 3,072 is each caption once
    "synthetic": EvalProtocol(num_samples=3_072),
}


def protocol_record(protocol: EvalProtocol, dataset: str, overridden: dict) -> dict:
    """The protocol as written in the results, with what the command line changed."""
    return {"dataset": dataset, **asdict(protocol), "overridden": overridden,
            "follows_protocol": not overridden}  # fmt: skip
