"""The built-in synthetic birds: determinism, annotations, captions and the held-out split."""

from __future__ import annotations

import numpy as np
import pytest

from t2igan.data.contract import CUB_PARTS
from t2igan.data.synthetic import (
    ATTRIBUTES,
    BACKGROUNDS,
    COLOURS,
    FACINGS,
    HELD_OUT,
    PALETTE,
    SyntheticBirds,
    make_example,
)


@pytest.fixture(scope="module")
def train():
    return SyntheticBirds(64, 200, 50, seed=3).load("train")


def test_deterministic_and_independent_of_size():
    a = SyntheticBirds(64, 20, 5, seed=1).load("train")
    b = SyntheticBirds(64, 40, 5, seed=1).load("train")
    c = SyntheticBirds(64, 20, 5, seed=2).load("train")
    assert np.array_equal(a.images, b.images[:20])  # image i does not depend on the size
    assert a.captions == b.captions[:20]
    assert not np.array_equal(a.images, c.images)  # the seed matters


@pytest.mark.parametrize("size", [64, 128, 256])
def test_any_resolution(size):
    ex = make_example(0, "train", 7, size)
    assert ex["image"].shape == (size, size, 3) and ex["image"].dtype == np.uint8


def test_keypoints_inside_box_and_visibility(train):
    near = {0: "left", 1: "right"}
    for box, kp, attrs in zip(train.boxes, train.keypoints, train.attributes):
        x, y, w, h = box
        assert 0 <= x and 0 <= y and x + w <= 1 and y + h <= 1
        vis = kp[:, 2] > 0
        assert ((kp[vis, 0] >= x - 1e-6) & (kp[vis, 0] <= x + w + 1e-6)).all()
        assert ((kp[vis, 1] >= y - 1e-6) & (kp[vis, 1] <= y + h + 1e-6)).all()
        assert (kp[~vis] == 0).all()
        facing = attrs[ATTRIBUTES.index("facing")]
        for k, name in enumerate(CUB_PARTS):
            side = name.split(" ")[0]
            if side in ("left", "right"):  # only the side turned to the viewer is visible
                assert vis[k] == (side == near[facing]), (name, FACINGS[facing])
            else:
                assert vis[k]


def test_drawn_colours_match_attributes(train):
    """The pixel at the belly keypoint has the body colour; the image corner the background."""
    for img, kp, attrs in zip(train.images[:50], train.keypoints, train.attributes):
        s = img.shape[0]
        bx, by = (kp[CUB_PARTS.index("belly"), :2] * s).astype(int)
        body = np.array(PALETTE[COLOURS[attrs[0]]])
        assert np.abs(img[by, bx].astype(int) - body).max() <= 30
        bg = np.array(list(BACKGROUNDS.values())[attrs[3]])
        assert np.abs(img[0, 0].astype(int) - bg).max() <= 2


def test_captions_name_their_attributes(train):
    for caps, attrs, named in zip(train.captions, train.attributes, train.caption_attributes):
        assert 5 <= len(caps) <= 10 and len(set(caps)) == len(caps)
        for cap, mask in zip(caps, named):
            assert mask[0] and mask[1]  # body and head colours are always named
            assert COLOURS[attrs[0]] in cap and COLOURS[attrs[1]] in cap
            if mask[2]:
                assert f"{COLOURS[attrs[2]]} wing" in cap


def test_held_out_combinations_disjoint():
    reader = SyntheticBirds(64, 300, 300, seed=0)
    pairs = {s: {tuple(a[:2]) for a in reader.load(s).attributes} for s in ("train", "val", "test")}
    assert pairs["test"] <= HELD_OUT
    assert not (pairs["train"] | pairs["val"]) & HELD_OUT
    # every body and head colour is still seen in training
    assert {b for b, _ in pairs["train"]} == set(range(8))
    assert {h for _, h in pairs["train"]} == set(range(8))
