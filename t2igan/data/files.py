"""Helpers every dataset reader shares: text lines, caption files and lazily decoded images."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)


class MissingDataError(FileNotFoundError):
    """A dataset file or folder is not where it was expected; the message says how to get it."""


class EmptySplitError(MissingDataError):
    """A split has no images (in the raw files, or in a cache prepared without it).

    Args:
        message: what is missing and how to get it.
        split: the split (train, val or test).
    """

    def __init__(self, message: str, split: str) -> None:
        super().__init__(message)
        self.split = split


def require(path: Path, what: str, fix: str) -> Path:
    """``path`` if it exists, else a :class:`MissingDataError` naming it, ``what`` belongs there
    and the command (``fix``) that puts it there."""
    if not path.exists():
        raise MissingDataError(f"{path} not found: expected {what} there. {fix}")
    return path


def keep_present(
    paths: list[Path], texts: list[Path], skip_missing: bool, what: str, fetch: str
) -> np.ndarray:
    """Boolean mask of the images whose image and caption files both exist.

    A missing file is an error that names one and says how to get the data (``fetch``), unless
    ``skip_missing``: then the missing images are logged and left out.
    """
    present = np.array([p.exists() and t.exists() for p, t in zip(paths, texts)], bool)
    if not present.all():
        absent = [str(p if not p.exists() else t) for p, t, ok in zip(paths, texts, present)
                  if not ok]  # fmt: skip
        if not skip_missing:
            raise MissingDataError(
                f"{len(absent)} of {len(paths)} {what} images lack their image or caption "
                f"file, e.g. {absent[0]}. {fetch} Or pass --skip-missing (skip_missing) to use the images that "
                "are there."
            )
        log.warning("%s: skipping %d of %d images whose files are missing, e.g. %s",
                    what, len(absent), len(paths), absent[0])  # fmt: skip
    return present


def numbered_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines of a text file with their line numbers as an editor shows them (from 1,
    blank lines counted), Windows line endings (``\\r``) stripped: two public copies of CUB are
    CRLF."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from err
    return [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), 1) if line.strip()]


def read_lines(path: Path) -> list[str]:
    """Non-empty lines of a text file (:func:`numbered_lines` without the numbers)."""
    return [line for _, line in numbered_lines(path)]


def read_table(path: Path, columns: int) -> dict[int, list[str]]:
    """A CUB-style table ``<id> <field> ...`` as {id: fields}; the last field keeps its spaces
    (part names such as ``left eye``)."""
    out = {}
    for n, line in numbered_lines(path):
        fields = line.split(None, columns - 1)
        if len(fields) != columns:
            raise ValueError(f"{path}, line {n}: expected {columns} fields, got {line!r}")
        out[int(fields[0])] = fields[1:]
    return out


def read_captions(path: Path, count: int | None) -> list[str]:
    """The captions of one image, one per line (``text_c10`` layout).

    Args:
        path: the caption file.
        count: captions required; the first ``count`` are kept (AttnGAN keeps 10). A file with
            fewer is an error. None: keep them all.
    """
    try:
        captions = read_lines(path)
    except OSError as err:
        raise ValueError(f"{path}: cannot read the caption file ({err})") from err
    if count is not None:
        if len(captions) < count:
            raise ValueError(
                f"{path}: {len(captions)} captions, {count} required (set captions_per_image "
                f"to {len(captions)} or None to accept fewer)"
            )
        captions = captions[:count]
    if not captions:
        raise ValueError(f"{path}: no captions")
    return captions


def decode_image(path: Path, crop: Sequence[float] | None = None, size: int | None = None):
    """Decode an image file as (H, W, 3) uint8 RGB (greyscale and CMYK JPEGs are converted).

    Args:
        path: the image file.
        crop: optional pixel window (x0, y0, x1, y1) cut out first.
        size: optional side the (cropped) image is resized to, bicubic, aspect not kept (as the
            papers' loaders do).
    """
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if crop is not None:
                img = img.crop(tuple(int(v) for v in crop))
            if size is not None:
                img = img.resize((size, size), Image.Resampling.BICUBIC)
            return np.array(img, dtype=np.uint8)  # writable: torch.from_numpy needs it
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise ValueError(f"{path}: cannot decode image ({err})") from err


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"{path}: cannot read image ({err})") from err


class ImageFiles(Sequence):
    """Images decoded from files on access: ``files[i]`` is an (H, W, 3) uint8 array.

    Args:
        paths: one file per image.
        crops: optional (N, 4) pixel windows (x0, y0, x1, y1), one per image.
        size: optional side every image is resized to after the crop.
    """

    def __init__(self, paths: list[Path], crops: np.ndarray | None = None, size: int | None = None):
        self.paths = list(paths)
        self.crops = crops
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        crop = None if self.crops is None else self.crops[i]
        return decode_image(self.paths[i], crop, self.size)

    def resized(self, size: int) -> ImageFiles:
        """The same images, resized to ``size`` when decoded."""
        return ImageFiles(self.paths, self.crops, size)
