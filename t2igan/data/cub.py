"""CUB-200-2011 (Wah et al., 2011) with the captions of Reed et al. (CVPR 2016).

Reads the official layout (``images.txt``, ``classes.txt``, ``image_class_labels.txt``,
``train_test_split.txt``, ``bounding_boxes.txt``, ``parts/parts.txt``, ``parts/part_locs.txt``,
``images/``) and Reed's captions (``text_c10/<class>/<image>.txt``, 10 lines per image), found
in ``<root>/text_c10`` or, as in the StackGAN/AttnGAN ``data/birds`` layout, beside the root.

Splits:
    ``class``: the class-disjoint split of the text-to-image papers, 150 training and 50 test
    classes. It is read from StackGAN's ``{train,test}/filenames.pickle`` when they are beside
    the root (or inside it); otherwise the same 50 test classes, shipped here as
    :data:`STACKGAN_TEST_CLASSES`, are used.
    ``official``: the image-level split of ``train_test_split.txt`` (5,994 / 5,794 images).
    Neither has a validation set: ``val`` is the test split (the papers evaluate on the held-out
    classes and select no model on a validation set).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from t2igan.data.contract import CUB_PARTS, Split
from t2igan.data.files import (
    ImageFiles,
    MissingDataError,
    image_size,
    keep_present,
    read_captions,
    read_lines,
    read_table,
    require,
)

log = logging.getLogger(__name__)

#: The 50 test classes of StackGAN / AttnGAN (1-based CUB class ids, from their
#: ``test/class_info.pickle``); the other 150 are the training classes.
STACKGAN_TEST_CLASSES = (
    1, 4, 6, 8, 9, 14, 23, 29, 31, 33, 34, 35, 36, 37, 38, 43, 49, 51, 53, 66, 72, 79, 83, 84, 86,
    91, 95, 96, 98, 101, 102, 103, 112, 114, 119, 121, 130, 135, 138, 147, 156, 163, 165, 166, 180,
    183, 185, 186, 187, 197,
)  # fmt: skip
SPLIT_MODES = ("class", "official")
FETCH = "Download and extract it with `t2igan download cub --root {root}`."


def stackgan_crop(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """StackGAN's crop around a bird: a square of side 1.5 x max(w, h) centred on the box,
    clipped to the image (as the authors' ``load_bbox``/``get_imgs`` do, so it is not square
    when the box is near the border). Returns the pixel window (x0, y0, x1, y1)."""
    x, y, w, h = box
    r = int(max(w, h) * 0.75)
    cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
    return np.array([max(0, cx - r), max(0, cy - r), min(width, cx + r), min(height, cy + r)])


def find_text_dir(root: Path) -> Path | None:
    """Reed's ``text_c10`` folder: inside the CUB root or beside it (StackGAN ``birds/``)."""
    for candidate in (root / "text_c10", root.parent / "text_c10"):
        if candidate.is_dir():
            return candidate
    return None


class CUBReader:
    """Reader for CUB-200-2011 with captions, boxes and the 15 part keypoints.

    Args:
        root: the ``CUB_200_2011`` folder (the one holding ``images.txt``).
        text_dir: Reed's ``text_c10`` folder; default: ``root/text_c10`` or ``root/../text_c10``.
        split: ``class`` (150 / 50 classes, the papers') or ``official`` (image-level).
        bbox_crop: crop around the bounding box as StackGAN does (see :func:`stackgan_crop`);
            boxes and keypoints are then relative to the crop, and parts the crop cuts off become
            invisible (0, 0, 0).
        captions_per_image: captions required per image (the first ones are kept; a file with
            fewer is an error); None keeps every caption.
        skip_missing: leave out, with a logged warning, images whose image or caption file is
            missing (to use a partial copy); by default a missing file is an error.
        embeddings: the papers' precomputed caption embeddings for these images: a StackGAN folder
            (``{train,test}/char-CNN-RNN-embeddings.pickle``) or a folder of Reed's icml2016
            ``.t7`` files (see :mod:`t2igan.data.paper_files`).
    """

    name = "cub"

    def __init__(
        self,
        root: str | Path,
        text_dir: str | Path | None = None,
        split: str = "class",
        bbox_crop: bool = False,
        captions_per_image: int | None = 10,
        skip_missing: bool = False,
        embeddings: str | Path | None = None,
    ) -> None:
        if split not in SPLIT_MODES:
            raise ValueError(f"unknown CUB split {split!r}; choose one of {SPLIT_MODES}")
        self.root = Path(root)
        fix = FETCH.format(root=self.root.parent)
        require(self.root, "the CUB-200-2011 folder (images.txt, images/, parts/ ...)", fix)
        self.text_dir = Path(text_dir) if text_dir else find_text_dir(self.root)
        if self.text_dir is None or not self.text_dir.is_dir():
            raise MissingDataError(
                f"no caption folder text_c10 in {self.root} or {self.root.parent}: expected Reed "
                "et al.'s captions (cvpr2016_cub.tar.gz, text_c10/<class>/<image>.txt). Extract "
                "them there or pass text_dir."
            )
        self.split_mode = split
        self.bbox_crop = bbox_crop
        self.captions_per_image = captions_per_image
        self.skip_missing = skip_missing
        self.embeddings = Path(embeddings) if embeddings else None
        self._read_metadata(fix)

    def _file(self, rel: str, fix: str) -> Path:
        return require(self.root / rel, f"the CUB annotation file {rel}", fix)

    def _read_metadata(self, fix: str) -> None:
        images = read_table(self._file("images.txt", fix), 2)
        labels = read_table(self._file("image_class_labels.txt", fix), 2)
        is_train = read_table(self._file("train_test_split.txt", fix), 2)
        boxes = read_table(self._file("bounding_boxes.txt", fix), 5)
        parts = read_table(self._file("parts/parts.txt", fix), 2)
        part_names = tuple(parts[k][0] for k in sorted(parts))
        if part_names != CUB_PARTS:
            raise ValueError(f"{self.root / 'parts/parts.txt'}: expected the 15 CUB parts "
                             f"{CUB_PARTS}, got {part_names}")  # fmt: skip
        ids = sorted(images)  # image ids, not names: images.txt is not sorted by name
        for name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", is_train),
                            ("bounding_boxes.txt", boxes)):  # fmt: skip
            if set(table) != set(ids):
                raise ValueError(f"{self.root / name}: image ids differ from images.txt "
                                 f"({len(table)} vs {len(ids)} ids)")  # fmt: skip
        self.ids = np.array(ids)
        self.files = [images[i][0] for i in ids]
        self.keys = [f.rsplit(".", 1)[0] for f in self.files]  # "001.Black.../Black_..._0046_18"
        self.labels = np.array([int(labels[i][0]) for i in ids])
        self.is_train = np.array([int(is_train[i][0]) == 1 for i in ids])
        self.boxes_px = np.array([[float(v) for v in boxes[i]] for i in ids], dtype=np.float64)
        locs = self._file("parts/part_locs.txt", fix)
        # 15 lines per image (176k in all): parse them in one go rather than line by line
        try:
            table = np.array(" ".join(read_lines(locs)).split(), dtype=np.float64).reshape(-1, 5)
        except ValueError as err:
            raise ValueError(f"{locs}: expected lines '<img> <part> <x> <y> <visible>' "
                             f"({err})") from err  # fmt: skip
        row = np.full(int(self.ids.max()) + 1, -1)
        row[self.ids] = np.arange(len(ids))
        img, part = table[:, 0].astype(int), table[:, 1].astype(int) - 1
        if img.max() >= len(row) or (row[img] < 0).any() or part.min() < 0 or part.max() > 14:
            raise ValueError(f"{locs}: image or part ids not in images.txt / parts.txt")
        kp = np.zeros((len(ids), len(CUB_PARTS), 3))
        kp[row[img], part] = table[:, 2:]
        self.keypoints_px = kp

    def split_rows(self, split: str) -> np.ndarray:
        """Row indices (into the metadata) of the images of ``split`` (train, val or test)."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}; choose train, val or test")
        train = split == "train"
        if self.split_mode == "official":
            return np.flatnonzero(self.is_train == train)
        pickled = self._stackgan_filenames("train" if train else "test")
        if pickled is not None:
            row = {k: r for r, k in enumerate(self.keys)}
            missing = [k for k in pickled if k not in row]
            if missing:
                raise ValueError(f"{len(missing)} names in StackGAN's filenames.pickle are not "
                                 f"in images.txt, e.g. {missing[:3]}")  # fmt: skip
            return np.array([row[k] for k in pickled], dtype=int)
        held_out = np.isin(self.labels, STACKGAN_TEST_CLASSES)
        return np.flatnonzero(held_out != train)

    def _stackgan_filenames(self, split: str) -> list[str] | None:
        from t2igan.data.paper_files import read_pickle

        for base in (self.root.parent, self.root):
            path = base / split / "filenames.pickle"
            if path.exists():
                return [str(n) for n in read_pickle(path)]
        return None

    def load(self, split: str) -> Split:
        """The images of ``split`` with captions, labels (0-based class), boxes and parts."""
        rows = self.split_rows(split)
        paths = [self.root / "images" / self.files[r] for r in rows]
        texts = [self.text_dir / f"{self.keys[r]}.txt" for r in rows]
        present = keep_present(paths, texts, self.skip_missing, f"CUB {split}",
                               FETCH.format(root=self.root.parent))  # fmt: skip
        rows = rows[present]
        paths = [p for p, ok in zip(paths, present) if ok]
        texts = [t for t, ok in zip(texts, present) if ok]
        if len(rows) == 0:
            raise MissingDataError(f"CUB {split} split ({self.split_mode}) has no images in "
                                   f"{self.root}")  # fmt: skip
        captions = [read_captions(t, self.captions_per_image) for t in texts]
        sizes = np.array([image_size(p) for p in paths], dtype=np.float64)  # (N, 2) w, h
        boxes, kp = self.boxes_px[rows].copy(), self.keypoints_px[rows].copy()
        self._check(paths, boxes, kp, sizes)
        if self.bbox_crop:
            windows = np.stack([stackgan_crop(b, w, h) for b, (w, h) in zip(boxes, sizes)])
        else:
            windows = np.concatenate([np.zeros_like(sizes), sizes], axis=1)
        origin, extent = windows[:, None, :2], (windows[:, 2:] - windows[:, :2])[:, None]
        boxes[:, :2] = (boxes[:, :2] - origin[:, 0]) / extent[:, 0]
        boxes[:, 2:] /= extent[:, 0]
        vis = kp[..., 2] > 0
        kp[..., :2] = (kp[..., :2] - origin) / extent
        inside = ((kp[..., :2] >= 0) & (kp[..., :2] <= 1)).all(-1)
        kp[~(vis & inside)] = 0.0  # invisible, or cut off by the bbox crop
        caption_emb = None
        if self.embeddings is not None:
            from t2igan.data.paper_files import embeddings_for

            caption_emb = embeddings_for(self.embeddings, [self.keys[r] for r in rows],
                                         "train" if split == "train" else "test")  # fmt: skip
        return Split(
            images=ImageFiles(paths, windows if self.bbox_crop else None),
            captions=captions,
            labels=self.labels[rows] - 1,
            names=[self.keys[r] for r in rows],
            boxes=boxes.astype(np.float32),
            keypoints=kp.astype(np.float32),
            part_names=CUB_PARTS,
            caption_emb=caption_emb,
        )

    def _check(self, paths, boxes, kp, sizes) -> None:
        """Boxes and visible parts must lie inside their image: reported, never clamped."""
        w, h = sizes[:, 0], sizes[:, 1]
        bad = ((boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
               | (boxes[:, 0] + boxes[:, 2] > w) | (boxes[:, 1] + boxes[:, 3] > h))  # fmt: skip
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{int(bad.sum())} bounding boxes lie outside their image, e.g. {paths[i]}: box "
                f"(x, y, w, h) = {tuple(boxes[i])} in a {int(w[i])} x {int(h[i])} image "
                f"(bounding_boxes.txt)"
            )
        vis = kp[..., 2] > 0
        out = vis & ((kp[..., 0] < 0) | (kp[..., 1] < 0) | (kp[..., 0] > w[:, None])
                     | (kp[..., 1] > h[:, None]))  # fmt: skip
        if out.any():
            i, k = (int(v[0]) for v in np.nonzero(out))
            raise ValueError(
                f"{int(out.sum())} visible part locations lie outside their image, e.g. "
                f"{CUB_PARTS[k]!r} of {paths[i]} at {tuple(kp[i, k, :2])} in a {int(w[i])} x "
                f"{int(h[i])} image (parts/part_locs.txt)"
            )

    def sources(self) -> list[Path]:
        """The annotation files a cache built from this reader depends on."""
        rels = ["images.txt", "image_class_labels.txt", "train_test_split.txt",
                "bounding_boxes.txt", "parts/parts.txt", "parts/part_locs.txt"]  # fmt: skip
        out = [self.root / r for r in rels]
        for split in ("train", "test"):
            for base in (self.root.parent, self.root):
                if (base / split / "filenames.pickle").exists():
                    out.append(base / split / "filenames.pickle")
                    break
        return out
