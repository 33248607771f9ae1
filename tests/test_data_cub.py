"""CUB-200-2011 reader: layout, splits, boxes and parts, StackGAN crop, bad input, real files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2igan.data.contract import CUB_PARTS
from t2igan.data.cub import (
    BOX_TOLERANCE_PX,
    STACKGAN_TEST_CLASSES,
    CUBReader,
    clip_boxes,
    stackgan_crop,
)
from t2igan.data.dataset import TextImageDataset
from t2igan.data.files import MissingDataError
from t2igan.data.paper_files import read_pickle

from .conftest import SHARED_DATA
from .data_fixtures import REAL_OFF_BY_ONE, cub_keys, make_cub, write_stackgan

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
    with pytest.raises(ValueError, match="'left wing'") as err:
        CUBReader(cub, split="official").load("train")
    assert "at (1000, 20)" in str(err.value) and "np." not in str(err.value)


def _set_box(cub, image_id: int, box: str) -> None:
    path = cub / "bounding_boxes.txt"
    lines = [f"{image_id} {box}" if int(line.split()[0]) == image_id else line
             for line in path.read_text().splitlines()]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def test_official_boxes_one_pixel_past_the_edge_are_clipped(tmp_path, caplog):
    """Real rows of the official bounding_boxes.txt (ids 47, 757, 1233, 1241) end one pixel past
    their image: they are accepted, clipped to the image, and reported."""
    cub = make_cub(tmp_path, real_rows=REAL_OFF_BY_ONE)
    reader = CUBReader(cub, split="official")
    train, test = reader.load("train"), reader.load("test")  # raised before the fix
    for _, key, box, (w, h), is_train in REAL_OFF_BY_ONE:
        split = train if is_train else test
        x, y, bw, bh = (float(v) for v in box.split())
        assert x + bw == w + 1 or y + bh == h + 1  # the official row overruns by one pixel
        i = split.names.index(key)
        clipped = [x, y, min(x + bw, w) - x, min(y + bh, h) - y]
        np.testing.assert_allclose(split.boxes[i], np.array(clipped) / [w, h, w, h], rtol=1e-6)
        assert (split.boxes[i, :2] + split.boxes[i, 2:] <= 1).all()
        assert key in split.extra["clipped_boxes"]
    assert len(test.extra["clipped_boxes"]) == 2 and len(train.extra["clipped_boxes"]) == 2
    assert "2 bounding boxes overran their image by at most" in caplog.text
    assert "image id 47" in caplog.text and "(5, 127, 496, 131)" in caplog.text
    # the other images' boxes are untouched
    assert not any(n.startswith("00") and "Bird_" in n for n in test.extra["clipped_boxes"])


def test_official_off_by_one_boxes_with_the_bbox_crop(tmp_path):
    cub = make_cub(tmp_path, real_rows=REAL_OFF_BY_ONE)
    split = CUBReader(cub, split="official", bbox_crop=True).load("test")
    i = split.names.index(REAL_OFF_BY_ONE[0][1])  # id 47: 5 127 496 131 in a 500-pixel width
    assert split.images[i].shape[1] <= 500
    assert (split.boxes[i, :2] >= 0).all() and split.boxes[i, 0] + split.boxes[i, 2] <= 1 + 1e-6


def test_box_tolerance_edge(cub):
    """Overrunning by BOX_TOLERANCE_PX is clipped; one pixel more is an error."""
    w, h = 100, 70
    boxes = np.array([[5.0, 6.0, w - 5 + BOX_TOLERANCE_PX, 10.0],
                      [5.0, 6.0, w - 5 + BOX_TOLERANCE_PX + 1, 10.0],
                      [-BOX_TOLERANCE_PX, 6.0, 20.0, 10.0],
                      [5.0, 6.0, 0.0, 10.0]])  # fmt: skip
    out, clipped, bad = clip_boxes(boxes, np.array([[w, h]] * 4, dtype=float))
    assert clipped.tolist() == [True, False, True, False]
    assert bad.tolist() == [False, True, False, True]
    np.testing.assert_allclose(out[0], [5, 6, w - 5, 10])
    np.testing.assert_allclose(out[2], [0, 6, 20 - BOX_TOLERANCE_PX, 10])
    iw = 64  # fixture image id 1 is 64 x 96 (SIZES[1]), in the official train split
    _set_box(cub, 1, f"5.0 6.0 {iw - 5 + BOX_TOLERANCE_PX} 10.0")
    split = CUBReader(cub, split="official").load("train")
    assert split.extra["clipped_boxes"] == [cub_keys(cub)[0]]
    _set_box(cub, 1, f"5.0 6.0 {iw - 5 + BOX_TOLERANCE_PX + 1} 10.0")
    with pytest.raises(ValueError, match=f"outside their image by more than {BOX_TOLERANCE_PX}"):
        CUBReader(cub, split="official").load("train")


def test_box_error_counts_every_split_in_plain_numbers(cub):
    """A box far outside is an error; the count is over all splits, the numbers are plain."""
    _set_box(cub, 1, "5.0 6.0 500.0 10.0")  # id 1: official train
    _set_box(cub, 2, "5.0 6.0 10.0 400.0")  # id 2: official test
    _set_box(cub, 3, "5.0 6.0 0.0 10.0")  # id 3 (train): no area
    with pytest.raises(ValueError, match="outside their image") as err:
        CUBReader(cub, split="official").load("test")
    text = str(err.value)
    assert text.startswith("3 bounding boxes lie outside their image by more than 2 px")
    assert "all splits: 12 images checked" in text
    assert "(5, 6, 10, 400)" in text and "image id 2" in text and cub_keys(cub)[1] in text
    assert "np.float64" not in text and "np." not in text


def test_class_split_fallback_is_logged_once(cub, caplog):
    reader = CUBReader(cub)
    reader.load("train"), reader.load("test"), reader.load("val")
    assert caplog.text.count("built-in 50 test classes") == 1
    caplog.clear()
    write_stackgan(cub.parent, "train", cub_keys(cub)[:2], [1, 1])
    write_stackgan(cub.parent, "test", cub_keys(cub)[2:4], [1, 1])
    CUBReader(cub).load("train")
    assert "built-in" not in caplog.text


def test_missing_images_folder_is_named_as_such(cub):
    import shutil

    shutil.rmtree(cub / "images")
    for skip in (False, True):
        with pytest.raises(MissingDataError) as err:
            CUBReader(cub, skip_missing=skip).load("train")
        text = str(err.value)
        assert f"{cub / 'images'} not found" in text and "t2igan download cub" in text
        assert "lack their image" not in text


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
def test_real_boxes_are_read_as_shipped():
    """The official bounding_boxes.txt (all 11,788 rows): its one-pixel overruns (ids 47, 757,
    1233, ...) are the rows REAL_OFF_BY_ONE copies; every image here reads."""
    rows = {int(line.split()[0]): line.split(None, 1)[1]
            for line in (REAL / "bounding_boxes.txt").read_text().splitlines()}  # fmt: skip
    keys = {int(line.split()[0]): line.split()[1].rsplit(".", 1)[0]
            for line in (REAL / "images.txt").read_text().splitlines()}  # fmt: skip
    for image_id, key, box, *_ in REAL_OFF_BY_ONE:
        assert rows[image_id].split() == box.split() and keys[image_id] == key
    reader = CUBReader(REAL, split="official", skip_missing=True)
    assert len(reader.load("train")) + len(reader.load("test")) == 62


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
