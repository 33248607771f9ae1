"""The training sampler: per-item seeds, and the class-uniform training order of the icml2016
Lua loader (``--data.sampler class_uniform``): a class uniformly, then one of its images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2igan.data.sampler import EpochSampler

from .conftest import tiny_datamodule


def _indices(sampler) -> list[int]:
    return [i for i, _ in sampler]


def test_class_uniform_sampler_sees_every_class_equally_often_whatever_its_size():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)  # imbalanced: 90 / 9 / 1 images
    sampler = EpochSampler(len(labels), labels)
    torch.manual_seed(0)
    draws = np.array([i for _ in range(300) for i in _indices(sampler)])  # 300 epochs of 100
    assert len(sampler) == 100 and len(draws) == 30_000
    per_class = np.bincount(labels[draws], minlength=3) / len(draws)
    assert per_class == pytest.approx([1 / 3] * 3, abs=0.015)  # shuffling would give .9/.09/.01
    # within a class, every image alike
    per_image = np.bincount(draws[labels[draws] == 0], minlength=90)
    assert per_image.min() > 0.6 * per_image.mean() and per_image.max() < 1.4 * per_image.mean()
    # draws with replacement from torch's (per-rank) RNG: the seed fixes the order
    torch.manual_seed(1)
    a = _indices(sampler)
    torch.manual_seed(1)
    assert a == _indices(sampler) and len(set(a)) < 100


def test_shuffled_epochs_hold_every_item_once_and_resume_from_a_position():
    sampler = EpochSampler(20)
    torch.manual_seed(0)
    epoch = list(sampler)
    assert sorted(i for i, _ in epoch) == list(range(20))
    assert len({s for _, s in epoch}) == 20  # every item its own seed
    torch.manual_seed(0)
    assert list(sampler) == epoch  # the global seed fixes order and seeds
    assert list(sampler) != epoch  # the next epoch is another
    sampler.resume(sampler.epoch_seed, 0)
    again = list(sampler)
    sampler.resume(sampler.epoch_seed, 7)
    assert list(sampler) == again[7:]  # a resumed epoch continues where it stopped


def test_an_item_looks_the_same_whenever_it_is_loaded(data_root):
    dm = tiny_datamodule(data_root, load_size=38, flip=True)
    ds = dm.datasets["train"]
    first = ds[(5, 1234)]
    torch.rand(100)  # whatever else drew from the global RNG in between
    second = ds[(5, 1234)]
    for key in ("images", "wrong_images", "text_emb"):
        assert torch.equal(first[key], second[key]), key
    assert not torch.equal(ds[(5, 99)]["wrong_images"], first["wrong_images"])


def test_datamodule_option_uses_it_for_training_only_and_names_bad_values(data_root):
    dm = tiny_datamodule(data_root, sampler="class_uniform")
    assert dm.train_dataloader().sampler.members is not None
    assert dm.val_dataloader().sampler.__class__.__name__ == "SequentialSampler"
    assert tiny_datamodule(data_root).train_dataloader().sampler.members is None
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape[0] == 8
    with pytest.raises(ValueError, match="unknown sampler 'balanced'; choose one of shuffle, "
                       "class_uniform"):  # fmt: skip
        tiny_datamodule(data_root, sampler="balanced")
