"""Oxford-102 flowers (Nilsback and Zisserman, 2008) with the captions of Reed et al. (CVPR 2016).

Layout: ``jpg/image_XXXXX.jpg``, ``imagelabels.mat`` (``labels``, 1 x 8189, values 1..102; image
i has label ``labels[0, i - 1]``), ``setid.mat`` (``trnid``, ``valid``, ``tstid``: 1-based image
ids) and Reed's captions ``text_c10/class_XXXXX/image_XXXXX.txt`` (label 1 is ``class_00001``).

Splits:
    ``class``: the papers split flowers by class, 82 train+val / 20 test classes. Their class
    lists (Reed's ``trainvalclasses.txt`` / ``testclasses.txt``, lines like ``class_00001``) are
    used when they are in the root; they could not be found in any public copy, so otherwise
    t2igan's own deterministic split is used: the 20 test classes are the labels divisible by 5
    (:data:`T2IGAN_TEST_CLASSES`). Results on it are not comparable with the papers' numbers.
    ``val`` is the test split (the papers have no validation set).
    ``official``: the image-level ``setid.mat`` split (1,020 train, 1,020 val, 6,149 test).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from t2igan.data.contract import Split
from t2igan.data.files import (
    EmptySplitError,
    ImageFiles,
    MissingDataError,
    keep_present,
    read_captions,
    read_lines,
    require,
)

log = logging.getLogger(__name__)

#: t2igan's documented class split of Oxford-102 (the papers' lists are not public): the 20 test
#: classes are the labels divisible by 5; the other 82 are for training.
T2IGAN_TEST_CLASSES = tuple(range(5, 101, 5))
SPLIT_MODES = ("class", "official")
FETCH = "Download and extract it with `t2igan download flowers --root {root}`."


def _class_list(path: Path) -> list[int]:
    return [int(line.strip().removeprefix("class_")) for line in read_lines(path)]


class FlowersReader:
    """Reader for Oxford-102 with captions.

    Args:
        root: the folder holding ``jpg/``, ``imagelabels.mat`` and ``setid.mat``.
        text_dir: Reed's ``text_c10`` folder; default ``root/text_c10``.
        split: ``class`` (82 / 20 classes) or ``official`` (``setid.mat``).
        captions_per_image: captions required per image (the first ones are kept; fewer is an
            error); None keeps every caption.
        skip_missing: leave out, with a logged warning, images whose image or caption file is
            missing; by default that is an error.
        embeddings: a folder of Reed's ``class_XXXXX/image_XXXXX.t7`` files with the papers'
            caption embeddings.
    """

    name = "flowers"

    def __init__(
        self,
        root: str | Path,
        text_dir: str | Path | None = None,
        split: str = "class",
        captions_per_image: int | None = 10,
        skip_missing: bool = False,
        embeddings: str | Path | None = None,
    ) -> None:
        if split not in SPLIT_MODES:
            raise ValueError(f"unknown flowers split {split!r}; choose one of {SPLIT_MODES}")
        from scipy.io import loadmat

        self.root = Path(root)
        fix = FETCH.format(root=self.root.parent)
        require(self.root, "the Oxford-102 folder (jpg/, imagelabels.mat, setid.mat)", fix)
        labels_path = require(self.root / "imagelabels.mat", "Oxford-102's imagelabels.mat", fix)
        self.labels = loadmat(labels_path)["labels"].reshape(-1).astype(int)
        self.setid = None
        if split == "official":
            setid = loadmat(require(self.root / "setid.mat", "Oxford-102's setid.mat", fix))
            self.setid = {k: setid[k].reshape(-1).astype(int) for k in ("trnid", "valid", "tstid")}
        self.text_dir = Path(text_dir) if text_dir else self.root / "text_c10"
        if not self.text_dir.is_dir():
            raise MissingDataError(
                f"{self.text_dir} not found: expected Reed et al.'s flower captions "
                "(cvpr2016_flowers.tar.gz, text_c10/class_XXXXX/image_XXXXX.txt). Extract them "
                "there or pass text_dir."
            )
        self.split_mode = split
        self.captions_per_image = captions_per_image
        self.skip_missing = skip_missing
        self.embeddings = Path(embeddings) if embeddings else None

    def test_classes(self) -> tuple[int, ...]:
        """The 20 held-out classes: Reed's ``testclasses.txt`` if present, else t2igan's."""
        path = self.root / "testclasses.txt"
        return tuple(_class_list(path)) if path.exists() else T2IGAN_TEST_CLASSES

    def split_ids(self, split: str) -> np.ndarray:
        """1-based image ids of ``split`` (train, val or test)."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}; choose train, val or test")
        if self.setid is not None:
            return np.sort(self.setid[{"train": "trnid", "val": "valid", "test": "tstid"}[split]])
        held_out = np.isin(self.labels, self.test_classes())
        return np.flatnonzero(held_out != (split == "train")) + 1

    def key(self, image_id: int) -> str:
        return f"class_{self.labels[image_id - 1]:05d}/image_{image_id:05d}"

    def load(self, split: str) -> Split:
        """The images of ``split`` with captions and labels (0-based class)."""
        ids = self.split_ids(split)
        paths = [self.root / "jpg" / f"image_{i:05d}.jpg" for i in ids]
        texts = [self.text_dir / f"{self.key(i)}.txt" for i in ids]
        present = keep_present(paths, texts, self.skip_missing, f"flowers {split}",
                               FETCH.format(root=self.root.parent))  # fmt: skip
        ids = ids[present]
        paths = [p for p, ok in zip(paths, present) if ok]
        texts = [t for t, ok in zip(texts, present) if ok]
        if len(ids) == 0:
            raise EmptySplitError(f"flowers {split} split has no images in {self.root}", split)
        keys = [self.key(i) for i in ids]
        caption_emb = None
        if self.embeddings is not None:
            from t2igan.data.paper_files import embeddings_for

            caption_emb = embeddings_for(self.embeddings, keys,
                                         "train" if split == "train" else "test")  # fmt: skip
        return Split(
            images=ImageFiles(paths),
            captions=[read_captions(t, self.captions_per_image) for t in texts],
            labels=self.labels[ids - 1] - 1,
            names=keys,
            caption_emb=caption_emb,
        )

    def sources(self) -> list[Path]:
        """The annotation files a cache built from this reader depends on."""
        names = ["imagelabels.mat", "setid.mat", "testclasses.txt"]
        return [self.root / n for n in names if (self.root / n).exists()]
