"""GAWWN: the spatial transformer, keypoint maps, both models, the location interface and
figures, and generate with boxes and keypoints."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from t2igan.callbacks import CaptionConsistency, SampleGrid, WhatGrid, WhereGrid
from t2igan.callbacks.location import draw_location, move_box, move_keypoints
from t2igan.cli.fit import cli
from t2igan.cli.generate import generate, generate_main
from t2igan.data import HashingEncoder
from t2igan.data.contract import CUB_PARTS
from t2igan.data.synthetic import make_example
from t2igan.metrics import box_iou, read_bird_layout
from t2igan.models import GANINTCLS, GAWWNBox, GAWWNKeypoints
from t2igan.models.gawwn import (
    box_theta,
    crop_box,
    keypoint_maps,
    keypoint_mask,
    mirrored_location,
    paste_box,
    shifted_location,
    wrong_location,
)

from .conftest import ROOT, SHARED_DATA, tiny_datamodule

REAL_CUB = SHARED_DATA / "birds" / "CUB_200_2011"

TINY = dict(image_size=64, ngf=4, ndf=4, proj_dim=8, z_dim=10)


# ------------------------------------------------------------------ spatial transformer
def test_box_theta_is_the_lua_transform_in_x_y_order():
    # Lua loader: A = [[sY, 0, tY], [0, sX, tX]] in (y, x) order; affine_grid wants (x, y).
    x, y, w, h = 0.1, 0.2, 0.5, 0.25
    s_x, s_y, t_x, t_y = w, h, 2 * ((x + w / 2) - 0.5), 2 * ((y + h / 2) - 0.5)
    lua = torch.tensor([[s_y, 0, t_y], [0, s_x, t_x]])
    ours = box_theta(torch.tensor([[x, y, w, h]]))[0]
    assert torch.allclose(ours, lua.flip(0)[:, [1, 0, 2]])


def test_paste_lands_in_the_box_and_zero_outside():
    # Aligned corners on 8 cells: cell i sits at u = -1 + 2 i / 7. The box [0.25, 0.75] pastes
    # the map where |u| <= 0.5 samples inside it, i.e. cells 2..5; cells 0, 1, 6, 7 get zeros.
    ones = torch.ones(1, 2, 8, 8)
    out = paste_box(ones, torch.tensor([[0.25, 0.25, 0.5, 0.5]]))
    expected = torch.zeros(8, 8)
    expected[2:6, 2:6] = 1
    assert torch.allclose(out[0, 0], expected, atol=1e-6) and torch.equal(out[0, 0], out[0, 1])
    # A box in the right half: columns 4..7 only, the map's left column lands at its left edge.
    cols = torch.arange(8.0).expand(1, 1, 8, 8)
    right = paste_box(cols, torch.tensor([[0.5, 0.0, 0.5, 1.0]]))[0, 0]
    assert (right[:, :4].abs() < 1e-6).all() and (right[:, 4:] > 0).all()
    assert right[0, 7] == pytest.approx(7.0) and right[0, 4] < right[0, 5] < right[0, 6]


def test_crop_of_a_known_map():
    # map value = column index; cropping x in [0.25, 0.75] samples columns 1.75 + 0.5 i
    # (i = 0..7: (0.5 u + 1) * 3.5 with u = -1 + 2 i / 7); the full height keeps the rows.
    cols = torch.arange(8.0).expand(1, 1, 8, 8)
    out = crop_box(cols, torch.tensor([[0.25, 0.0, 0.5, 1.0]]))[0, 0]
    assert torch.allclose(out, (1.75 + 0.5 * torch.arange(8.0)).expand(8, 8), atol=1e-5)
    rows = torch.arange(8.0)[:, None].expand(1, 1, 8, 8)
    same_rows = crop_box(rows, torch.tensor([[0.25, 0.0, 0.5, 1.0]]))[0, 0]
    assert torch.allclose(same_rows, rows[0, 0], atol=1e-5)


# -------------------------------------------------------------------------- keypoint maps
def test_keypoint_maps_hand_made_example():
    kp = torch.tensor([[[0.5, 0.25, 1.0],  # column round(2) = 2 -> index 1, row 1 -> index 0
                        [1.0, 1.0, 1.0],  # on the border: the last cell
                        [0.0, 0.0, 1.0],  # at the origin: max(1, 0) -> the first cell
                        [0.6, 0.6, 0.0],  # invisible
                        [0.6, 0.6, 0.05]]])  # below the Lua threshold 0.1  # fmt: skip
    maps = keypoint_maps(kp, 4)
    expected = torch.zeros(1, 5, 4, 4)
    expected[0, 0, 0, 1] = 1
    expected[0, 1, 3, 3] = 1
    expected[0, 2, 0, 0] = 1
    assert torch.equal(maps, expected)
    mask = keypoint_mask(maps)
    assert mask.shape == (1, 1, 4, 4) and mask.sum() == 3 and mask.max() == 1


def test_soft_keypoint_maps_hand_made_example():
    kp = torch.tensor([[[0.3, 0.5, 1.0],  # grid position (0.3 * 4, 0.5 * 4) = (1.2, 2), from 1
                        [1.0, 0.0, 1.0],  # a corner: all weight in the corner cell
                        [0.6, 0.6, 0.0]]])  # invisible  # fmt: skip
    maps = keypoint_maps(kp, 4, soft=True)
    expected = torch.zeros(1, 3, 4, 4)
    # column 1.2 (1-based) -> 0-based 0.2: 0.8 on column 0, 0.2 on column 1; row 2 -> index 1
    expected[0, 0, 1, 0], expected[0, 0, 1, 1] = 0.8, 0.2
    expected[0, 1, 0, 3] = 1
    assert torch.allclose(maps, expected, atol=1e-6)
    # the largest weight sits in the one-hot cell; each visible part weighs 1
    hard = keypoint_maps(kp, 4)
    assert torch.equal(maps[0, :2].flatten(1).argmax(1), hard[0, :2].flatten(1).argmax(1))
    assert torch.allclose(maps.sum((2, 3)), torch.tensor([[1.0, 1.0, 0.0]]))


def test_soft_maps_model_takes_positions_inside_a_cell():
    model = GAWWNKeypoints(text_dim=16, soft_maps=True, **TINY).eval()
    kp = _keypoints()
    moved = kp.clone()
    moved[:, CUB_PARTS.index("beak"), 0] -= 0.03  # x 8: 6.4 -> 6.16, the same cell
    assert torch.equal(keypoint_maps(kp, 8), keypoint_maps(moved, 8))
    assert not torch.equal(model.condition(kp), model.condition(moved))
    text, noise = torch.randn(2, 16), model.sample_noise(2)
    assert not torch.allclose(model.sample(text, noise, keypoints=kp),
                              model.sample(text, noise, keypoints=moved))  # fmt: skip


def test_wrong_location_pairs_every_image_with_another_ones():
    where = torch.arange(5.0)[:, None].expand(5, 4)
    wrong = wrong_location(where)
    assert sorted(wrong[:, 0].tolist()) == where[:, 0].tolist()
    assert (wrong[:, 0] != where[:, 0]).all()


def test_shifted_location_moves_each_layout_by_the_distance():
    torch.manual_seed(0)
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.4], [0.3, 0.3, 0.2, 0.2], [0.0, 0.0, 1.0, 1.0]])
    moved = shifted_location(boxes, 0.15)
    assert torch.equal(moved[:, 2:], boxes[:, 2:])  # sizes kept
    assert torch.allclose((moved[:, :2] - boxes[:, :2]).norm(dim=1), torch.full((3,), 0.15))
    # keypoints: all parts of a bird move by one step; off the image -> invisible
    kp = torch.zeros(64, 15, 3)
    kp[:, 0] = torch.tensor([0.5, 0.5, 1.0])
    kp[:, 1] = torch.tensor([0.95, 0.5, 1.0])  # 0.15 to the right leaves the image
    kp[:, 2] = torch.tensor([0.4, 0.6, 0.0])  # invisible stays invisible
    moved = shifted_location(kp, 0.15)
    step = moved[:, 0, :2] - kp[:, 0, :2]
    assert torch.allclose(step.norm(dim=1), torch.full((64,), 0.15))
    assert torch.allclose(moved[:, 1, :2] - kp[:, 1, :2], step, atol=1e-6)
    assert torch.equal(moved[:, 0, 2], torch.ones(64))
    assert torch.equal(moved[:, 1, 2], (moved[:, 1, 0] <= 1).float())
    assert 0 < moved[:, 1, 2].sum() < 64  # random directions: some stay inside, some leave
    assert torch.equal(moved[:, 2, 2], torch.zeros(64))


# ---------------------------------------------------------------------------- the models
def _count(*layers) -> int:
    return sum(layers)


def conv(c_in, c_out, k):  # Torch's SpatialConvolution / SpatialFullConvolution with bias
    return c_in * c_out * k * k + c_out


def bn(c):
    return 2 * c


def lin(a, b):
    return a * b + b


def _image_d(ndf=128):  # imgGlobalD
    return conv(3, ndf, 4) + conv(ndf, ndf, 4) + conv(ndf, 2 * ndf, 4) + bn(2 * ndf) + conv(
        2 * ndf, 2 * ndf, 3) + bn(2 * ndf)  # fmt: skip


def _bottleneck(c):
    return conv(c, c // 4, 1) + bn(c // 4) + conv(c // 4, c // 4, 3) + bn(c // 4) + conv(
        c // 4, c, 3) + bn(c)  # fmt: skip


def test_parameter_counts_equal_the_authors_torch_networks():
    # Layer by layer from main_cub_bbox.lua / main_cub_keypoints.lua (ngf = ndf = 128, nz = 100,
    # txtSize = 1024, nt = 128, num_elt = 1 box / 15 parts); modules used twice count once.
    box_g = (lin(100, 512) + lin(1024, 512) + 3 * (conv(512, 512, 4) + bn(512)) + lin(100, 512)
             + conv(1024, 1024, 4) + bn(1024) + conv(1024, 512, 4) + bn(512) + conv(512, 256, 4)
             + bn(256) + conv(1024, 1024, 4) + bn(1024) + _bottleneck(1024) + conv(1024, 512, 4)
             + bn(512) + _bottleneck(512) + conv(512, 256, 4) + bn(256) + conv(512, 256, 3)
             + bn(256) + conv(256, 128, 4) + bn(128) + conv(128, 32, 4) + bn(32)
             + conv(32, 3, 4))  # fmt: skip
    head = lin(256, 128) + bn(128) + lin(128, 1)
    box_d = (_image_d() + lin(1024, 128) + conv(384, 256, 3) + bn(256) + conv(256, 256, 1)
             + bn(256) + conv(256, 128, 1) + conv(256, 512, 4) + bn(512) + conv(512, 1024, 4)
             + bn(1024) + conv(128, 512, 4) + bn(512) + conv(512, 128, 4) + bn(128)
             + conv(1152, 512, 1) + bn(512) + conv(512, 128, 4) + bn(128) + head)  # fmt: skip
    kp_g = (lin(100, 512) + lin(1024, 512) + lin(1024, 512) + bn(512) + conv(512, 512, 3)
            + bn(512) + conv(15, 128, 4) + bn(128) + conv(128, 256, 4) + bn(256)
            + conv(256, 512, 4) + bn(512) + lin(1024, 512) + bn(512) + conv(1024, 512, 4)
            + bn(512) + conv(512, 256, 4) + bn(256) + conv(256, 128, 4) + bn(128)
            + conv(655, 512, 3) + bn(512) + conv(512, 512, 3) + bn(512) + _bottleneck(512)
            + conv(512, 256, 4) + bn(256) + conv(256, 128, 4) + bn(128) + conv(128, 3, 4))  # fmt: skip
    kp_d = (_image_d() + lin(1024, 128) + conv(384, 256, 3) + bn(256) + conv(271, 256, 1)
            + bn(256) + conv(256, 128, 1) + conv(256, 512, 4) + bn(512) + conv(512, 1024, 4)
            + bn(1024) + conv(1152, 512, 1) + bn(512) + conv(512, 128, 4) + bn(128) + head)  # fmt: skip

    def n(net):
        return sum(p.numel() for p in net.parameters())

    box, kp = GAWWNBox(), GAWWNKeypoints()
    assert (n(box.generator), n(box.discriminator)) == (box_g, box_d)
    assert (n(kp.generator), n(kp.discriminator)) == (kp_g, kp_d)
    # the opt-in head without BatchNorm1d (not the authors'): only that layer goes
    plain = GAWWNBox(d_head_norm=False).discriminator
    assert n(plain) == box_d - bn(128) and not isinstance(plain.head[1], torch.nn.BatchNorm1d)
    # main_mhp.lua's fineSize = 64 with 16 x 16 maps: G's 64 x 64 stage (ConvT 256 -> 128 + BN)
    # goes and its last ConvT starts from 256; D's second convolution (ndf -> ndf) goes
    small = GAWWNKeypoints(image_size=64, map_size=16)
    g64 = kp_g - conv(256, 128, 4) - bn(128) - conv(128, 3, 4) + conv(256, 3, 4)
    assert (n(small.generator), n(small.discriminator)) == (g64, kp_d - conv(128, 128, 4))


@pytest.mark.parametrize("map_size", [None, 16])
def test_keypoint_model_at_64_pixels_with_8_or_16_maps(map_size):
    model = GAWWNKeypoints(text_dim=8, image_size=64, ngf=8, ndf=8, map_size=map_size).eval()
    kp = _keypoints()
    assert model.condition(kp).shape == (2, 15, map_size or 8, map_size or 8)
    fake = model.sample(torch.randn(2, 8), model.sample_noise(2), keypoints=kp)
    assert fake.shape == (2, 3, 64, 64)
    assert model.discriminate(fake, torch.randn(2, 8), keypoints=kp).shape == (2,)


@pytest.mark.parametrize("image_size, map_size", [(128, 8), (128, 32), (64, 32), (64, 4)])
def test_map_size_must_be_an_eighth_or_a_quarter_of_the_image(image_size, map_size):
    with pytest.raises(ValueError, match=f"map_size {map_size} with image_size {image_size}"):
        GAWWNKeypoints(image_size=image_size, map_size=map_size)


def _box(n=2):
    return torch.tensor([[0.1, 0.2, 0.5, 0.4]]).repeat(n, 1)


def _keypoints(n=2):
    kp = torch.zeros(n, 15, 3)
    kp[:, CUB_PARTS.index("beak")] = torch.tensor([0.8, 0.3, 1.0])
    kp[:, CUB_PARTS.index("tail")] = torch.tensor([0.2, 0.6, 1.0])
    return kp


@pytest.mark.parametrize("cls, key, where", [(GAWWNBox, "boxes", _box()),
                                             (GAWWNKeypoints, "keypoints", _keypoints())])  # fmt: skip
def test_model_contract(cls, key, where):
    model = cls(text_dim=16, **TINY)
    assert model.takes == ("text", key)
    text, noise = torch.randn(2, 16), model.sample_noise(2)
    out = model.sample(text, noise, **{key: where})
    assert out.shape == (2, 3, 64, 64) and out.min() >= -1 and out.max() <= 1
    assert model.discriminate(out, text, **{key: where}).shape == (2,)
    # the location changes the image
    moved = where.clone()
    moved[..., 0] = 1 - moved[..., 0] - (moved[..., 2] if key == "boxes" else 0)
    assert not torch.allclose(out, model.sample(text, noise, **{key: moved}))
    with pytest.raises(ValueError, match=f"{cls.__name__} is conditioned on {key}"):
        model.sample(text, noise)
    other = "keypoints" if key == "boxes" else "boxes"
    with pytest.raises(ValueError, match=f"takes text and {key} only, not {other}"):
        model.sample(text, noise, **{key: where, other: where})


def test_models_without_location_are_unchanged_and_refuse_it():
    model = GANINTCLS(text_dim=16, image_size=32, ngf=8, ndf=8)
    assert model.takes == ("text",)
    text = torch.randn(2, 16)
    assert model.sample(text, model.sample_noise(2)).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="GANINTCLS takes text only, not boxes"):
        model.sample(text, boxes=_box())


@pytest.mark.parametrize("cls", [GAWWNBox, GAWWNKeypoints])
def test_training_steps_on_synthetic_birds(cls, data_root):
    dm = tiny_datamodule(data_root, image_size=64, load_size=76, flip=True)
    model = cls(text_dim=dm.text_dim, **TINY)
    before = [p.detach().clone() for p in model.generator.parameters()]
    trainer = L.Trainer(max_steps=4, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=1)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.generator.parameters()))
    assert {"train/d_real", "train/d_wrong"} <= set(trainer.callback_metrics)
    assert "val/d_fake" in trainer.validate(model, datamodule=dm, verbose=False)[0]


def test_mirrored_location_faces_the_bird_the_other_way():
    from t2igan.data.dataset import flip_permutation

    kp = torch.zeros(2, 15, 3)
    left_eye, right_eye = CUB_PARTS.index("left eye"), CUB_PARTS.index("right eye")
    kp[:, CUB_PARTS.index("beak")] = torch.tensor([0.7, 0.3, 1.0])
    kp[:, CUB_PARTS.index("tail")] = torch.tensor([0.3, 0.6, 1.0])
    kp[:, right_eye] = torch.tensor([0.65, 0.25, 1.0])
    kp[:, CUB_PARTS.index("back")] = torch.tensor([0.9, 0.9, 0.0])  # invisible: not in the centre
    kp[1, CUB_PARTS.index("tail")] = torch.tensor([0.05, 0.6, 1.0])  # centre 0.4667: beak -> 0.233
    out = mirrored_location(kp, flip_permutation(CUB_PARTS))
    # centre of the visible x (0.7, 0.3, 0.65) is 0.55: beak 0.7 -> 0.4, tail 0.3 -> 0.8
    assert out[0, CUB_PARTS.index("beak")].tolist() == pytest.approx([0.4, 0.3, 1.0])
    assert out[0, CUB_PARTS.index("tail")].tolist() == pytest.approx([0.8, 0.6, 1.0])
    assert out[0, left_eye].tolist() == pytest.approx([0.45, 0.25, 1.0])  # right eye -> left
    assert out[0, right_eye, 2] == 0
    assert out[1, CUB_PARTS.index("tail")].tolist() == pytest.approx([0.8833, 0.6, 1.0], abs=1e-4)
    # a part mirrored off the image becomes invisible
    kp[0, CUB_PARTS.index("crown")] = torch.tensor([0.02, 0.1, 1.0])
    kp[0, CUB_PARTS.index("nape")] = torch.tensor([0.98, 0.1, 1.0])
    kp[0, CUB_PARTS.index("tail")] = torch.tensor([0.98, 0.6, 1.0])
    out = mirrored_location(kp[:1], flip_permutation(CUB_PARTS))
    # centre (0.7 + 0.98 + 0.65 + 0.02 + 0.98) / 5 = 0.666: crown -> 1.312, nape -> 0.352
    assert out[0, CUB_PARTS.index("crown")].tolist() == pytest.approx([1.312, 0.1, 0.0])
    assert out[0, CUB_PARTS.index("nape")].tolist() == pytest.approx([0.352, 0.1, 1.0])


def test_mirrored_location_needs_known_part_names():
    with pytest.raises(ValueError, match="mirrored_location_weight needs sided part names"):
        GAWWNKeypoints(text_dim=16, num_parts=7, mirrored_location_weight=0.5, **TINY)


@pytest.mark.parametrize(
    "cls, term",
    [(GAWWNBox, "wrong_location"), (GAWWNKeypoints, "wrong_location"),
     (GAWWNBox, "shifted_location"), (GAWWNKeypoints, "shifted_location"),
     (GAWWNKeypoints, "mirrored_location")],
)  # fmt: skip
def test_location_negatives_are_opt_in(cls, term):
    batch = {"images": torch.rand(4, 3, 64, 64) * 2 - 1, "text_emb": torch.randn(4, 16),
             "boxes": torch.tensor([[0.1, 0.1, 0.5, 0.5]]).repeat(4, 1), "keypoints": _keypoints(4)}  # fmt: skip
    batch["boxes"][:, 0] = torch.tensor([0.0, 0.1, 0.3, 0.5])
    batch["keypoints"][:, :, 0] *= torch.tensor([1.0, 0.5, 0.25, 0.1])[:, None]
    plain = cls(text_dim=16, **TINY)
    torch.manual_seed(0)
    loss, logs = plain.discriminator_loss(batch)
    assert not any("location" in k for k in logs)
    with_term = cls(text_dim=16, **{f"{term}_weight": 0.5}, **TINY)
    with_term.load_state_dict(plain.state_dict())
    torch.manual_seed(0)
    loss2, logs2 = with_term.discriminator_loss(batch)
    assert {k for k in logs2 if "location" in k} == {f"train/d_{term}"}
    # the same terms, plus 0.5 BCE(D(real, t, the negative location), 0)
    torch.manual_seed(0)
    with_term.sample_noise(4), torch.randperm(4)  # the draws made before the negative's
    where = batch[cls.takes[1]]
    if term == "wrong_location":
        negative = wrong_location(with_term.condition(where))
    elif term == "shifted_location":
        negative = with_term.condition(shifted_location(where))
    else:
        negative = with_term.condition(mirrored_location(where, with_term.swap))
    misplaced = with_term.discriminator(batch["images"], batch["text_emb"], negative)
    extra = 0.5 * torch.nn.functional.softplus(misplaced).mean()
    assert loss2.item() == pytest.approx(loss.item() + extra.item(), rel=1e-4)


@pytest.mark.parametrize("cls", [GAWWNBox, GAWWNKeypoints])
@pytest.mark.parametrize("weight", [{"wrong_location_weight": -0.5},
                                    {"shifted_location_weight": -1.0}, {"cls_weight": 1.5}])  # fmt: skip
def test_a_weight_out_of_range_is_named(cls, weight):
    with pytest.raises(ValueError, match=next(iter(weight))):
        cls(text_dim=16, **weight, **TINY)


def test_a_batch_of_one_gets_no_wrong_location_term():
    batch = {"images": torch.rand(1, 3, 64, 64) * 2 - 1, "text_emb": torch.randn(1, 16),
             "boxes": torch.tensor([[0.1, 0.1, 0.5, 0.5]]), "keypoints": _keypoints(1)}  # fmt: skip
    model = GAWWNBox(text_dim=16, wrong_location_weight=0.5, **TINY).eval()
    _, logs = model.discriminator_loss(batch)  # rolling one image would keep its own box
    assert "train/d_wrong_location" not in logs


def test_flip_moves_a_left_keypoint_to_the_right(data_root):
    dm = tiny_datamodule(data_root, image_size=32, flip=True)
    ds = dm.dataset_of("train")
    left, right = CUB_PARTS.index("left eye"), CUB_PARTS.index("right eye")
    plain = ds.annotations(0, 0, 0, False)["keypoints"]
    flipped = ds.annotations(0, 0, 0, True)["keypoints"]
    side, other = (left, right) if plain[left, 2] > 0 else (right, left)
    assert plain[side, 2] == 1 and plain[other, 2] == 0  # side view: one eye is hidden
    assert flipped[side, 2] == 0 and flipped[other, 2] == 1
    assert flipped[other, 0] == pytest.approx(1 - plain[side, 0])
    assert flipped[other, 1] == pytest.approx(plain[side, 1])
    box, fbox = ds.annotations(0, 0, 0, False)["boxes"], ds.annotations(0, 0, 0, True)["boxes"]
    assert fbox[0] == pytest.approx(1 - box[0] - box[2]) and fbox[2] == pytest.approx(box[2])


# ----------------------------------------------------------------- reading the birds back
def test_read_bird_layout_reads_real_birds():
    ious, beak = [], []
    for i in range(40):
        ex = make_example(0, "test", i, 64)
        got = read_bird_layout(ex["image"])
        ious.append(box_iou(got["box"], ex["box"]))
        beak.append(np.abs(got["beak"] - ex["keypoints"][1, :2]).max() < 0.1)
    assert np.median(ious) > 0.85 and np.mean(beak) > 0.95
    assert read_bird_layout(np.full((32, 32, 3), 128, np.uint8))["box"] is None


def test_read_bird_layout_ignores_stray_specks():
    ex = make_example(0, "test", 3, 64)
    clean = read_bird_layout(ex["image"])
    specked = ex["image"].copy()
    bx, by, bw, bh = (np.asarray(ex["box"]) * 64).round().astype(int)
    for x, y in ((1, 1), (62, 2), (2, 61), (61, 60), (31, 62)):  # corner and border specks
        if not (bx - 2 <= x <= bx + bw + 2 and by - 2 <= y <= by + bh + 2):
            specked[y, x] = 255 - specked[y, x]
    got = read_bird_layout(specked)
    assert np.allclose(got["box"], clean["box"]) and np.allclose(got["tail"], clean["tail"])
    assert box_iou(got["box"], ex["box"]) > 0.85


# ------------------------------------------------------------------------------ figures
def test_location_rows_stay_inside_and_move():
    rows = move_box(torch.tensor([0.3, 0.3, 0.4, 0.3]), 5)
    assert [label for label, _ in rows][0] == "box moved left to right"
    for _, boxes in rows:
        assert (boxes[:, :2] >= 0).all() and (boxes[:, :2] + boxes[:, 2:] <= 1).all()
    assert (
        torch.all(rows[0][1][1:, 0] > rows[0][1][:-1, 0]) and rows[2][1][-1, 2] > rows[2][1][0, 2]
    )
    kp_rows = dict(move_keypoints(_keypoints(1)[0], 5))
    beak = kp_rows["beak alone moved left to right"]
    assert torch.all(beak[1:, 1, 0] > beak[:-1, 1, 0]) and torch.equal(
        beak[:, 13], beak[:1, 13].expand(5, 3)
    )


def test_draw_location_marks_the_box_and_keypoints():
    img = torch.full((1, 3, 32, 32), -1.0)
    boxed = draw_location(img, "boxes", torch.tensor([[0.25, 0.25, 0.5, 0.5]]))
    assert boxed[0, 0, 8, 8:24].min() > 0.9 and boxed[0, 0, 16, 16] == -1  # outline, not fill
    dots = draw_location(img, "keypoints", _keypoints(1))
    near_beak = dots[0, :, 8:12, 24:28]  # the beak is asked at (0.8, 0.3) of 32 px: (25.6, 9.6)
    assert near_beak.max() > 0 and dots[0, :, 1, 1].max() == -1


@pytest.mark.parametrize("num_parts", [15, 17])  # CUB, MPII in GAWWN's form
def test_each_part_is_drawn_in_a_colour_of_its_own(num_parts):
    img = torch.full((1, 3, 64, 64), -1.0)
    kp = torch.zeros(1, num_parts, 3)
    kp[0, :, 0] = (torch.arange(num_parts) % 6 + 1) / 7  # a grid of dots, well apart
    kp[0, :, 1] = (torch.arange(num_parts) // 6 + 1) / 4
    kp[0, :, 2] = 1
    dots = draw_location(img, "keypoints", kp)[0]
    centres = [dots[:, round(float(y) * 64), round(float(x) * 64)] for x, y, _ in kp[0]]
    colours = {tuple(((c + 1) * 127.5).round().int().tolist()) for c in centres}
    assert len(colours) == num_parts and (0, 0, 0) not in colours


@pytest.mark.parametrize("cls", [GAWWNBox, GAWWNKeypoints])
def test_where_and_what_figures(cls, data_root, tmp_path):
    dm = tiny_datamodule(data_root, image_size=64, load_size=76)
    model = cls(text_dim=dm.text_dim, **TINY)
    where, what = WhereGrid(steps=4), WhatGrid(num_captions=3, num_samples=2)
    samples = SampleGrid(num_captions=2, num_samples=2)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        default_root_dir=tmp_path,
                        callbacks=[where, what, samples, CaptionConsistency()])  # fmt: skip
    trainer.fit(model, datamodule=dm)
    # box: x, y, scale; keypoints: x, y, then beak and tail where the example shows them
    kp = where.fixed["where"][0]
    rows = 3 if cls is GAWWNBox else 2 + int(kp[1, 2] > 0) + int(kp[13, 2] > 0)
    grid = Image.open(tmp_path / "where" / "epoch_0000.png")
    assert grid.height == 2 * rows * 66 + 2  # each row, then it with the location drawn on
    images, ncol, labels = where.draw(model)
    assert ncol == 4 and len(images) == 2 * rows * 4 and labels[1].endswith("asked for")
    images, ncol, labels = what.draw(model)
    assert ncol == 3 and len(images) == 3 * 3 and labels[-1] == "noise 1: location asked for"
    assert what.layout.startswith("columns: 1: ")
    assert (tmp_path / "what" / "epoch_0000.png").is_file()
    # the plain sample grid draws each caption at its own image's location
    assert (
        samples.fixed["where"].shape[0] == 2 and (tmp_path / "samples" / "epoch_0000.png").is_file()
    )
    assert "val/caption_acc" in trainer.callback_metrics
    # the fixed inputs come back from the checkpoint state
    again = WhereGrid(steps=4)
    again.load_state_dict(where.state_dict())
    assert torch.equal(again.draw(model)[0], where.draw(model)[0])
    # a model without location gets no figure
    plain = GANINTCLS(text_dim=dm.text_dim, image_size=64, ngf=4, ndf=4)
    with pytest.warns(UserWarning, match="takes no boxes or keypoints"):
        assert not WhereGrid().supports(plain)


@pytest.mark.parametrize("cls,key", [(GAWWNBox, "boxes"), (GAWWNKeypoints, "keypoints")])
def test_interpolation_figures_keep_each_rows_location(cls, key, data_root, monkeypatch):
    """Reed's interpolation figures on a location model: every column of a row is drawn at
    the location of that row's (first) caption's image; the plain GAN is called without one."""
    from types import SimpleNamespace

    from t2igan.callbacks import CaptionInterpolation, NoiseInterpolation

    dm = tiny_datamodule(data_root, image_size=64, load_size=76)
    trainer = SimpleNamespace(datamodule=dm)
    for model in (cls(text_dim=dm.text_dim, **TINY).eval(),
                  GANINTCLS(text_dim=dm.text_dim, image_size=64, ngf=4, ndf=4).eval()):  # fmt: skip
        calls = []
        sample = model.sample
        monkeypatch.setattr(model, "sample", lambda *a, _c=calls, _s=sample, **kw: _c.append(kw)
                            or _s(*a, **kw))  # fmt: skip
        for figure, rows in ((CaptionInterpolation(num_pairs=2, num_steps=3), 2),
                             (NoiseInterpolation(num_captions=3, num_steps=3), 3)):  # fmt: skip
            figure.fixed = figure.choose(trainer, model)
            images, ncol, labels = figure.draw(model)
            assert images.shape == (rows * 3, 3, 64, 64) and ncol == 3 and len(labels) == rows
            if isinstance(model, GANINTCLS):
                assert calls[-1] == {}
                continue
            asked = dm.caption_examples("val", rows if rows == 3 else 4)[key][:rows]
            assert torch.equal(calls[-1][key], asked.repeat_interleave(3, 0))


# ------------------------------------------------------------------------------ generate
@pytest.fixture(scope="module")
def gawwn_ckpts(data_root, tmp_path_factory) -> dict:
    dm = tiny_datamodule(data_root, image_size=64, load_size=76, text_encoder=HashingEncoder())
    paths = {}
    for cls in (GAWWNBox, GAWWNKeypoints):
        model = cls(text_dim=dm.text_dim, text_encoder=dm.text_encoder_spec, **TINY)
        trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, limit_val_batches=0)  # fmt: skip
        trainer.fit(model, datamodule=dm)
        paths[cls] = tmp_path_factory.mktemp("gawwn") / f"{cls.__name__}.ckpt"
        trainer.save_checkpoint(paths[cls])
    return paths


def test_generate_with_boxes(gawwn_ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    generate_main(["--ckpt", str(gawwn_ckpts[GAWWNBox]), "--caption", "a red bird", "--box",
                   "0.1,0.2,0.5,0.4", "--box", "0.4,0.4,0.5,0.5", "--num", "3", "--out",
                   str(out)])  # fmt: skip
    assert "wrote" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert "grid.png" in names and "grid_location.png" in names
    assert len([n for n in names if n.endswith("_location.png")]) == 1 + 6  # 2 rows x 3
    clean, marked = (
        np.asarray(Image.open(out / n)) for n in ("c01_i00.png", "c01_i00_location.png")
    )
    assert clean.shape == marked.shape and (clean != marked).any()


def test_generate_with_keypoints(gawwn_ckpts, tmp_path):
    parts = tmp_path / "parts.json"
    parts.write_text(json.dumps({"beak": [0.8, 0.3], "tail": [0.2, 0.6]}))
    paths = generate(str(gawwn_ckpts[GAWWNKeypoints]), ["a blue bird"], num=2,
                     out=str(tmp_path / "o"), keypoint_files=[str(parts)])  # fmt: skip
    assert len([p for p in paths if p.name.startswith("c00_i") and p.suffix == ".png"]) == 4
    # the keypoints of each image beside it, as --keypoints reads them (2 images, 2 copies)
    for k in range(2):
        assert json.loads((tmp_path / "o" / f"c00_i{k:02d}.json").read_text()) == {
            "beak": [0.8, 0.3], "tail": [0.2, 0.6]}  # fmt: skip


@pytest.mark.parametrize("args, message", [
    (["--box", "0.5,0.5,0.6,0.2"], "outside the image"),
    (["--box", "0.1,0.1,0,0.3"], "has no area"),
    (["--box", "0.1,0.1,0.3"], "four numbers"),
    (["--box", "a,b,c,d"], "four numbers"),
    ([], "pass --box"),
    (["--keypoints", "KP"], "takes text and boxes only"),
])  # fmt: skip
def test_generate_location_errors(gawwn_ckpts, tmp_path, args, message):
    parts = tmp_path / "parts.json"
    parts.write_text(json.dumps({"beak": [0.8, 0.3]}))
    args = [str(parts) if a == "KP" else a for a in args]
    with pytest.raises(ValueError, match=message):
        generate_main(["--ckpt", str(gawwn_ckpts[GAWWNBox]), "--caption", "x", "--out",
                       str(tmp_path / "o"), *args])  # fmt: skip


@pytest.mark.parametrize("content, message", [
    ({"bill": [0.5, 0.5]}, "unknown part 'bill'"),
    ({"beak": [1.5, 0.5]}, "outside"),
    ({"beak": 0.5}, r"\[x, y\]"),
    ([1, 2], "an object"),
])  # fmt: skip
def test_generate_keypoint_file_errors(gawwn_ckpts, tmp_path, content, message):
    parts = tmp_path / "parts.json"
    parts.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message):
        generate(str(gawwn_ckpts[GAWWNKeypoints]), ["x"], out=str(tmp_path / "o"),
                 keypoint_files=[str(parts)])  # fmt: skip
    parts.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        generate(str(gawwn_ckpts[GAWWNKeypoints]), ["x"], keypoint_files=[str(parts)])


def fit_on_real_subset(config: str, source, tmp_path, load_size: int, *extra: str):
    """``t2igan fit --config experiments/<config>`` with fast_dev_run on a real data subset
    (tiny widths, batch 4, 64 px); returns the run after checking it trained and stayed finite,
    and one training batch."""
    run = cli(args=[
        "fit", "--config", str(ROOT / "experiments" / config), "--data.root", str(tmp_path),
        "--data.source", str(source), "--data.skip_missing", "true", *extra,
        "--data.text_encoder", "t2igan.data.HashingEncoder", "--data.batch_size", "4",
        "--data.image_size", "64", "--data.load_size", str(load_size),
        "--model.init_args.ngf", "4", "--model.init_args.ndf", "4", "--trainer.fast_dev_run", "1",
        "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(tmp_path / "run"),
    ])  # fmt: skip
    assert run.trainer.state.finished and run.trainer.global_step > 0
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
    return run, next(iter(run.datamodule.train_dataloader()))


@pytest.mark.skipif(not REAL_CUB.exists(), reason="shared real data not present")
@pytest.mark.parametrize(
    "config", ["gawwn_box.yaml", "gawwn_keypoints.yaml", "gawwn_keypoint_generator.yaml"]
)
def test_configs_fit_on_the_real_cub_subset(config, tmp_path):
    _, batch = fit_on_real_subset(config, REAL_CUB, tmp_path, 76, "--data.split", "official")
    assert batch["boxes"].shape == (4, 4) and batch["keypoints"].shape == (4, 15, 3)
    assert ("images" in batch) == (config != "gawwn_keypoint_generator.yaml")  # G_k: no images


class _AlternatingOracle:
    """Draws each test batch's real images on even passes over the test split, a blank grey
    image on odd ones: a model whose passes score differently."""

    takes = ("text", "keypoints")

    def __init__(self, dm):
        self.real = [b["images"] for b in dm.test_dataloader()]
        self.calls = 0

    def sample_noise(self, n, generator=None):
        return torch.randn(n, 1, generator=generator)

    def sample(self, text_emb, noise, keypoints):
        images = self.real[self.calls % len(self.real)]
        self.calls += 1
        return images if (self.calls - 1) // len(self.real) % 2 == 0 else torch.zeros_like(images)


def _gawwn_bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gawwn_bench", ROOT / "benchmarks" / "gawwn.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_gawwn_benchmark_scores_beak_tail_and_facing():
    """One drawn bird against the keypoints asked for: hits within 0.1, ``both`` only where
    both parts are asked for, and the facing from the beak's side of the tail."""
    bench = _gawwn_bench()
    kp = np.zeros((15, 3), np.float32)
    kp[1], kp[13] = (0.8, 0.4, 1), (0.2, 0.5, 1)  # beak right of the tail: faces right
    near = {"beak": np.array([0.75, 0.45]), "tail": np.array([0.25, 0.5])}
    assert bench._parts(near, kp) == (True, True, True, False)
    mirrored = {"beak": np.array([0.2, 0.4]), "tail": np.array([0.8, 0.5])}
    assert bench._parts(mirrored, kp) == (False, False, False, True)
    assert bench._parts({"beak": None, "tail": near["tail"]}, kp) == (False, True, False, None)
    kp[13, 2] = 0  # tail not asked for
    assert bench._parts(near, kp) == (True, None, None, None)
    assert bench._rate([True, None, False, True]) == pytest.approx(2 / 3, abs=1e-3)
    assert bench._rate([None]) is None


def test_gawwn_benchmark_pools_its_scoring_passes(data_root, tmp_path):
    """benchmarks/gawwn.py's ``scores`` over ``draws`` passes of the test split: each pass's
    beak and tail figures, and the pooled figures their mean (each pass scores the same birds)."""
    bench = _gawwn_bench()
    dm = tiny_datamodule(data_root, image_size=64, load_size=76)
    dm.setup("test")
    one = bench.scores(_AlternatingOracle(dm), dm, tmp_path)
    assert "draws" not in one and (tmp_path / "test_samples.png").exists()
    assert one["beak_ok"] > 0.9 and one["tail_ok"] > 0.9  # real birds, read back
    assert one["wrong_facing"] < 0.1  # the reader swaps beak and tail of 1 bird of these 32
    three = bench.scores(_AlternatingOracle(dm), dm, tmp_path, draws=3)
    assert three["draws"] == 3
    for part in ("beak", "tail"):
        passes = three[f"{part}_ok_per_pass"]
        assert passes[0] == passes[2] == one[f"{part}_ok"] and passes[1] == 0
        assert three[f"{part}_ok"] == pytest.approx(np.mean(passes), abs=2e-3)
