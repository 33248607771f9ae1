"""DataModule, batch contract, transforms and the text-embedding cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2igan.data import CUB_PARTS, HashingEncoder, SentenceTransformerEncoder
from t2igan.data.dataset import TextImageDataset, flip_permutation
from t2igan.data.synthetic import SyntheticBirds
from t2igan.data.text import embed_captions, encoder_from_spec

from .conftest import tiny_datamodule


def test_batch_contract(tiny_dm):
    batch = next(iter(tiny_dm.train_dataloader()))
    b, s = 8, tiny_dm.image_size
    assert batch["images"].shape == (b, 3, s, s) and batch["wrong_images"].shape == (b, 3, s, s)
    assert batch["images"].min() >= -1 and batch["images"].max() <= 1
    assert batch["text_emb"].shape == (b, tiny_dm.text_dim)
    assert len(batch["captions"]) == b and all(isinstance(c, str) for c in batch["captions"])
    assert batch["boxes"].shape == (b, 4) and batch["keypoints"].shape == (b, 15, 3)
    assert batch["attributes"].shape == (b, 6) and batch["attributes_named"].dtype == torch.bool


def test_wrong_images_come_from_other_classes(tiny_dm):
    ds = tiny_dm.datasets["train"]
    torch.manual_seed(0)
    for i in range(len(ds)):
        for _ in range(5):
            assert ds.labels[ds.wrong_index(i)] != ds.labels[i]


def test_text_emb_is_mean_of_sampled_captions(data_root):
    dm = tiny_datamodule(data_root, num_captions=4)
    ds = dm.datasets["train"]
    torch.manual_seed(0)
    item = ds[3]
    torch.manual_seed(0)
    ds._crop_flip(None)  # same draws as __getitem__, in the same order
    picks = torch.randint(len(ds.emb[3]), (4,))
    assert torch.allclose(item["text_emb"], ds.emb[3][picks].mean(0))
    assert item["captions"] == ds.split.captions[3][int(picks[0])]


def test_flip_mirrors_boxes_and_swaps_left_right_parts():
    split = SyntheticBirds(32, 16, 4, seed=0).load("train")
    emb = [np.zeros((len(c), 4), np.float32) for c in split.captions]
    plain = TextImageDataset(split, emb, 32)
    flipped = TextImageDataset(split, emb, 32, flip=True)
    flipped._crop_flip = lambda i: (0, 0, True)  # force the flip
    a, b = plain[0], flipped[0]
    assert torch.equal(b["images"], a["images"].flip(-1))
    x, y, w, h = a["boxes"]
    assert torch.allclose(b["boxes"], torch.stack([1 - x - w, y, w, h]))
    lw, rw = CUB_PARTS.index("left wing"), CUB_PARTS.index("right wing")
    assert torch.allclose(b["keypoints"][rw, 0], 1 - a["keypoints"][lw, 0])
    assert b["keypoints"][rw, 2] == a["keypoints"][lw, 2]
    assert b["keypoints"][lw, 2] == a["keypoints"][rw, 2]
    assert flip_permutation(CUB_PARTS)[lw] == rw


def test_crop_moves_keypoints_with_the_image():
    split = SyntheticBirds(40, 8, 4, seed=0).load("train")
    emb = [np.zeros((len(c), 4), np.float32) for c in split.captions]
    ds = TextImageDataset(split, emb, 32, load_size=40, random_crop=True)
    ds._crop_flip = lambda i: (5, 3, False)
    item = ds[0]
    kp_full = torch.as_tensor(split.keypoints[0])
    vis = item["keypoints"][:, 2] > 0
    expected_x = (kp_full[:, 0] * 40 - 5) / 32
    assert torch.allclose(item["keypoints"][vis, 0], expected_x[vis], atol=1e-5)
    assert torch.equal(item["images"], ds._apply(ds.image(0), 5, 3, False))


class CountingEncoder(HashingEncoder):
    calls = 0

    def encode(self, captions):
        CountingEncoder.calls += 1
        return super().encode(captions)


def test_embedding_cache_is_keyed_by_encoder_and_captions(tmp_path):
    caps = ["a red bird.", "a blue bird.", "a red bird."]
    enc = CountingEncoder(dim=32)
    e1 = embed_captions(enc, caps, tmp_path)
    e2 = embed_captions(enc, caps, tmp_path)
    assert CountingEncoder.calls == 1 and np.array_equal(e1, e2)  # second call read the cache
    assert np.array_equal(e1[0], e1[2])  # duplicates embedded once, same vector
    embed_captions(CountingEncoder(dim=16), caps, tmp_path)  # other encoder: new file
    embed_captions(enc, caps + ["a green bird."], tmp_path)  # other captions: new file
    assert CountingEncoder.calls == 3 and len(list(tmp_path.glob("*.npy"))) == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_hashing_encoder_keeps_word_order_within_bigrams():
    enc = HashingEncoder(dim=256)
    a, b = enc.encode(["a red body and a blue head", "a blue body and a red head"])
    assert float(a @ b) < 0.9
    assert encoder_from_spec(enc.spec()).encode(["x y"]).tolist() == enc.encode(["x y"]).tolist()


def test_default_encoder_loads_bundled_minilm_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = SentenceTransformerEncoder()
    emb = enc.encode(["a bird with a red body", "a bird with a red body.", "a car"])
    assert emb.shape == (3, 384) and enc.dim == 384
    assert emb[0] @ emb[1] > emb[0] @ emb[2]


def test_unknown_dataset_is_a_clear_error(tmp_path):
    from t2igan.data import T2IDataModule

    with pytest.raises(ValueError, match="unknown dataset"):
        T2IDataModule(dataset="imagenet", root=str(tmp_path), text_encoder=HashingEncoder())


def test_table_errors_name_the_line_an_editor_shows(tmp_path):
    from t2igan.data.files import read_table

    path = tmp_path / "images.txt"
    path.write_text("1 a.jpg\n\n2\n")  # line 3 lacks its field; line 2 is blank
    with pytest.raises(ValueError, match=r"images.txt, line 3: expected 2 fields"):
        read_table(path, 2)


@pytest.mark.parametrize("args", [{"dim": 0}, {"ngrams": 0}])
def test_hashing_encoder_refuses_sizes_that_embed_nothing(args):
    with pytest.raises(ValueError, match="every caption embeds as zeros"):
        HashingEncoder(**args)
