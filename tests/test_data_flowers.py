"""Oxford-102 reader: labels, class and setid splits, captions, real files."""

from __future__ import annotations

import numpy as np
import pytest

from t2igan.data.files import MissingDataError
from t2igan.data.flowers import T2IGAN_TEST_CLASSES, FlowersReader

from .conftest import SHARED_DATA
from .data_fixtures import make_flowers

LABELS = (1, 1, 5, 5, 2, 10, 3, 3)


def test_class_split(tmp_path):
    reader = FlowersReader(make_flowers(tmp_path, LABELS))
    train, test = reader.load("train"), reader.load("test")
    assert len(T2IGAN_TEST_CLASSES) == 20 and all(c % 5 == 0 for c in T2IGAN_TEST_CLASSES)
    assert set(test.labels + 1) == {5, 10} and set(train.labels + 1) == {1, 2, 3}
    assert train.names[0] == "class_00001/image_00001"
    assert train.captions[0][2] == "flower 1 caption 2."
    assert train.images[0].shape == (96, 64, 3)  # image 1 is SIZES[1], 64 x 96


def test_reed_class_lists_are_used_when_present(tmp_path):
    root = make_flowers(tmp_path, LABELS)
    (root / "testclasses.txt").write_text("class_00001\nclass_00003\n")
    test = FlowersReader(root).load("test")
    assert set(test.labels + 1) == {1, 3}


def test_official_setid_split(tmp_path):
    reader = FlowersReader(make_flowers(tmp_path, LABELS), split="official")
    names = {s: reader.load(s).names for s in ("train", "val", "test")}
    assert [n[-5:] for n in names["train"]] == ["00001", "00004", "00007"]
    assert [n[-5:] for n in names["val"]] == ["00002", "00005", "00008"]
    assert not set(names["train"]) & set(names["test"])


def test_missing_files(tmp_path):
    with pytest.raises(MissingDataError, match="t2igan download flowers"):
        FlowersReader(tmp_path / "nope")
    root = make_flowers(tmp_path, LABELS)
    (root / "jpg" / "image_00002.jpg").unlink()
    with pytest.raises(MissingDataError, match="image_00002.jpg"):
        FlowersReader(root).load("train")
    assert (
        "class_00001/image_00002" not in FlowersReader(root, skip_missing=True).load("train").names
    )


REAL = SHARED_DATA / "flowers"


@pytest.mark.skipif(not REAL.exists(), reason="shared real data not present")
def test_real_labels_and_setid(tmp_path):
    # There are no public flower captions: give each real image one caption of our own.
    text = tmp_path / "text_c10"
    listed = [line.split() for line in (REAL / "subset_images.txt").read_text().splitlines()]
    for name, label in listed:
        path = text / f"class_{int(label):05d}" / name.replace(".jpg", ".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"a flower of class {label}.\n")
    reader = FlowersReader(REAL, text_dir=text, captions_per_image=1, skip_missing=True)
    assert reader.labels.shape == (8189,) and reader.labels[0] == 77  # image 1 has label 77
    train, test = reader.load("train"), reader.load("test")
    assert len(train) + len(test) == 60 == len(listed)
    assert set(test.labels + 1) == {20}  # of classes 1, 20, 51, 73, 77, 88 only 20 is held out
    i = train.names.index("class_00077/image_00001")
    assert train.captions[i] == ["a flower of class 77."]
    assert train.images[i].dtype == np.uint8 and train.images[i].shape[2] == 3
    official = FlowersReader(REAL, text_dir=text, split="official", captions_per_image=1,
                             skip_missing=True)  # fmt: skip
    sizes = {k: len(v) for k, v in official.setid.items()}
    assert sizes == {"trnid": 1020, "valid": 1020, "tstid": 6149}
