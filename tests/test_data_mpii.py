"""MPII human pose (GAWWN's MHP): Newell's HDF5, the official .mat, person crops, captions."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from t2igan.data.dataset import TextImageDataset
from t2igan.data.files import MissingDataError
from t2igan.data.mpii import MPII_PARTS, MPIIReader

from .conftest import SHARED_DATA
from .data_fixtures import _image, write_jsonl

NAMES = ["000000001.jpg", "000000002.jpg", "000000003.jpg"]


def _joints(k: int) -> np.ndarray:
    """16 joints in a 200 x 150 image, person k: joint j at (40 + 5 j + k, 30 + 4 j)."""
    j = np.arange(16)
    return np.stack([40 + 5 * j + k, 30 + 4 * j], axis=1).astype(float)


@pytest.fixture
def mpii(tmp_path):
    root = tmp_path / "mpii"
    for k, name in enumerate(NAMES):
        _image(root / "images" / name, (200, 150), k)
    (root / "annot").mkdir()
    for split in ("train", "valid"):
        with h5py.File(root / "annot" / f"{split}.h5", "w") as f:
            f["imgname"] = np.array([n.encode() for n in NAMES], dtype="S13")
            f["part"] = np.stack([_joints(k) for k in range(3)])
            vis = np.ones((3, 16))
            vis[1, 3] = 0
            f["visible"] = vis
            f["center"] = np.array([[100.0, 75.0]] * 3)
            f["scale"] = np.array([0.5, 0.5, 0.5])  # a 100-pixel square
            f["person"] = np.zeros(3)
    write_jsonl(root / "captions.jsonl", [
        {"image": NAMES[0], "captions": ["a man running.", "a runner."]},
        {"image": NAMES[1], "captions": ["a woman dancing."]},
        {"image": NAMES[2], "person": 0, "captions": ["a child jumping."]},
    ])  # fmt: skip
    return root


def test_newell_h5_crop_and_keypoints(mpii):
    split = MPIIReader(mpii).load("train")
    assert split.names == [f"{n}#0" for n in NAMES] and split.part_names == MPII_PARTS
    assert split.captions[0] == ["a man running.", "a runner."]
    img = split.images[0]
    assert img.shape == (100, 100, 3)  # window (50, 25) - (150, 125)
    # joint j of person k at (40 + 5 j + k, 30 + 4 j) -> ((x - 50) / 100, (y - 25) / 100)
    kp = split.keypoints[0]
    np.testing.assert_allclose(kp[12], [(40 + 60 - 50) / 100, (30 + 48 - 25) / 100, 1], rtol=1e-6)
    assert not kp[0].any()  # joint 0 at x = 40 lies left of the crop: invisible
    head = ((_joints(0)[8] + _joints(0)[9]) / 2 - [50, 25]) / 100
    np.testing.assert_allclose(kp[16], [*head, 1], rtol=1e-6)  # GAWWN's head point
    assert not split.keypoints[1, 3].any()  # not visible in the annotation


def test_flip_swaps_left_and_right_joints(mpii):
    split = MPIIReader(mpii).load("train")
    emb = [np.zeros((len(c), 4), np.float32) for c in split.captions]
    ds = TextImageDataset(split, emb, 100, flip=True)
    ds._crop_flip = lambda i: (0, 0, True)
    kp = ds[0]["keypoints"].numpy()
    rs, ls = MPII_PARTS.index("right shoulder"), MPII_PARTS.index("left shoulder")
    np.testing.assert_allclose(kp[ls], [1 - split.keypoints[0, rs, 0], split.keypoints[0, rs, 1],
                                        1], rtol=1e-6)  # fmt: skip


def test_official_mat(tmp_path, mpii):
    from scipy.io import savemat

    def rect(k):
        points = [{"id": j, "x": x, "y": y, "is_visible": 1} for j, (x, y) in
                  enumerate(_joints(k))]  # fmt: skip
        return {"objpos": {"x": 100.0, "y": 75.0 - 15 * 0.4}, "scale": 0.4,
                "annopoints": {"point": np.array(points, dtype=object)},
                "x1": 90.0, "y1": 20.0, "x2": 110.0, "y2": 40.0}  # fmt: skip

    annolist = np.array([{"image": {"name": n}, "annorect": rect(k)} for k, n in
                         enumerate(NAMES)], dtype=object)  # fmt: skip
    path = tmp_path / "mpii_human_pose_v1_u12_1.mat"
    savemat(path, {"RELEASE": {"annolist": annolist, "img_train": np.array([1, 1, 1]),
                               "single_person": np.array([1, 1, 1])}})  # fmt: skip
    reader = MPIIReader(mpii, annotations=path)
    train, test = reader.load("train"), reader.load("test")
    assert [n[:-2] for n in test.names] == NAMES[:1]  # annolist index 0: held out
    assert [n[:-2] for n in train.names] == NAMES[1:]
    # the same square as Newell's file: centre (100, 75), side 200 * 0.4 * 1.25 = 100
    from_h5 = MPIIReader(mpii).load("train")
    same = [j for j in range(16) if j != 3]  # joint 3 of person 1 is invisible in the h5 only
    np.testing.assert_allclose(train.keypoints[0, same], from_h5.keypoints[1, same], atol=1e-6)
    np.testing.assert_allclose(train.keypoints[0, 16], [0.5, 0.05, 1], atol=1e-6)  # head box


def test_captions_are_required(mpii):
    (mpii / "captions.jsonl").write_text(json.dumps({"image": NAMES[0], "captions": ["x"]}))
    with pytest.raises(MissingDataError, match="captions of 000000002.jpg"):
        MPIIReader(mpii).load("train")
    assert len(MPIIReader(mpii, skip_missing=True).load("train")) == 1
    (mpii / "captions.jsonl").write_text('{"image": "a.jpg"}\n')
    with pytest.raises(ValueError, match="line 1"):
        MPIIReader(mpii)


REAL = SHARED_DATA / "mpii"


@pytest.mark.skipif(not REAL.exists(), reason="shared real data not present")
def test_real_valid_h5(tmp_path):
    images = REAL / "images_and_json_mmpose"
    captions = write_jsonl(tmp_path / "c.jsonl", [
        {"image": p.name, "captions": [f"a person in {p.stem}."]} for p in images.glob("*.jpg")
    ])  # fmt: skip
    split = MPIIReader(REAL, captions=captions, images=images, skip_missing=True).load("val")
    assert len(split) == 5 and split.names[0] == "005808361.jpg#0"
    # valid.h5 row 0: centre (966, 410.78), scale 5.898 -> a 1180-pixel square from (376, -179)
    raw = json.loads((images / "test_mpii.json").read_text())
    row = next(r for r in raw if r["image"] == "005808361.jpg")
    assert abs(row["center"][1] + 15 * row["scale"] - 410.7773) < 0.01  # Newell's adjustment
    side = 200 * 5.898109866728492
    x0, y0 = round(966 - side / 2), round(410.7773184 - side / 2)
    ext = round(966 + side / 2) - x0
    np.testing.assert_allclose(split.keypoints[0, 0], [(804 - x0) / ext, (711 - y0) / ext, 1],
                               rtol=1e-6)  # r_ankle at (804, 711)  # fmt: skip
    assert split.images[0].shape == (ext, ext, 3)


def test_datamodule_reads_mhp(tmp_path, mpii):
    from t2igan.data import HashingEncoder, T2IDataModule

    captions = mpii / "captions.jsonl"
    captions.rename(tmp_path / "mine.jsonl")
    dm = T2IDataModule("mhp", root=str(tmp_path), source=str(mpii), image_size=32,
                       captions=str(tmp_path / "mine.jsonl"), batch_size=3,
                       text_encoder=HashingEncoder(dim=8))  # fmt: skip
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (3, 3, 32, 32) and batch["keypoints"].shape == (3, 17, 3)
