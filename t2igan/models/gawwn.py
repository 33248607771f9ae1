"""GAWWN: Reed et al., "Learning What and Where to Draw", NIPS 2016 (arXiv:1610.02454).

Text says *what* to draw, a bounding box (:class:`GAWWNBox`) or a set of part keypoints
(:class:`GAWWNKeypoints`) says *where*. The networks are those of the authors' Torch code
(reedscot/nips2016 ``main_cub_bbox.lua`` and ``main_cub_keypoints.lua``, architectures.md
sections 2.3 and 2.4); where the code and the paper differ (section 2.7) the code is followed:

* box G: the local pathway sees only ``[z, t]`` (not the paper's "coarse structure" vector); the
  STN-pasted text map, reduced to a vector, feeds the global pathway only.
* box D: the global text map is warped with the *crop* transform (not the inverse), so for a box
  inside the image it is the constant text map: D's global text carries no box mask. The local
  (region) crop is D's only localisation signal. One box per image (``num_elt = 1``, the script's).
* keypoint G: the local pathway replicates the ``[z, t]`` vector over the M x M grid (no
  deconvolution) and multiplies it by the keypoint mask, then one 3x3 deconvolution.
* D's local and global vectors are concatenated, then Linear + BN + LeakyReLU + Linear (the
  paper: "combined additively"); the mask is ``clamp(sum_k maps, 0, 1)`` (the paper: max over k,
  the same for one-hot maps).
* Convolutions and linear layers have biases (Torch's default), unlike the icml2016 networks.

Training (architectures.md 2.1) is GAN-CLS with the authors' *wrong text*: the batch's text
vectors randomly permuted (a sample may draw its own), not a real image of another class:
``L_D = BCE(D(x, l, t), 1) + 0.5 BCE(D(x, l, t_shuf), 0) + 0.5 BCE(D(G(z, t, l), l, t), 0)``,
``L_G = BCE(D(G(z, t, l), l, t), 1)``. The Lua G step re-uses D's output of the fake pass; here G
takes a normal step (fresh forward, same batch). Adam 2e-4 / 0.5, learning rate halved at the
start of epochs 100, 200, ... counted from 1, batch 16, 4 captions averaged, 150 load size with a
random 128 crop and a flip (``experiments/gawwn_*.yaml``).

Spatial transformer (architectures.md 2.2): the authors' stnbhwd uses (y, x) row order and grids
with aligned corners. :func:`box_theta` builds the same transform in ``affine_grid``'s (x, y)
order with ``align_corners=True`` and zeros outside, so :func:`crop_box` and :func:`paste_box`
reproduce the Lua ``AffineGridGeneratorBHWD`` + ``BilinearSamplerBHWD`` (crop) and ``CropInvert``
(paste) exactly.

Sizes: the authors' M = 16 maps for 128 x 128 images; at 64 x 64 the maps are 8 x 8 (their
keypoint script accepts ``keypoint_dim=8``; their box script has no 64 px variant). An M = 8
network drops the 8 x 8 stage of each M = 16 pathway that runs between 4 x 4 and M x M (it goes
straight from the 4 x 4 widths to the M x M widths); everything else is unchanged.

MHP (humans, ``main_mhp.lua``, architectures.md 2.5) is :class:`GAWWNKeypoints` with 17 parts,
``g_variant="mhp"`` (the local pathway's Linear without BatchNorm and ReLU, then a residual
bottleneck after its deconvolution), ``d_activation="elu"``, ``d_dropout=0.2`` (after D's global
vector) and ``fake_score_threshold=0.2`` (D updated only while the running mean of D(fake) is
above it; the Lua updates that mean twice per batch from the D step's output, here once from
D's step and once from G's): ``experiments/gawwn_mhp.yaml``. The keypoint generator G_k is in
:mod:`t2igan.models.gawwn_keypoints`.

Flips: the data layer mirrors boxes and keypoints with the image and swaps left and right parts
(``left eye`` <-> ``right eye`` ...). The authors' loader mirrors x but does not swap the part
channels, so there a flipped left eye stays in the left-eye map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from t2igan.data.dataset import flip_permutation
from t2igan.losses import bce
from t2igan.models.base import PART_NAMES, TextToImageGAN, part_names

#: Keypoints with visibility above this are drawn into the maps (the Lua loader's threshold).
VISIBLE = 0.1
#: Smallest box side (fraction of the image) the transform divides by; a data box the random crop
#: cut to nothing would otherwise make the paste transform infinite.
_MIN_SIDE = 1e-3


# ------------------------------------------------------------------ spatial transformer
def box_theta(boxes: torch.Tensor) -> torch.Tensor:
    """The crop transform of normalised (x, y, w, h) boxes, (B, 4) -> (B, 2, 3), in
    ``affine_grid``'s (x, y) order: output point (u, v) in [-1, 1]^2 samples the input at
    ``(w u + t_x, h v + t_y)`` with ``t = 2 (centre) - 1`` (the Lua loader's
    ``[[sY, 0, tY], [0, sX, tX]]`` with the rows swapped)."""
    x, y, w, h = boxes.float().unbind(-1)
    w, h = w.clamp(min=_MIN_SIDE), h.clamp(min=_MIN_SIDE)
    zero = torch.zeros_like(x)
    return torch.stack([torch.stack([w, zero, 2 * (x + w / 2) - 1], -1),
                        torch.stack([zero, h, 2 * (y + h / 2) - 1], -1)], 1)  # fmt: skip


def invert_theta(theta: torch.Tensor) -> torch.Tensor:
    """``CropInvert``: the paste transform ``[[1/s, -t/s]]`` per axis of a crop transform."""
    s = torch.stack([theta[:, 0, 0], theta[:, 1, 1]], 1)  # (B, 2)
    t = theta[:, :, 2]
    zero = torch.zeros_like(s[:, 0])
    return torch.stack([torch.stack([1 / s[:, 0], zero, -t[:, 0] / s[:, 0]], -1),
                        torch.stack([zero, 1 / s[:, 1], -t[:, 1] / s[:, 1]], -1)], 1)  # fmt: skip


def _warp(maps: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    grid = F.affine_grid(theta.to(maps), [len(maps), maps.shape[1], size, size], align_corners=True)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def crop_box(maps: torch.Tensor, boxes: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """The box region of ``maps`` (B, C, M, M) resized to (B, C, size, size) (default M)."""
    return _warp(maps, box_theta(boxes), size or maps.shape[-1])


def paste_box(maps: torch.Tensor, boxes: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """``maps`` (B, C, M, M) warped *into* each box of a (B, C, size, size) map, zeros outside."""
    return _warp(maps, invert_theta(box_theta(boxes)), size or maps.shape[-1])


def keypoint_maps(keypoints: torch.Tensor, size: int, soft: bool = False) -> torch.Tensor:
    """One-hot part maps (B, K, size, size) of normalised keypoints (B, K, 3) = (x, y, visible):
    a visible part (visibility > :data:`VISIBLE`) sets the one cell at column
    ``min(size, max(1, round(x size)))`` and row ``... round(y size)`` counted from 1, as the Lua
    loader does (so a part on the image border lands in the border cell); invisible parts leave
    their map empty.

    ``soft`` (opt-in, not the authors'): the part's unit weight is split bilinearly between the
    four cells around its position on the same grid (column ``x size`` counted from 1, clamped to
    the border cells), so the maps say where inside its cell a part is; the largest weight is
    in the one-hot cell."""
    if soft:
        return _soft_keypoint_maps(keypoints, size)
    b, k, _ = keypoints.shape
    cell = torch.floor(keypoints[..., :2].float() * size + 0.5).clamp(1, size).long() - 1
    visible = keypoints[..., 2] > VISIBLE  # (B, K)
    maps = torch.zeros(b, k, size * size, device=keypoints.device)
    flat = cell[..., 1] * size + cell[..., 0]  # (B, K) row-major cell index
    maps.scatter_(2, flat[..., None], visible[..., None].float())
    return maps.view(b, k, size, size)


def _soft_keypoint_maps(keypoints: torch.Tensor, size: int) -> torch.Tensor:
    b, k, _ = keypoints.shape
    pos = (keypoints[..., :2].float() * size - 1).clamp(0, size - 1)  # 0-based cell, continuous
    lo = pos.floor().clamp(max=size - 2)
    frac = pos - lo  # (B, K, 2)
    wx = torch.stack([1 - frac[..., 0], frac[..., 0]], -1)  # (B, K, 2): columns lo, lo + 1
    wy = torch.stack([1 - frac[..., 1], frac[..., 1]], -1)
    visible = (keypoints[..., 2] > VISIBLE).float()[..., None, None]
    weights = wy[..., :, None] * wx[..., None, :] * visible  # (B, K, 2 rows, 2 columns)
    lo = lo.long()
    rows = lo[..., 1, None] + torch.arange(2, device=keypoints.device)  # (B, K, 2)
    cols = lo[..., 0, None] + torch.arange(2, device=keypoints.device)
    flat = (rows[..., :, None] * size + cols[..., None, :]).flatten(2)  # (B, K, 4)
    maps = torch.zeros(b, k, size * size, device=keypoints.device)
    maps.scatter_add_(2, flat, weights.flatten(2))
    return maps.view(b, k, size, size)


def keypoint_mask(maps: torch.Tensor) -> torch.Tensor:
    """``clamp(sum_k maps, 0, 1)``: (B, K, M, M) -> (B, 1, M, M)."""
    return maps.sum(1, keepdim=True).clamp(0, 1)


# ----------------------------------------------------------------------- building blocks
def _map_size(image_size: int, map_size: int | None = None) -> int:
    """M for an image size: ``image_size // 8``, or ``map_size`` when given: 8 or 16, one eighth
    or one quarter of the image side (16 x 16 maps at 64 x 64: ``main_mhp.lua``'s
    ``fineSize=64``)."""
    if image_size not in (64, 128):
        raise ValueError(
            f"GAWWN draws 128 x 128 images (the paper's, M = 16 maps) or 64 x 64 (M = 8), got "
            f"image_size {image_size}: set --data.image_size 128 or 64"
        )
    m = map_size or image_size // 8
    if m not in (8, 16) or image_size // m not in (4, 8):
        raise ValueError(
            f"map_size {map_size} with image_size {image_size}: the maps are 8 x 8 or 16 x 16 and "
            f"one eighth or one quarter of the image side (128: 16; 64: 8 or 16)"
        )
    return m


def _widths(widths: tuple[int, int, int], m: int) -> list[int]:
    """A pathway's widths at its three sizes between 4 x 4 and M x M when M = 16 (given in the
    order the pathway runs: 16, 8, 4 or 4, 8, 16), or at its two sizes when M = 8 (the middle,
    8 x 8 stage of the M = 16 network dropped)."""
    return list(widths) if m == 16 else [widths[0], widths[2]]


#: D's activations: the authors' LeakyReLU(0.2), or ELU (their MHP script's ``activationD=elu``).
D_ACTIVATIONS = ("leaky_relu", "elu")


def _act(name: str) -> nn.Module:
    """``relu``, ``leaky_relu`` (slope 0.2, the Lua code's) or ``elu`` (alpha 1, Torch's)."""
    if name not in ("relu", *D_ACTIVATIONS):
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(D_ACTIVATIONS)}")
    return {"relu": nn.ReLU, "elu": nn.ELU}.get(name, lambda: nn.LeakyReLU(0.2))()


def _bn_act(c: int, act: str) -> list[nn.Module]:
    return [nn.BatchNorm2d(c), _act(act)]


def _down_to_4(c_in: int, widths: list[int], act: str) -> list[nn.Module]:
    """Stride-2 convolutions + BN + act from M x M (``c_in``) to 4 x 4, widths after each."""
    layers: list[nn.Module] = []
    for c in widths:
        layers += [nn.Conv2d(c_in, c, 4, 2, 1), *_bn_act(c, act)]
        c_in = c
    return layers


def _up_from_1(c_in: int, widths: list[int]) -> list[nn.Module]:
    """ConvT k4 from 1 x 1 to 4 x 4, then stride-2 ConvT to M x M, each + BN + ReLU."""
    layers: list[nn.Module] = []
    for i, c in enumerate(widths):
        layers += [nn.ConvTranspose2d(c_in, c, 4, 1 if i == 0 else 2, 0 if i == 0 else 1),
                   *_bn_act(c, "relu")]  # fmt: skip
        c_in = c
    return layers


class Bottleneck(nn.Module):
    """``x + [1x1 C->C/4, BN, ReLU, 3x3, BN, ReLU, 3x3 C/4->C, BN](x)`` (no activation after
    the sum: the Lua code adds its ReLU outside)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(c, c // 4, 1), *_bn_act(c // 4, "relu"),
            nn.Conv2d(c // 4, c // 4, 3, 1, 1), *_bn_act(c // 4, "relu"),
            nn.Conv2d(c // 4, c, 3, 1, 1), nn.BatchNorm2d(c),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


def _to_image(c_in: int, widths: list[int], ratio: int = 8) -> nn.Sequential:
    """Stride-2 ConvT + BN + ReLU through ``widths``, then a stride-2 ConvT to RGB and Tanh:
    M x M -> 8 M (``ratio`` 4: the last of ``widths`` dropped, M x M -> 4 M)."""
    layers: list[nn.Module] = []
    for c in widths if ratio == 8 else widths[:-1]:
        layers += [nn.ConvTranspose2d(c_in, c, 4, 2, 1), *_bn_act(c, "relu")]
        c_in = c
    return nn.Sequential(*layers, nn.ConvTranspose2d(c_in, 3, 4, 2, 1), nn.Tanh())


def _spread(v: torch.Tensor, m: int) -> torch.Tensor:
    """(B, C) -> (B, C, m, m): the vector replicated over an m x m grid."""
    return v[:, :, None, None].expand(-1, -1, m, m)


def image_features(ndf: int, act: str = "leaky_relu", ratio: int = 8) -> nn.Sequential:
    """``imgGlobalD``: (B, 3, 8M, 8M) -> (B, 2 ndf, M, M), shared by D's two pathways
    (``ratio`` 4: from 4M x 4M, the second ndf -> ndf convolution dropped)."""
    second = [nn.Conv2d(ndf, ndf, 4, 2, 1), _act(act)] if ratio == 8 else []
    return nn.Sequential(
        nn.Conv2d(3, ndf, 4, 2, 1), _act(act), *second,
        nn.Conv2d(ndf, 2 * ndf, 4, 2, 1), *_bn_act(2 * ndf, act),
        nn.Conv2d(2 * ndf, 2 * ndf, 3, 1, 1), *_bn_act(2 * ndf, act),
    )  # fmt: skip


class _Discriminator(nn.Module):
    """What both GAWWN discriminators share: the image trunk, the text projection
    ``prep_txt_d``, the global image path to 4 x 4 and the head on [local, global] vectors.
    ``act`` is every activation of D (the authors': LeakyReLU 0.2; their MHP script: ELU)."""

    def __init__(self, text_dim: int, proj_dim: int, ndf: int, m: int, head_norm: bool = True,
                 act: str = "leaky_relu", ratio: int = 8):  # fmt: skip
        super().__init__()
        self.m, self.act = m, act
        self.image = image_features(ndf, act, ratio)
        self.project = nn.Sequential(nn.Linear(text_dim, proj_dim), _act(act))
        # convGlobalD after the trunk: M x M -> 4 x 4
        self.global_image = nn.Sequential(
            *_down_to_4(2 * ndf, _widths((2 * ndf, 4 * ndf, 8 * ndf), m)[1:], act)
        )
        norm = nn.BatchNorm1d(ndf) if head_norm else nn.Identity()
        self.local_act = _act(act)
        self.head = nn.Sequential(nn.Linear(2 * ndf, ndf), norm, _act(act), nn.Linear(ndf, 1))

    def global_head(self, c_in: int, ndf: int, dropout: float = 0.0) -> nn.Sequential:
        """``globalD`` after the concatenation: 1x1 conv to 4 ndf, 4x4 conv to ndf (B, ndf),
        then (``dropout`` > 0, the MHP script's) Dropout."""
        drop = [nn.Dropout(dropout)] if dropout > 0 else []
        return nn.Sequential(
            nn.Conv2d(c_in, 4 * ndf, 1), *_bn_act(4 * ndf, self.act),
            nn.Conv2d(4 * ndf, ndf, 4), *_bn_act(ndf, self.act), nn.Flatten(), *drop,
        )  # fmt: skip

    def local_tail(self, c_in: int, ndf: int) -> nn.Sequential:
        """``regionD``'s 1x1 convolutions; the spatial mean and activation follow in forward."""
        return nn.Sequential(nn.Conv2d(c_in, 2 * ndf, 1), *_bn_act(2 * ndf, self.act),
                             nn.Conv2d(2 * ndf, ndf, 1))  # fmt: skip

    def score(self, local: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        """Logits (B,) of the local (B, ndf, M, M) map (before its mean) and global vectors."""
        local = self.local_act(local.mean((2, 3)))
        return self.head(torch.cat([local, glob], 1)).flatten()


# ------------------------------------------------------------------------- box networks
class BoxGenerator(nn.Module):
    """G(z, t, box) of ``main_cub_bbox.lua`` (architectures.md 2.3), one box per image.

    Args:
        z_dim: noise size.
        text_dim: text embedding size.
        ngf: width (authors': 128).
        image_size: 128 (M = 16) or 64 (M = 8).
    """

    def __init__(self, z_dim=100, text_dim=1024, ngf=128, image_size=128) -> None:
        super().__init__()
        self.m = m = _map_size(image_size)
        c = 4 * ngf
        self.prep_text = nn.Linear(text_dim, c)  # prep_txt_g, used by both pathways
        self.prep_noise = nn.Linear(z_dim, c)  # combiner_local's
        self.global_noise = nn.Linear(z_dim, c)  # combiner_global's
        # txtGlobalG after the paste: M x M -> 1 x 1, width 4 ngf throughout
        self.text_global = nn.Sequential(
            *_down_to_4(c, _widths((c, c, c), m)[1:], "relu"), nn.Conv2d(c, c, 4),
            *_bn_act(c, "relu"),
        )  # fmt: skip
        widths = _widths((8 * ngf, 4 * ngf, 2 * ngf), m)  # at 4, (8,) M
        self.global_path = nn.Sequential(*_up_from_1(8 * ngf, widths))  # globalG
        # convG: ConvT 1 -> 4 + BN, then per stage a bottleneck, ReLU, stride-2 ConvT + BN
        layers: list[nn.Module] = []
        c_in = 8 * ngf
        for i, w in enumerate(widths):
            layers += [nn.ConvTranspose2d(c_in, w, 4, 1 if i == 0 else 2, 0 if i == 0 else 1),
                       nn.BatchNorm2d(w)]  # fmt: skip
            if i < len(widths) - 1:
                layers += [Bottleneck(w), nn.ReLU()]
            c_in = w
        self.local_path = nn.Sequential(*layers)
        self.merge = nn.Sequential(
            nn.ConvTranspose2d(4 * ngf, 2 * ngf, 3, 1, 1), *_bn_act(2 * ngf, "relu"),
            *_to_image(2 * ngf, [ngf, 32]),
        )  # fmt: skip

    def forward(self, z: torch.Tensor, text_emb: torch.Tensor, boxes: torch.Tensor):
        """(B, z_dim), (B, text_dim), (B, 4) normalised (x, y, w, h) -> (B, 3, 8M, 8M)."""
        m = self.m
        text = self.prep_text(text_emb)  # (B, 4 ngf)
        text_map = paste_box(_spread(text, m), boxes)  # (B, 4 ngf, M, M), zeros outside the box
        coarse = self.text_global(text_map).flatten(1)  # (B, 4 ngf)
        g = F.relu(torch.cat([F.relu(self.global_noise(z)), coarse], 1))  # (B, 8 ngf)
        glob = self.global_path(g[:, :, None, None])  # (B, 2 ngf, M, M)
        local = F.relu(torch.cat([self.prep_noise(z), text], 1))  # (B, 8 ngf)
        local = self.local_path(local[:, :, None, None])  # (B, 2 ngf, M, M)
        local = F.relu(paste_box(local, boxes))  # mean over the one element: itself
        return self.merge(torch.cat([glob, local], 1))


class BoxDiscriminator(_Discriminator):
    """D(x, t, box) -> logit of ``main_cub_bbox.lua`` (architectures.md 2.3).

    Args:
        text_dim: text embedding size.
        proj_dim: text projection size (``nt``, authors': 128).
        ndf: width (authors' script: 128).
        image_size: 128 (M = 16) or 64 (M = 8).
        head_norm: BatchNorm1d in the head, as the authors' code (see ``GAWWNBox``).
    """

    def __init__(self, text_dim=1024, proj_dim=128, ndf=128, image_size=128, head_norm=True):
        m = _map_size(image_size)
        super().__init__(text_dim, proj_dim, ndf, m, head_norm)
        self.local_in = nn.Sequential(nn.Conv2d(2 * ndf + proj_dim, 2 * ndf, 3, 1, 1),
                                      *_bn_act(2 * ndf, "leaky_relu"))  # fmt: skip
        self.local = self.local_tail(2 * ndf, ndf)
        # txtGlobalD: the text map after the (crop) warp, M x M -> 4 x 4
        self.global_text = nn.Sequential(
            *_down_to_4(proj_dim, _widths((proj_dim, 4 * ndf, ndf), m)[1:], "relu")
        )
        self.global_out = self.global_head(9 * ndf, ndf)

    def forward(self, images: torch.Tensor, text_emb: torch.Tensor, boxes: torch.Tensor):
        m = self.m
        feat = self.image(images)  # (B, 2 ndf, M, M)
        text = _spread(self.project(text_emb), m)  # (B, nt, M, M)
        region = crop_box(self.local_in(torch.cat([feat, text], 1)), boxes)  # the box, M x M
        glob = torch.cat([self.global_image(feat), self.global_text(crop_box(text, boxes))], 1)
        return self.score(self.local(region), self.global_out(glob))


# -------------------------------------------------------------------- keypoint networks
#: The keypoint generator's variants: the authors' CUB script, or their MHP script.
G_VARIANTS = ("cub", "mhp")


class KeypointGenerator(nn.Module):
    """G(z, t, keypoint maps) of ``main_cub_keypoints.lua`` (architectures.md 2.4).

    Args:
        z_dim: noise size.
        text_dim: text embedding size.
        ngf: width (authors': 128).
        num_parts: K, keypoint maps (CUB: 15).
        image_size: 128 (M = 16) or 64 (M = 8).
        map_size: M, unset for ``image_size // 8``, or 16 at 64 x 64 (see GAWWNKeypoints).
        variant: ``cub`` (``main_cub_keypoints.lua``) or ``mhp`` (``main_mhp.lua``: the local
            pathway's Linear has no BatchNorm and ReLU, and a residual bottleneck and ReLU
            follow its 3x3 deconvolution).
    """

    def __init__(self, z_dim=100, text_dim=1024, ngf=128, num_parts=15, image_size=128,
                 variant: str = "cub", map_size: int | None = None) -> None:  # fmt: skip
        super().__init__()
        if variant not in G_VARIANTS:
            raise ValueError(f"unknown generator variant {variant!r}; choose cub or mhp")
        self.m = m = _map_size(image_size, map_size)
        self.prep_noise = nn.Linear(z_dim, 4 * ngf)  # noise_txt: one module, both pathways
        self.prep_text = nn.Linear(text_dim, 4 * ngf)
        vec = [nn.BatchNorm1d(4 * ngf), nn.ReLU()] if variant == "cub" else []
        self.local_vec = nn.Sequential(nn.Linear(8 * ngf, 4 * ngf), *vec)
        extra = [Bottleneck(4 * ngf), nn.ReLU()] if variant == "mhp" else []
        self.local_out = nn.Sequential(nn.ConvTranspose2d(4 * ngf, 4 * ngf, 3, 1, 1),
                                       *_bn_act(4 * ngf, "relu"), *extra)  # fmt: skip
        self.global_vec = nn.Sequential(nn.Linear(8 * ngf, 4 * ngf), nn.BatchNorm1d(4 * ngf),
                                        nn.ReLU())  # fmt: skip
        # prep_loc_global: maps M x M -> 1 x 1
        self.global_maps = nn.Sequential(
            *_down_to_4(num_parts, _widths((num_parts, ngf, 2 * ngf), m)[1:], "relu"),
            nn.Conv2d(2 * ngf, 4 * ngf, 4), *_bn_act(4 * ngf, "relu"),
        )  # fmt: skip
        self.global_path = nn.Sequential(*_up_from_1(8 * ngf, _widths((4 * ngf, 2 * ngf, ngf), m)))
        self.merge = nn.Sequential(
            nn.ConvTranspose2d(5 * ngf + num_parts, 4 * ngf, 3, 1, 1), *_bn_act(4 * ngf, "relu"),
            nn.ConvTranspose2d(4 * ngf, 4 * ngf, 3, 1, 1), nn.BatchNorm2d(4 * ngf),
            Bottleneck(4 * ngf), nn.ReLU(),
            *_to_image(4 * ngf, [2 * ngf, ngf], image_size // m),
        )  # fmt: skip

    def forward(self, z: torch.Tensor, text_emb: torch.Tensor, maps: torch.Tensor):
        """(B, z_dim), (B, text_dim), (B, K, M, M) one-hot maps -> (B, 3, S, S)."""
        nt = F.relu(torch.cat([self.prep_noise(z), self.prep_text(text_emb)], 1))  # (B, 8 ngf)
        local = _spread(self.local_vec(nt), self.m) * keypoint_mask(maps)  # gating
        local = self.local_out(local)  # (B, 4 ngf, M, M)
        g = torch.cat([self.global_vec(nt), self.global_maps(maps).flatten(1)], 1)
        glob = self.global_path(g[:, :, None, None])  # (B, ngf, M, M)
        return self.merge(torch.cat([glob, local, maps], 1))


class KeypointDiscriminator(_Discriminator):
    """D(x, t, keypoint maps) -> logit of ``main_cub_keypoints.lua`` (architectures.md 2.4).

    Args:
        text_dim: text embedding size.
        proj_dim: text projection size (``nt``, authors': 128).
        ndf: width (authors' script: 128).
        num_parts: K (CUB: 15).
        image_size: 128 (M = 16) or 64 (M = 8).
        map_size: M, unset for ``image_size // 8``, or 16 at 64 x 64 (see GAWWNKeypoints).
        head_norm: BatchNorm1d in the head, as the authors' code (see ``GAWWNBox``).
        activation: ``leaky_relu`` (0.2; the CUB script) or ``elu`` (the MHP script).
        dropout: Dropout after the global pathway's vector (the MHP script: 0.2; CUB: none).
    """

    def __init__(self, text_dim=1024, proj_dim=128, ndf=128, num_parts=15, image_size=128,
                 head_norm=True, activation: str = "leaky_relu", dropout: float = 0.0,
                 map_size: int | None = None):  # fmt: skip
        m = _map_size(image_size, map_size)
        super().__init__(text_dim, proj_dim, ndf, m, head_norm, activation, image_size // m)
        self.local_in = nn.Sequential(nn.Conv2d(2 * ndf + proj_dim, 2 * ndf, 3, 1, 1),
                                      *_bn_act(2 * ndf, activation))  # fmt: skip
        self.local = self.local_tail(2 * ndf + num_parts, ndf)
        self.global_out = self.global_head(8 * ndf + proj_dim, ndf, dropout)

    def forward(self, images: torch.Tensor, text_emb: torch.Tensor, maps: torch.Tensor):
        feat = self.image(images)  # (B, 2 ndf, M, M)
        text = self.project(text_emb)  # (B, nt)
        local = self.local_in(torch.cat([feat, _spread(text, self.m)], 1)) * keypoint_mask(maps)
        region = self.local(torch.cat([local, maps], 1))
        glob = self.global_image(feat)  # (B, 8 ndf, 4, 4)
        glob = self.global_out(torch.cat([glob, _spread(text, glob.shape[-1])], 1))
        return self.score(region, glob)


def wrong_location(where: torch.Tensor) -> torch.Tensor:
    """The batch's locations (boxes, keypoints or their maps) rolled by one: every real image is paired
    with another image's location, a mismatch D learns to reject like the wrong text (opt-in
    ``wrong_location_weight``; not in the paper or the authors' code). Rolling, not shuffling,
    so no image keeps its own location."""
    return where.roll(1, 0)


SHIFT = 0.15  # a fraction of the image side: just beyond the benchmark's 0.1 tolerance


def shifted_location(where: torch.Tensor, distance: float = SHIFT) -> torch.Tensor:
    """Each image's own location moved by ``distance`` (a fraction of the image side) in a random
    direction: boxes (B, 4) keep their size, keypoints (B, K, 3) move together and a part moved
    off the image becomes invisible. Real images with it are near misses D learns to reject
    (opt-in ``shifted_location_weight``; not in the paper or the authors' code), where the rolled
    :func:`wrong_location` is mostly far off."""
    angle = torch.rand(len(where), device=where.device) * (2 * math.pi)
    step = distance * torch.stack([angle.cos(), angle.sin()], -1)  # (B, 2)
    if where.dim() == 2:
        return torch.cat([where[:, :2] + step, where[:, 2:]], 1)
    moved = where[..., :2] + step[:, None]
    inside = ((moved >= 0) & (moved <= 1)).all(-1)
    return torch.cat([moved, (where[..., 2] * inside)[..., None]], -1)


def mirrored_location(keypoints: torch.Tensor, swap: list[int]) -> torch.Tensor:
    """Each bird's own keypoints (B, K, 3) mirrored about the mean x of its visible parts, with
    left and right parts swapped (``swap``, :func:`t2igan.data.dataset.flip_permutation`): the
    same bird in the same place, facing the other way. Real images with it are negatives for
    the opt-in ``mirrored_location_weight`` (not in the paper or the authors' code); a part
    mirrored off the image becomes invisible."""
    visible = (keypoints[..., 2] > VISIBLE).float()
    centre = (keypoints[..., 0] * visible).sum(1) / visible.sum(1).clamp(min=1)  # (B,)
    out = keypoints[:, swap].clone()
    out[..., 0] = 2 * centre[:, None] - out[..., 0]
    out[..., 2] *= ((out[..., 0] >= 0) & (out[..., 0] <= 1)).float()
    return out


# ------------------------------------------------------------------------------ models
class _GAWWN(TextToImageGAN):
    """GAN-CLS training with the authors' wrong text, shared by both GAWWN models. A subclass
    sets ``takes`` and :meth:`condition` (the batch's boxes or keypoints as the networks'
    input)."""

    lr_decay_offset = 1  # `if epoch % decay_every == 0` at an epoch's start, as main_cls_int.lua

    def check_weights(self) -> None:
        """A weight out of range is an error, not silently off."""
        if not 0 <= self.hparams.cls_weight <= 1:
            raise ValueError(f"cls_weight must be in [0, 1], got {self.hparams.cls_weight}")
        for name in (
            "wrong_location_weight",
            "shifted_location_weight",
            "mirrored_location_weight",
        ):
            if self.hparams.get(name, 0) < 0:
                raise ValueError(
                    f"{name} must be >= 0 (0 turns its term off), got {self.hparams[name]}"
                )

    def condition(self, where: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def track_fake_score(self, fake_logits: torch.Tensor) -> None:
        """Follow D's scores of fakes (only the MHP setting of :class:`GAWWNKeypoints` does)."""

    def misplaced(self, where: torch.Tensor) -> dict[str, torch.Tensor]:
        """Wrong locations for the real images, by term name, for the opt-in terms whose weight
        is above 0 (a batch of one has no other image's location to roll in)."""
        out = {}
        if self.hparams.wrong_location_weight > 0 and len(where) > 1:
            out["wrong_location"] = wrong_location(where)
        if self.hparams.shifted_location_weight > 0:
            out["shifted_location"] = shifted_location(where)
        return out

    def generate(self, generator, text_emb, noise, **conditioning):
        return generator(noise, text_emb, self.condition(conditioning[self.takes[1]]))

    def discriminate(self, images, text_emb, **conditioning):
        where = self.check_conditioning(conditioning)[self.takes[1]]
        return self.discriminator(images, text_emb, self.condition(where))

    def _inputs(self, batch: dict):
        where = self.condition(self.conditioning_of(batch)[self.takes[1]])
        return batch["text_emb"], where

    def discriminator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        text, where = self._inputs(batch)
        images = batch["images"]
        fake = self.generator(self.sample_noise(len(text)), text, where).detach()
        wrong_text = text[torch.randperm(len(text), device=text.device)]  # the authors' t_shuf
        real = self.discriminator(images, text, where)
        wrong = self.discriminator(images, wrong_text, where)
        fake_logits = self.discriminator(fake, text, where)
        self.track_fake_score(fake_logits)
        w = self.hparams.cls_weight
        loss = bce(real, 1.0) + w * bce(wrong, 0.0) + (1 - w) * bce(fake_logits, 0.0)
        scores = [("real", real), ("wrong", wrong), ("fake", fake_logits)]
        raw = self.conditioning_of(batch)[self.takes[1]]
        for name, moved in self.misplaced(raw).items():  # opt-in, not the authors'
            logits = self.discriminator(images, text, self.condition(moved))
            loss = loss + self.hparams[f"{name}_weight"] * bce(logits, 0.0)
            scores.append((name, logits))
        logs = {f"train/d_{k}": torch.sigmoid(v.float()).mean() for k, v in scores}
        return loss, logs

    def generator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        text, where = self._inputs(batch)
        fake = self.generator(self.sample_noise(len(text)), text, where)
        fake_logits = self.discriminator(fake, text, where)
        self.track_fake_score(fake_logits)
        return bce(fake_logits, 1.0), {}


_TRAINING_ARGS = """
        d_head_norm: the BatchNorm1d of D's head (the authors' code: True). Real, wrong and
            fake batches pass D separately, so that BatchNorm gives each batch the same mean
            just before the last Linear and D learns slowly at first (docs/gawwn.md); False
            (not in the paper, opt-in) drops it.
        cls_weight: weight of the wrong-text term in D's loss; the fake term gets
            ``1 - cls_weight`` (authors': 0.5).
        wrong_location_weight: if above 0, D's loss adds this times ``BCE(D(x, another
            image's location, t), 0)``: real images with a mismatched location as negatives
            (not in the paper or the authors' code: 0, off).
        shifted_location_weight: if above 0, D's loss adds this times ``BCE(D(x, its own
            location moved by 0.15 of the image side, t), 0)`` (:func:`shifted_location`): near
            misses as negatives (not in the paper or the authors' code: 0, off).
        lr: Adam learning rate for G and D.
        beta1: Adam beta1.
        beta2: Adam beta2.
        lr_decay_every: the learning rate decays at the start of epochs ``lr_decay_every``,
            ``2 lr_decay_every``, ... counted from 1 (authors' code: 100).
        lr_decay: learning-rate factor at each decay (authors' code: 0.5).
        ema_decay: if set, keep an EMA of G with this decay and sample from it (not in the paper).
        text_encoder: set by the CLI from the data module (how captions were embedded)."""


class GAWWNBox(_GAWWN):
    """Bounding-box-conditional GAWWN (Reed et al. 2016, section 3.1; architectures.md 2.3).

    Samples take ``boxes`` (B, 4), normalised (x, y, w, h) with a top-left origin:
    ``model.sample(text_emb, noise, boxes=boxes)``.

    Args:
        text_dim: text embedding size (linked from the data module).
        image_size: 128 (the paper's) or 64 (linked from the data module).
        z_dim: noise size.
        proj_dim: D's text projection size (``nt``).
        ngf: generator width (authors': 128).
        ndf: discriminator width (authors' script: 128).
    """

    __doc__ += _TRAINING_ARGS
    takes = ("text", "boxes")

    def __init__(
        self,
        text_dim: int = 1024,
        image_size: int = 128,
        z_dim: int = 100,
        proj_dim: int = 128,
        ngf: int = 128,
        ndf: int = 128,
        d_head_norm: bool = True,
        cls_weight: float = 0.5,
        wrong_location_weight: float = 0.0,
        shifted_location_weight: float = 0.0,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        lr_decay_every: int = 100,
        lr_decay: float = 0.5,
        ema_decay: float | None = None,
        text_encoder: dict | None = None,
    ) -> None:
        super().__init__(
            text_dim=text_dim, image_size=image_size, z_dim=z_dim, lr=lr, beta1=beta1,
            beta2=beta2, lr_decay_every=lr_decay_every, lr_decay=lr_decay, ema_decay=ema_decay,
            text_encoder=text_encoder,
        )  # fmt: skip
        self.save_hyperparameters()
        self.check_weights()
        self.set_networks(
            BoxGenerator(z_dim, text_dim, ngf, image_size),
            BoxDiscriminator(text_dim, proj_dim, ndf, image_size, d_head_norm),
        )

    def condition(self, where: torch.Tensor) -> torch.Tensor:
        return where.float()


class GAWWNKeypoints(_GAWWN):
    """Keypoint-conditional GAWWN (Reed et al. 2016, section 3.2; architectures.md 2.4).

    Samples take ``keypoints`` (B, K, 3), normalised (x, y, visible) in the data set's part order
    (CUB's 15 parts); the one-hot maps are made inside the model (:func:`keypoint_maps`):
    ``model.sample(text_emb, noise, keypoints=keypoints)``.

    Args:
        text_dim: text embedding size (linked from the data module).
        image_size: 128 (the paper's, 16 x 16 maps) or 64 (8 x 8 maps).
        z_dim: noise size.
        proj_dim: D's text projection size (``nt``).
        ngf: generator width (authors': 128).
        ndf: discriminator width (authors' script: 128).
        num_parts: K, the number of parts (CUB: 15; MPII in GAWWN's form: 17).
        g_variant: ``cub`` (``main_cub_keypoints.lua``) or ``mhp`` (``main_mhp.lua``'s local
            pathway; see :class:`KeypointGenerator`).
        d_activation: D's activations: ``leaky_relu`` (CUB script) or ``elu`` (MHP script).
        d_dropout: Dropout after D's global vector (MHP script: 0.2; CUB: 0).
        fake_score_threshold: D is updated only while the running mean of D(fake) (decay 0.99,
            updated in D's and in G's step, from 0.5) is above this (MHP script: 0.2; CUB: 0,
            always). Its loss is computed either way, as in the Lua code.
        map_size: M, the keypoint maps' side: unset, ``image_size // 8`` (16 at 128, the
            paper's; 8 at 64, ``main_cub_keypoints.lua`` with ``keypoint_dim=8``). 16 at 64 x 64
            is ``main_mhp.lua``'s ``fineSize=64`` network (a map cell of 4 px instead of 8): G's
            last upsampling stage (ngf) and D's second convolution (ndf -> ndf) dropped.
        mirrored_location_weight: if above 0, D's loss adds this times ``BCE(D(x, its own
            keypoints mirrored about the bird's centre, left and right parts swapped, t), 0)``
            (:func:`mirrored_location`): the bird facing the other way (not in the paper or the
            authors' code: 0, off).
        soft_maps: split each part bilinearly between the four cells around it instead of the
            one-hot cell (:func:`keypoint_maps`; not the authors': False), so the maps carry
            sub-cell positions.
    """

    __doc__ += _TRAINING_ARGS
    takes = ("text", "keypoints")

    @property
    def part_names(self) -> tuple[str, ...]:
        """The names of the K keypoints, in order (CUB's 15 or MPII's 17)."""
        return part_names(self.num_parts)

    def __init__(
        self,
        text_dim: int = 1024,
        image_size: int = 128,
        z_dim: int = 100,
        proj_dim: int = 128,
        ngf: int = 128,
        ndf: int = 128,
        num_parts: int = 15,
        g_variant: str = "cub",
        d_activation: str = "leaky_relu",
        d_dropout: float = 0.0,
        fake_score_threshold: float = 0.0,
        d_head_norm: bool = True,
        map_size: int | None = None,
        soft_maps: bool = False,
        cls_weight: float = 0.5,
        wrong_location_weight: float = 0.0,
        shifted_location_weight: float = 0.0,
        mirrored_location_weight: float = 0.0,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        lr_decay_every: int = 100,
        lr_decay: float = 0.5,
        ema_decay: float | None = None,
        text_encoder: dict | None = None,
    ) -> None:
        super().__init__(
            text_dim=text_dim, image_size=image_size, z_dim=z_dim, lr=lr, beta1=beta1,
            beta2=beta2, lr_decay_every=lr_decay_every, lr_decay=lr_decay, ema_decay=ema_decay,
            text_encoder=text_encoder,
        )  # fmt: skip
        self.save_hyperparameters()
        self.check_weights()
        self.num_parts = num_parts
        self.map_size = _map_size(image_size, map_size)
        self.soft_maps = soft_maps
        if mirrored_location_weight > 0:
            if num_parts not in PART_NAMES:
                raise ValueError(
                    f"mirrored_location_weight needs sided part names: known for 15 (CUB) or "
                    f"17 (MPII) parts, not {num_parts}"
                )
            self.swap = flip_permutation(PART_NAMES[num_parts])
        self.fake_score_threshold = fake_score_threshold
        if fake_score_threshold > 0:  # the Lua tracker, kept in checkpoints for exact resume
            self.register_buffer("fake_score", torch.tensor(0.5))
        self.set_networks(
            KeypointGenerator(z_dim, text_dim, ngf, num_parts, image_size, g_variant,
                              self.map_size),
            KeypointDiscriminator(text_dim, proj_dim, ndf, num_parts, image_size, d_head_norm,
                                  d_activation, d_dropout, self.map_size),
        )  # fmt: skip

    def track_fake_score(self, fake_logits: torch.Tensor) -> None:
        """``fake_score = 0.99 fake_score + 0.01 mean D(fake)``, as ``main_mhp.lua``."""
        if self.fake_score_threshold > 0:
            score = torch.sigmoid(fake_logits.detach().float()).mean()
            self.fake_score.mul_(0.99).add_(0.01 * score)

    def misplaced(self, where: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().misplaced(where)
        if self.hparams.mirrored_location_weight > 0:
            out["mirrored_location"] = mirrored_location(where, self.swap)
        return out

    def update_discriminator(self) -> bool:
        if self.fake_score_threshold <= 0:
            return True
        update = bool(self.fake_score > self.fake_score_threshold)
        self.log("train/d_updated", float(update), batch_size=1)
        return update

    def condition(self, where: torch.Tensor) -> torch.Tensor:
        if where.dim() != 3 or where.shape[1:] != (self.num_parts, 3):
            raise ValueError(
                f"keypoints must be (B, {self.num_parts}, 3) normalised (x, y, visible), got "
                f"shape {tuple(where.shape)}"
            )
        return keypoint_maps(where, self.map_size, self.soft_maps)
