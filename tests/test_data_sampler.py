"""The class-uniform training order of the icml2016 Lua loader (``--data.sampler
class_uniform``): a class uniformly, then one of its images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2igan.data.datamodule import ClassUniformSampler

from .conftest import tiny_datamodule


def test_class_uniform_sampler_sees_every_class_equally_often_whatever_its_size():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)  # imbalanced: 90 / 9 / 1 images
    sampler = ClassUniformSampler(labels)
    torch.manual_seed(0)
    draws = np.array([i for _ in range(300) for i in sampler])  # 300 epochs of 100 draws
    assert len(sampler) == 100 and len(draws) == 30_000
    per_class = np.bincount(labels[draws], minlength=3) / len(draws)
    assert per_class == pytest.approx([1 / 3] * 3, abs=0.015)  # shuffling would give .9/.09/.01
    # within a class, every image alike
    per_image = np.bincount(draws[labels[draws] == 0], minlength=90)
    assert per_image.min() > 0.6 * per_image.mean() and per_image.max() < 1.4 * per_image.mean()
    # draws with replacement from torch's (per-rank) RNG: the seed fixes the order
    torch.manual_seed(1)
    a = list(sampler)
    torch.manual_seed(1)
    assert a == list(sampler) and len(set(a)) < 100


def test_datamodule_option_uses_it_for_training_only_and_names_bad_values(data_root):
    dm = tiny_datamodule(data_root, sampler="class_uniform")
    assert isinstance(dm.train_dataloader().sampler, ClassUniformSampler)
    assert not isinstance(dm.val_dataloader().sampler, ClassUniformSampler)
    assert not isinstance(tiny_datamodule(data_root).train_dataloader().sampler,
                          ClassUniformSampler)  # fmt: skip
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape[0] == 8
    with pytest.raises(ValueError, match="unknown sampler 'balanced'; choose one of shuffle, "
                       "class_uniform"):  # fmt: skip
        tiny_datamodule(data_root, sampler="balanced")
