"""The caption-consistency evaluator is meaningful: right captions score high, shuffled ones
score near chance."""

from __future__ import annotations

import pytest
import torch

from t2igan.data.synthetic import ATTRIBUTES, SyntheticBirds
from t2igan.metrics import CaptionAccuracy, read_birds


@pytest.fixture(scope="module", params=[32, 64])
def held_out(request):
    split = SyntheticBirds(request.param, 0, 256, seed=5).load("test")
    images = torch.from_numpy(split.images).permute(0, 3, 1, 2).float() / 127.5 - 1
    named = torch.as_tensor([m[0] for m in split.caption_attributes])
    return images, torch.as_tensor(split.attributes), named


def test_real_images_with_their_own_captions_score_high(held_out):
    images, attrs, named = held_out
    metric = CaptionAccuracy()
    metric.update(read_birds(images), attrs, named)
    scores = metric.compute()
    assert scores["caption_acc"] >= 0.95
    for name in ("body", "head", "wing"):
        assert scores[name] >= 0.93, name


def test_shuffled_captions_score_near_chance(held_out):
    images, attrs, named = held_out
    perm = torch.randperm(len(attrs), generator=torch.Generator().manual_seed(0))
    metric = CaptionAccuracy()
    metric.update(read_birds(images), attrs[perm], named[perm])
    assert metric.compute()["caption_acc"] < 0.125 + 0.1  # chance is 1/8 per colour


def test_only_named_attributes_count():
    preds = torch.tensor([[0, 1, 2, 0, 0, 0]])
    targets = torch.tensor([[0, 5, 5, 1, 1, 1]])
    named = torch.tensor([[True, False, False, False, False, False]])
    metric = CaptionAccuracy()
    metric.update(preds, targets, named)
    scores = metric.compute()
    assert scores["caption_acc"] == 1.0 and set(scores) == {"body", "caption_acc"}
    assert len(ATTRIBUTES) == 6


def test_blank_image_does_not_crash():
    out = read_birds(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 6)
