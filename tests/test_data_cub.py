"""CUB-200-2011 reader: layout, splits, boxes and parts, StackGAN crop, bad input, real files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2igan.data.contract import CUB_PARTS
from t2igan.data.cub import STACKGAN_TEST_CLASSES, CUBReader, stackgan_crop
from t2igan.data.dataset import TextImageDataset
from t2igan.data.files import MissingDataError
from t2igan.data.paper_files import read_pickle

from .conftest import SHARED_DATA
from .data_fixtures import cub_keys, make_cub, write_stackgan

LW, RW, BEAK = CUB_PARTS.index("left wing"), CUB_PARTS.index("right wing"), CUB_PARTS.index("beak")


@pytest.fixture
def cub(tmp_path):
    return make_cub(tmp_path)


def test_class_split_is_disjoint_and_follows_images_txt_order(cub):
    reader = CUBReader(cub)
    train, test = reader.load("train"), reader.load("test")
    assert set(train.labels) == {1, 6} and set(test.labels) == {0, 3}  # 0-based class ids
    assert not set(train.names) & set(test.names)
    keys = cub_keys(cub)  # images.txt order, which is not name order
    assert keys != sorted(keys)
    assert train.names == [k for k in keys if k in set(train.names)]
    assert reader.load("val").names == test.names  # no validation set: val is test


def test_annotations_are_normalised_per_image(cub):
    reader = CUBReader(cub, split="official")
    for split in (reader.load("train"), reader.load("test")):  # image 2 is grey, 3 CMYK
        _check_image_annotations(split)
    assert split.captions[0][3] == f"caption 3 of image {split.names[0]}."


def _check_image_annotations(split):
    for i in range(len(split)):
        img = split.images[i]
        h, w = img.shape[:2]
        assert img.dtype == np.uint8 and img.shape[2] == 3  # greyscale and CMYK become RGB
        np.testing.assert_allclose(split.boxes[i], [5 / w, 6 / h, 0.5, 0.5], rtol=1e-6)
        np.testing.assert_allclose(split.keypoints[i, LW], [10 / w, 20 / h, 1], rtol=1e-6)
        np.testing.assert_allclose(split.keypoints[i, BEAK], [(w - 1) / w, (h - 1) / h, 1])
        assert not split.keypoints[i, RW].any()  # invisible parts are (0, 0, 0)


def test_windows_line_endings_read_like_unix(tmp_path):
    lf = CUBReader(make_cub(tmp_path / "lf")).load("train")
    crlf = CUBReader(make_cub(tmp_path / "crlf", crlf=True)).load("train")
    assert lf.names == crlf.names and lf.captions == crlf.captions
    assert not any("\r" in c for caps in crlf.captions for c in caps)
    np.testing.assert_array_equal(lf.keypoints, crlf.keypoints)


def test_official_split_reads_train_test_split(cub):
    reader = CUBReader(cub, split="official")
    ids = {k: i for i, k in enumerate(cub_keys(cub), 1)}
    assert all(ids[n] % 2 == 1 for n in reader.load("train").names)
    assert all(ids[n] % 2 == 0 for n in reader.load("test").names)


def test_stackgan_filenames_pickle_defines_the_class_split(cub):
    keys = cub_keys(cub)
    train = [k for k in keys if k.startswith(("001", "002"))][::-1]  # its own order
    test = [k for k in keys if k not in train]
    write_stackgan(cub.parent, "train", train, [int(k[:3]) for k in train])
    write_stackgan(cub.parent, "test", test, [int(k[:3]) for k in test])
    reader = CUBReader(cub)
    assert reader.load("train").names == train
    assert reader.load("test").names == test


def test_stackgan_bbox_crop(cub):
    reader = CUBReader(cub, split="official", bbox_crop=True)
    plain = CUBReader(cub, split="official").load("train")
    split = reader.load("train")
    h, w = plain.images[0].shape[:2]
    x0, y0, x1, y1 = stackgan_crop(np.array([5.0, 6.0, w / 2, h / 2]), w, h)
    r = int(max(w, h) / 2 * 0.75)
    assert (x0, y0) == (max(0, int(5 + w / 4) - r), max(0, int(6 + h / 4) - r))
    assert split.images[0].shape[:2] == (y1 - y0, x1 - x0)
    np.testing.assert_array_equal(split.images[0], plain.images[0][y0:y1, x0:x1])
    cw, ch = x1 - x0, y1 - y0
    np.testing.assert_allclose(split.boxes[0], [(5 - x0) / cw, (6 - y0) / ch, w / 2 / cw,
                                                h / 2 / ch], rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(split.keypoints[0, LW], [(10 - x0) / cw, (20 - y0) / ch, 1],
                               rtol=1e-5)  # fmt: skip


def test_flip_moves_the_left_wing_to_the_right_wing(cub):
    split = CUBReader(cub, split="official").load("train")
    emb = [np.zeros((len(c), 4), np.float32) for c in split.captions]
    ds = TextImageDataset(split, emb, 32, load_size=32, flip=True)
    ds._crop_flip = lambda i: (0, 0, True)
    kp = ds[0]["keypoints"]
    assert kp[LW].abs().sum() == 0
    torch.testing.assert_close(kp[RW], torch.tensor([1 - split.keypoints[0, LW, 0],
                                                     split.keypoints[0, LW, 1], 1.0]))  # fmt: skip


def test_missing_root_names_path_and_command(tmp_path):
    with pytest.raises(MissingDataError, match=r"nowhere.*t2igan download cub"):
        CUBReader(tmp_path / "nowhere")


def test_missing_caption_folder(tmp_path):
    cub = make_cub(tmp_path)
    (tmp_path / "text_c10").rename(tmp_path / "elsewhere")
    with pytest.raises(MissingDataError, match="text_c10"):
        CUBReader(cub)
    assert len(CUBReader(cub, text_dir=tmp_path / "elsewhere").load("train")) == 6


def test_missing_image_is_an_error_unless_skipped(cub, caplog):
    victim = cub / "images" / f"{cub_keys(cub)[0]}.jpg"
    victim.unlink()
    with pytest.raises(MissingDataError, match=victim.name):
        CUBReader(cub, split="official").load("train")
    split = CUBReader(cub, split="official", skip_missing=True).load("train")
    assert cub_keys(cub)[0] not in split.names and len(split) == 5
    assert "skipping 1 of 6" in caplog.text


def test_corrupt_image_names_the_file(cub):
    victim = cub / "images" / f"{cub_keys(cub)[0]}.jpg"
    victim.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=victim.name):
        CUBReader(cub, split="official").load("train")


def test_too_few_captions(tmp_path):
    cub = make_cub(tmp_path, captions=5)
    with pytest.raises(ValueError, match=r"5 captions, 10 required"):
        CUBReader(cub).load("train")
    assert len(CUBReader(cub, captions_per_image=5).load("train").captions[0]) == 5


def test_box_outside_image_is_reported_not_clamped(cub):
    path = cub / "bounding_boxes.txt"
    lines = path.read_text().splitlines()
    lines[0] = "1 5.0 6.0 500.0 10.0"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"outside their image.*" + cub_keys(cub)[0]):
        CUBReader(cub, split="official").load("train")


def test_part_outside_image_is_reported(cub):
    path = cub / "parts" / "part_locs.txt"
    text = path.read_text().replace("1 9 10.0 20.0 1", "1 9 1000.0 20.0 1", 1)
    path.write_text(text)
    with pytest.raises(ValueError, match="'left wing'"):
        CUBReader(cub, split="official").load("train")


# --- the real files -------------------------------------------------------------------------

REAL = SHARED_DATA / "birds" / "CUB_200_2011"
real = pytest.mark.skipif(not REAL.exists(), reason="shared real data not present")


@real
def test_real_known_box_and_part():
    split = CUBReader(REAL, split="official", skip_missing=True).load("test")
    i = split.names.index("001.Black_footed_Albatross/Black_Footed_Albatross_0002_55")
    w, h = 500, 347  # the image's size; bounding_boxes.txt id 3: 14.0 112.0 388.0 186.0
    assert split.images[i].shape == (h, w, 3)
    np.testing.assert_allclose(split.boxes[i], [14 / w, 112 / h, 388 / w, 186 / h], rtol=1e-6)
    # part_locs.txt: "3 9 170.0 198.0 1" (left wing), "3 7 0.0 0.0 0" (left eye)
    np.testing.assert_allclose(split.keypoints[i, LW], [170 / w, 198 / h, 1], rtol=1e-6)
    assert not split.keypoints[i, CUB_PARTS.index("left eye")].any()
    assert split.captions[i][0].startswith("the bird has head and beak proportional")
    assert len(split.captions[i]) == 10


@real
def test_real_stackgan_split():
    test_classes = {int(c) for c in read_pickle(REAL.parent / "test" / "class_info.pickle")}
    train_classes = {int(c) for c in read_pickle(REAL.parent / "train" / "class_info.pickle")}
    assert test_classes == set(STACKGAN_TEST_CLASSES) and len(train_classes) == 150
    assert not test_classes & train_classes
    reader = CUBReader(REAL, skip_missing=True)
    split = reader.load("test")
    assert len(split) == 62 and set(split.labels + 1) <= test_classes
    order = [str(n) for n in read_pickle(REAL.parent / "test" / "filenames.pickle")]
    assert split.names == [n for n in order if n in set(split.names)]
    with pytest.raises(MissingDataError, match="train split"):
        reader.load("train")  # the subset holds test classes only
