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
    EmptySplitError,
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
#: How far (pixels) a bounding box may overrun its image and still be accepted, clipped to the
#: image. Several official boxes end one pixel past the edge (x + w = W + 1 or y + h = H + 1,
#: e.g. image ids 47, 757 and 1233); a box further out is an error.
BOX_TOLERANCE_PX = 2


def _num(v) -> str:
    """A number as plain text (``123`` or ``12.5``), never a numpy repr."""
    return f"{float(v):g}"


def _nums(values) -> str:
    return "(" + ", ".join(_num(v) for v in values) + ")"


def clip_boxes(boxes: np.ndarray, sizes: np.ndarray, tolerance: float = BOX_TOLERANCE_PX):
    """Boxes (N, 4) pixel (x, y, w, h) in images of ``sizes`` (N, 2) (w, h).

    Returns (clipped boxes, clipped mask, bad mask): a box that overruns its image by at most
    ``tolerance`` pixels on any side is clipped to the image; one further out, or with no area
    (before or after clipping), is bad and left as it is.
    """
    w, h = sizes[:, 0], sizes[:, 1]
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    overrun = np.max(np.stack([-x0, -y0, x1 - w, y1 - h]), axis=0)
    cx0, cy0 = np.maximum(x0, 0), np.maximum(y0, 0)
    cx1, cy1 = np.minimum(x1, w), np.minimum(y1, h)
    bad = (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0) | (overrun > tolerance)
    bad |= (cx1 <= cx0) | (cy1 <= cy0)
    clipped = (overrun > 0) & ~bad
    out = boxes.copy()
    out[clipped] = np.stack([cx0, cy0, cx1 - cx0, cy1 - cy0], axis=1)[clipped]
    return out, clipped, bad


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
        self._fallback_logged = False
        self._sizes: dict[int, tuple[int, int]] = {}  # row -> (w, h), read from image headers
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
        if not self._fallback_logged:
            log.warning(
                "CUB class split: no StackGAN {train,test}/filenames.pickle in %s or %s; using "
                "the built-in 50 test classes (t2igan.data.cub.STACKGAN_TEST_CLASSES), in "
                "images.txt order", self.root.parent, self.root,
            )  # fmt: skip
            self._fallback_logged = True
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
        if not (self.root / "images").is_dir():
            raise MissingDataError(
                f"{self.root / 'images'} not found: expected the CUB images folder there "
                f"(images/<class>/<image>.jpg). {FETCH.format(root=self.root.parent)}"
            )
        paths = [self.root / "images" / self.files[r] for r in rows]
        texts = [self.text_dir / f"{self.keys[r]}.txt" for r in rows]
        present = keep_present(paths, texts, self.skip_missing, f"CUB {split}",
                               FETCH.format(root=self.root.parent))  # fmt: skip
        rows = rows[present]
        paths = [p for p, ok in zip(paths, present) if ok]
        texts = [t for t, ok in zip(texts, present) if ok]
        if len(rows) == 0:
            raise EmptySplitError(f"CUB {split} split ({self.split_mode}) has no images in "
                                  f"{self.root}", split=split)  # fmt: skip
        captions = [read_captions(t, self.captions_per_image) for t in texts]
        sizes = self._image_sizes(rows)  # (N, 2) w, h
        boxes, clipped, bad = clip_boxes(self.boxes_px[rows], sizes)
        kp = self.keypoints_px[rows].copy()
        if bad.any():
            self._box_error(rows, bad)
        self._check_parts(rows, kp, sizes)
        if clipped.any():
            i = int(np.flatnonzero(clipped)[0])
            log.warning(
                "CUB %s: %d bounding boxes overran their image by at most %d px "
                "(BOX_TOLERANCE_PX) and were clipped to it, e.g. image id %d %s: %s in a %d x %d "
                "image (bounding_boxes.txt)", split, int(clipped.sum()), BOX_TOLERANCE_PX,
                int(self.ids[rows[i]]), self.files[rows[i]], _nums(self.boxes_px[rows[i]]),
                int(sizes[i, 0]), int(sizes[i, 1]),
            )  # fmt: skip
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
            extra={
                "clipped_boxes": [self.keys[r] for r in rows[clipped]],
                "box_tolerance_px": BOX_TOLERANCE_PX,
            },  # fmt: skip
        )

    def _image_sizes(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), 2) image sizes (w, h) from the file headers (read once per image)."""
        for r in rows:
            if int(r) not in self._sizes:
                self._sizes[int(r)] = image_size(self.root / "images" / self.files[r])
        return np.array([self._sizes[int(r)] for r in rows], dtype=np.float64).reshape(-1, 2)

    def _present_rows(self) -> np.ndarray:
        """Rows of every image (all splits) whose file is there and has a readable header."""
        present = []
        for r in range(len(self.ids)):
            if (self.root / "images" / self.files[r]).exists():
                try:
                    self._image_sizes(np.array([r]))
                except ValueError:  # a corrupt image is reported when its split is loaded
                    continue
                present.append(r)
        return np.array(present, dtype=int)

    def _box_error(self, rows: np.ndarray, bad: np.ndarray) -> None:
        """Raise the error for boxes far outside their image, counted over all splits."""
        every = self._present_rows()
        _, _, bad_all = clip_boxes(self.boxes_px[every], self._image_sizes(every))
        first = int(rows[bad][0])  # one of the split being loaded, then up to two more
        examples = []
        for r in [first, *[int(r) for r in every[bad_all] if r != first][:2]]:
            (w, h), path = self._sizes[r], self.root / "images" / self.files[r]
            examples.append(f"image id {int(self.ids[r])} {path}: box (x, y, w, h) = "
                            f"{_nums(self.boxes_px[r])} in a {w} x {h} image")  # fmt: skip
        raise ValueError(
            f"{int(bad_all.sum())} bounding boxes lie outside their image by more than "
            f"{BOX_TOLERANCE_PX} px or have no area (all splits: {len(every)} images checked), "
            f"e.g. {'; '.join(examples)} ({self.root / 'bounding_boxes.txt'}). Boxes that "
            f"overrun their image by at most {BOX_TOLERANCE_PX} px are clipped; these are not."
        )

    def _parts_outside(self, kp: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        w, h = sizes[:, 0], sizes[:, 1]
        vis = kp[..., 2] > 0
        return vis & ((kp[..., 0] < 0) | (kp[..., 1] < 0) | (kp[..., 0] > w[:, None])
                      | (kp[..., 1] > h[:, None]))  # fmt: skip

    def _check_parts(self, rows: np.ndarray, kp: np.ndarray, sizes: np.ndarray) -> None:
        """Visible parts must lie inside their image: reported (counted over all splits), never
        clamped."""
        out = self._parts_outside(kp, sizes)
        if not out.any():
            return
        every = self._present_rows()
        total = int(self._parts_outside(self.keypoints_px[every], self._image_sizes(every)).sum())
        i, k = (int(v[0]) for v in np.nonzero(out))
        w, h = (int(v) for v in sizes[i])
        raise ValueError(
            f"{total} visible part locations lie outside their image (all splits: {len(every)} "
            f"images checked), e.g. {CUB_PARTS[k]!r} of image id {int(self.ids[rows[i]])} "
            f"{self.root / 'images' / self.files[rows[i]]} at {_nums(kp[i, k, :2])} in a {w} x "
            f"{h} image ({self.root / 'parts/part_locs.txt'})"
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
