"""The papers' files: StackGAN pickles, Reed's .t7 tables, the PyTorch port's HDF5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2igan.data import T2IDataModule
from t2igan.data.cub import CUBReader
from t2igan.data.paper_files import (
    PortHDF5Reader,
    PrecomputedEncoder,
    decode_reed_chars,
    embeddings_dim,
    read_reed_t7,
    stackgan_split,
)

from .data_fixtures import cub_keys, make_cub, write_port_hdf5, write_reed_t7, write_stackgan


@pytest.fixture
def cub(tmp_path):
    return make_cub(tmp_path / "raw")


def _stackgan(cub, folder, dim=8):
    keys = cub_keys(cub)
    test = [k for k in keys if k.startswith(("001", "004"))]
    train = [k for k in keys if k not in test]
    emb = {s: write_stackgan(folder, s, ks, [int(k[:3]) for k in ks], dim)
           for s, ks in (("train", train), ("test", test))}  # fmt: skip
    return {"train": train, "test": test}, emb


def test_stackgan_embeddings_align_with_images(tmp_path, cub):
    keys, emb = _stackgan(cub, tmp_path / "stackgan")
    names, classes, loaded = stackgan_split(tmp_path / "stackgan", "train")
    assert names == keys["train"] and loaded.shape == (6, 10, 8)
    assert classes.tolist() == [int(k[:3]) for k in keys["train"]]
    split = CUBReader(cub, embeddings=tmp_path / "stackgan").load("test")
    for name, e in zip(split.names, split.caption_emb):
        np.testing.assert_array_equal(e, emb["test"][keys["test"].index(name)])
    assert embeddings_dim(tmp_path / "stackgan") == 8


def test_stackgan_count_mismatch_is_an_error(tmp_path, cub):
    keys = cub_keys(cub)[:4]
    write_stackgan(tmp_path / "sg", "train", keys, [1] * 4, count=3)
    with pytest.raises(ValueError, match=r"\(3, 10, 8\) for 4 names"):
        stackgan_split(tmp_path / "sg", "train")


def test_datamodule_with_precomputed_embeddings(tmp_path, cub):
    _stackgan(cub, tmp_path / "sg", dim=12)
    dm = T2IDataModule("cub", root=str(tmp_path), source=str(cub), embeddings=str(tmp_path / "sg"),
                       image_size=32, batch_size=4, use_cache=False)  # fmt: skip
    assert dm.text_dim == 12 and isinstance(dm.text_encoder, PrecomputedEncoder)
    assert dm.text_encoder_spec["init_args"]["dim"] == 12
    dm.setup("fit")
    ds = dm.datasets["train"]
    row = float(ds.emb[0][0, 0])  # the fixture fills image r's caption k with r + k / 10
    assert row == int(row) and torch.all(ds.emb[0][:, 0] == row + torch.arange(10) / 10)
    with pytest.raises(RuntimeError, match="cannot be embedded"):
        dm.text_encoder.encode(["a red bird"])


def test_reed_t7(tmp_path):
    captions = ["this bird is red.", "a small bird, with a black beak!"]
    txt = np.arange(2 * 6, dtype=np.float32).reshape(2, 6)
    path = tmp_path / "cub_icml" / "001.Bird_1" / "Bird_1_0000_101.t7"
    write_reed_t7(path, "001.Bird_1/Bird_1_0000_101.jpg", txt, captions)
    table = read_reed_t7(path)
    assert table["img"] == "001.Bird_1/Bird_1_0000_101.jpg"
    np.testing.assert_array_equal(table["txt"], txt)
    assert table["captions"] == captions
    assert decode_reed_chars(np.array([[1, 2], [3, 0]])) == ["ac", "b"]
    assert embeddings_dim(tmp_path / "cub_icml") == 6


def test_reed_t7_embeddings_for_cub(tmp_path, cub):
    folder = tmp_path / "cub_icml"
    for r, key in enumerate(cub_keys(cub)):
        write_reed_t7(folder / f"{key}.t7", key + ".jpg", np.full((10, 4), r, np.float32),
                      ["a bird."] * 10)  # fmt: skip
    split = CUBReader(cub, embeddings=folder).load("train")
    for name, e in zip(split.names, split.caption_emb):
        assert e.shape == (10, 4) and e[0, 0] == cub_keys(cub).index(name)
    (folder / f"{split.names[0]}.t7").unlink()
    with pytest.raises(FileNotFoundError, match="no Reed .t7 embeddings"):
        CUBReader(cub, embeddings=folder).load("train")


def test_port_hdf5(tmp_path):
    path = tmp_path / "birds.hdf5"
    write_port_hdf5(path, {
        "a_img": ("001.Black_footed_Albatross", ["cap a0", "cap a1", "cap a2"]),
        "b_img": ("002.Laysan_Albatross", ["cap b0", "cap b1"]),
        "v_img": ("003.Sooty_Albatross", ["cap v0"]),
        "vb_img": ("004.Groove_billed_Ani", ["cap vb0"]),
    })  # fmt: skip
    reader = PortHDF5Reader(path)
    train = reader.load("train")
    assert train.names == ["a_img", "b_img"] and train.labels.tolist() == [0, 1]
    assert train.captions[0] == ["cap a0", "cap a1", "cap a2"]
    np.testing.assert_allclose(train.caption_emb[1][:, 0], [1.0, 1.1])  # n + k / 10
    assert train.images[0].shape == (30, 40, 3)
    assert reader.load("val").names == ["v_img", "vb_img"] and reader.dim == 8
    dm = T2IDataModule("port-hdf5", root=str(tmp_path), source=str(path), image_size=16,
                       batch_size=2)  # fmt: skip
    assert dm.text_dim == 8
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (2, 3, 16, 16) and batch["text_emb"].shape == (2, 8)
