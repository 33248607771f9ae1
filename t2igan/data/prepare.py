"""``t2igan prepare``: one HDF5 cache per dataset and load size, read much faster than JPEGs.

The cache holds, per split, the images resized to the load size (uint8), captions, labels,
boxes, keypoints and the papers' caption embeddings when the reader had them, plus optional
caption embeddings per text encoder, and a manifest (JSON in the file's ``manifest`` attribute):
the source folder, the reader options, sha256 of every annotation file, the encoders, and the
versions that wrote it, the splits it holds (``t2igan prepare --splits test`` writes only some)
and the bounding boxes that were clipped to their image. It is written to a temporary file
``.<name>.<pid>.tmp`` and renamed, so an interrupted prepare never leaves a file that passes as a
cache; the temporary files of processes that died (``kill -9``) are removed at the next prepare.

Layout (``val`` is a link to ``test`` when the two are the same split)::

    <split>/images        (N, L, L, 3) uint8, one chunk per image
    <split>/captions      (C,) str, all captions; <split>/caption_offsets (N + 1,) int64
    <split>/labels (N,) int64, <split>/names (N,) str
    <split>/boxes (N, 4), <split>/keypoints (N, K, 3) float32    (datasets that have them)
    <split>/caption_emb   (C, D) float32                         (the papers' embeddings)
    text_emb/<encoder key>/<split>  (C, D) float32               (t2igan prepare --text-encoder)
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import platform
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from t2igan.atomic import atomic_path, file_digest, remove_stale_tmp
from t2igan.data.contract import Split
from t2igan.data.files import EmptySplitError

log = logging.getLogger(__name__)

#: Bumped whenever the cache layout or the preprocessing changes; older caches are then stale.
CACHE_VERSION = 1
SPLITS = ("train", "val", "test")
#: Where each dataset is looked for under the data root, in order (``t2igan download`` puts the
#: archives' contents at the first one).
DEFAULT_SOURCES = {
    "cub": ("CUB_200_2011", "birds/CUB_200_2011"),
    "flowers": ("flowers", "102flowers", "flowers-102"),
    "mhp": ("mpii",),
    "port-hdf5": ("birds.hdf5", "flowers.hdf5"),
    "reed-cvpr": ("cvpr2016_cub", "cvpr2016_flowers"),
}


def find_source(dataset: str, root: str | Path, source: str | Path | None = None) -> Path:
    """The dataset's own folder (or file): ``source`` if given, else the first of
    :data:`DEFAULT_SOURCES` found under ``root`` (the first one when none is there, so that the
    error names where it was expected)."""
    if source is not None:
        return Path(source)
    candidates = [Path(root) / c for c in DEFAULT_SOURCES[dataset]]
    return next((c for c in candidates if c.exists()), candidates[0])


def reader_class(dataset: str):
    """The reader class of ``dataset``."""
    from t2igan.data.cub import CUBReader
    from t2igan.data.flowers import FlowersReader
    from t2igan.data.mpii import MPIIReader
    from t2igan.data.paper_files import PortHDF5Reader, ReedCVPRReader

    readers = {"cub": CUBReader, "flowers": FlowersReader, "mhp": MPIIReader,
               "port-hdf5": PortHDF5Reader, "reed-cvpr": ReedCVPRReader}  # fmt: skip
    if dataset not in readers:
        raise ValueError(f"no reader for dataset {dataset!r}; choose one of {sorted(readers)}")
    return readers[dataset]


def canonical_options(dataset: str, options: dict) -> dict:
    """Every option of the reader, defaults filled in (so equal settings name the same cache);
    an option the reader does not take must be None or False."""
    params = dict(inspect.signature(reader_class(dataset)).parameters)
    params.pop("root", None) or params.pop("path", None)
    unused = {k: v for k, v in options.items() if k not in params and v not in (None, False)}
    if unused:
        raise ValueError(f"dataset {dataset!r} does not take {sorted(unused)}")
    out = {}
    for name, param in params.items():
        value = options.get(name)
        out[name] = param.default if value is None else value
    return _jsonable(out)


def make_reader(dataset: str, source: Path, **options):
    """The reader of ``dataset`` over ``source`` with ``options`` (see :func:`canonical_options`)."""
    return reader_class(dataset)(source, **canonical_options(dataset, options))


def cache_file(root: str | Path, dataset: str, load_size: int, options: dict) -> Path:
    """Where the cache of ``dataset`` at ``load_size`` with reader ``options`` lives: under
    ``root/<dataset>/``, named by the load size and a short hash of the options."""
    options = canonical_options(dataset, options)
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
    return Path(root) / dataset / f"{dataset}-{load_size}px-{key}.h5"


def _jsonable(options: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(options.items())}


def sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("t2igan", "numpy", "h5py", "pillow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def manifest_for(dataset: str, reader, load_size: int, options: dict) -> dict:
    """What the cache is built from: compared with the stored manifest to decide staleness."""
    sources = reader.sources() if hasattr(reader, "sources") else []
    return {
        "cache_version": CACHE_VERSION,
        "dataset": dataset,
        "source": str(Path(getattr(reader, "root", getattr(reader, "path", ""))).resolve()),
        "load_size": load_size,
        "options": canonical_options(dataset, options),
        "checksums": {str(p.resolve()): sha256(p) for p in sources},
    }


def stale_reason(stored: dict, expected: dict) -> str | None:
    """Why a cache with manifest ``stored`` does not match ``expected`` (None: up to date)."""
    for key in ("cache_version", "dataset", "load_size", "options", "checksums"):
        if stored.get(key) != expected.get(key):
            if key == "checksums":
                changed = [p for p in expected[key] if stored[key].get(p) != expected[key][p]]
                return f"annotation files changed since it was built: {changed[:3]}"
            return f"{key} differs (cache: {stored.get(key)!r}, wanted: {expected.get(key)!r})"
    return None


def _resized(images, load_size: int):
    """A view of ``images`` decoded at ``load_size`` (file readers resize while decoding)."""
    if hasattr(images, "resized"):
        return images.resized(load_size)
    return _Resize(images, load_size)


class _Resize(Sequence):
    def __init__(self, images, size: int):
        self.images, self.size = images, size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        img = self.images[i]
        if img.shape[:2] == (self.size, self.size):
            return img
        resample = Image.Resampling.BICUBIC
        return np.asarray(Image.fromarray(img).resize((self.size, self.size), resample))


def write_cache(path: Path, splits: dict[str, Split], load_size: int, manifest: dict,
                text_encoder=None) -> Path:  # fmt: skip
    """Write ``splits`` (name -> Split) to the HDF5 cache ``path``, atomically.

    Args:
        path: the cache file.
        splits: the splits to store; a split equal to an earlier one (same names) is stored as a
            link to it.
        load_size: side of the stored images.
        manifest: recorded in the file's ``manifest`` attribute.
        text_encoder: optional; caption embeddings of every split are stored for it.
    """
    import h5py

    str_dtype = h5py.string_dtype()
    manifest = dict(manifest, versions=_versions(), created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    encoders={}, splits=list(splits), **clipped_summary(splits))  # fmt: skip
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        written: dict[tuple, str] = {}
        for name, split in splits.items():
            same = written.get(tuple(split.names))
            if same is not None:
                f[name] = h5py.SoftLink(f"/{same}")
                if text_encoder is not None:
                    key = f"text_emb/{_encoder_id(text_encoder)}"
                    f[f"{key}/{name}"] = h5py.SoftLink(f"/{key}/{same}")
                continue
            written[tuple(split.names)] = name
            g = f.create_group(name)
            n, side = len(split), load_size
            images = g.create_dataset("images", (n, side, side, 3), np.uint8,
                                      chunks=(1, side, side, 3))  # fmt: skip
            source = _resized(split.images, side)
            start = time.time()
            for i in range(n):
                images[i] = source[i]
                if (i + 1) % 1000 == 0:
                    log.info("%s: %d / %d images (%.0f/s)", name, i + 1, n,
                             (i + 1) / (time.time() - start))  # fmt: skip
            flat = [c for caps in split.captions for c in caps]
            g.create_dataset("captions", data=np.array(flat, dtype=object), dtype=str_dtype)
            offsets = np.cumsum([0] + [len(c) for c in split.captions])
            g.create_dataset("caption_offsets", data=offsets.astype(np.int64))
            g.create_dataset("labels", data=np.asarray(split.labels, dtype=np.int64))
            g.create_dataset("names", data=np.array(split.names, dtype=object),
                             dtype=str_dtype)  # fmt: skip
            if split.boxes is not None:
                g.create_dataset("boxes", data=np.asarray(split.boxes, np.float32))
            if split.keypoints is not None:
                g.create_dataset("keypoints", data=np.asarray(split.keypoints, np.float32))
            g.attrs["part_names"] = json.dumps(list(split.part_names))
            if split.caption_emb is not None:
                g.create_dataset("caption_emb", data=np.concatenate(split.caption_emb))
            if text_encoder is not None:
                # identical captions are embedded once
                unique, inverse = np.unique(np.array(flat, dtype=object), return_inverse=True)
                emb = text_encoder.encode([str(u) for u in unique])[inverse.reshape(-1)]
                key = f"text_emb/{_encoder_id(text_encoder)}/{name}"
                f.create_dataset(key, data=np.asarray(emb, dtype=np.float32))
                manifest["encoders"][_encoder_id(text_encoder)] = text_encoder.spec()
                log.info("%s: embedded %d captions", name, len(flat))
        f.attrs["manifest"] = json.dumps(manifest)
    return path


def clipped_summary(splits: dict[str, Split]) -> dict:
    """The manifest's record of the bounding boxes the reader clipped to their image (they
    overran it by at most the reader's tolerance, :data:`t2igan.data.cub.BOX_TOLERANCE_PX` for
    CUB; the reader reports them in ``Split.extra``): ``clipped_boxes`` (how many, a split equal
    to an earlier one, such as CUB's val = test, counted once), ``clipped_boxes_per_split``,
    ``clipped_box_images`` (their names) and ``box_tolerance_px``; empty for datasets without
    boxes."""
    if not any(s.boxes is not None for s in splits.values()):
        return {}
    per_split, images, seen = {}, [], set()
    for name, split in splits.items():
        clipped = list(split.extra.get("clipped_boxes", []))
        per_split[name] = len(clipped)
        if tuple(split.names) in seen:
            continue
        seen.add(tuple(split.names))
        images += [n for n in clipped if n not in images]
    out = {"clipped_boxes": len(images), "clipped_boxes_per_split": per_split,
           "clipped_box_images": images}  # fmt: skip
    tolerance = [s.extra.get("box_tolerance_px") for s in splits.values()]
    tolerance = [t for t in tolerance if t is not None]
    if tolerance:
        out["box_tolerance_px"] = tolerance[0]
    return out


def _encoder_id(encoder) -> str:
    return hashlib.sha256(json.dumps(encoder.spec(), sort_keys=True).encode()).hexdigest()[:16]


class H5Images(Sequence):
    """Images of one cache split, read on access; the file is opened once per process (h5py
    handles do not survive a fork into DataLoader workers)."""

    def __init__(self, path: Path, key: str, length: int):
        self.path, self.key, self.length = Path(path), key, length
        self._pid, self._ds = None, None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i):
        if self._pid != os.getpid():
            import h5py

            self._ds = h5py.File(self.path, "r")[self.key]
            self._pid = os.getpid()
        return self._ds[i]

    def __getstate__(self):
        return {**self.__dict__, "_pid": None, "_ds": None}


class CachedReader:
    """Reads the splits of a cache written by :func:`write_cache`.

    Args:
        path: the cache file.
        in_memory: read every image of a split into memory at load (fastest; CUB at 76 pixels
            is 0.2 GB) rather than from the file on access.
    """

    def __init__(self, path: str | Path, in_memory: bool = True) -> None:
        import h5py

        self.path = Path(path)
        self.in_memory = in_memory
        with h5py.File(self.path, "r") as f:
            self.manifest = json.loads(f.attrs["manifest"])
            #: The splits stored (``t2igan prepare --splits`` may have written only some).
            self.splits = tuple(s for s in SPLITS if s in f)

    def load(self, split: str) -> Split:
        import h5py

        if split not in self.splits:
            raise EmptySplitError(
                f"the cache {self.path} holds the {', '.join(self.splits) or 'no'} split"
                f"{'s' if len(self.splits) != 1 else ''}, not {split} (it was prepared with "
                f"--splits {' '.join(self.splits)})", split=split,
            )  # fmt: skip
        with h5py.File(self.path, "r") as f:
            g = f[split]
            offsets = g["caption_offsets"][()]
            flat = list(g["captions"].asstr()[()])
            n = len(offsets) - 1
            images = (
                g["images"][()] if self.in_memory else H5Images(self.path, f"{split}/images", n)
            )
            emb = g["caption_emb"][()] if "caption_emb" in g else None
            return Split(
                images=images,
                captions=[flat[a:b] for a, b in zip(offsets[:-1], offsets[1:])],
                labels=g["labels"][()],
                names=list(g["names"].asstr()[()]),
                boxes=g["boxes"][()] if "boxes" in g else None,
                keypoints=g["keypoints"][()] if "keypoints" in g else None,
                part_names=tuple(json.loads(g.attrs["part_names"])),
                caption_emb=None if emb is None else _unflatten(emb, offsets),
            )

    def text_emb(self, encoder, split: str) -> list[np.ndarray] | None:
        """Caption embeddings of ``split`` stored for ``encoder``, or None."""
        import h5py

        with h5py.File(self.path, "r") as f:
            key = f"text_emb/{_encoder_id(encoder)}/{split}"
            if key not in f:
                return None
            return _unflatten(f[key][()], f[split]["caption_offsets"][()])


def _unflatten(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def parse_splits(splits: str | Sequence[str] | None) -> tuple[str, ...]:
    """``train,test`` / ``["train", "test"]`` -> the splits in :data:`SPLITS` order (None: all)."""
    if splits is None:
        return SPLITS
    names = [splits] if isinstance(splits, str) else list(splits)
    names = [n.strip() for part in names for n in str(part).split(",") if n.strip()]
    unknown = [n for n in names if n not in SPLITS]
    if unknown or not names:
        raise ValueError(f"unknown split(s) {unknown or names}: choose from {', '.join(SPLITS)}")
    return tuple(s for s in SPLITS if s in names)


def prepare(dataset: str, root: str | Path = "data", source: str | Path | None = None,
            load_size: int = 76, text_encoder=None, force: bool = False,
            splits: str | Sequence[str] | None = None, **options) -> Path:  # fmt: skip
    """Validate a dataset's raw files and write its cache; returns the cache path.

    Args:
        dataset: cub, flowers, mhp or port-hdf5.
        root: the data root; the cache goes to ``root/<dataset>/``.
        source: the dataset's folder (default: looked up under ``root``).
        load_size: side of the stored images.
        text_encoder: optional; embeddings of every caption are stored for it.
        force: rebuild even when an up-to-date cache exists.
        splits: the splits to store (default: train, val and test), e.g. ``("test",)`` for a
            folder that holds test classes only; the data module then runs ``test`` from it.
        options: the reader's options (split, bbox_crop, captions_per_image, ...).
    """
    # checked before anything is read: a bad size would otherwise fail after every image
    if load_size < 1:
        raise ValueError(f"--load-size is the side of the stored images: at least 1 pixel, got "
                         f"{load_size}")  # fmt: skip
    if options.get("captions_per_image") is not None and options["captions_per_image"] < 1:
        raise ValueError(f"--captions-per-image must be at least 1, got "
                         f"{options['captions_per_image']}")  # fmt: skip
    wanted = parse_splits(splits)
    options = {k: v for k, v in options.items() if v is not None}
    source = find_source(dataset, root, source)
    reader = make_reader(dataset, source, **options)
    path = cache_file(root, dataset, load_size, options)
    remove_stale_tmp(path.parent)
    expected = manifest_for(dataset, reader, load_size, options)
    if path.exists() and not force:
        cached = CachedReader(path, in_memory=False)
        stored = cached.manifest
        if (
            stale_reason(stored, expected) is None
            and set(wanted) <= set(cached.splits)
            and (text_encoder is None or _encoder_id(text_encoder) in stored.get("encoders", {}))
        ):
            log.info("%s is up to date", path)
            return path
    loaded, empty = {}, []
    for name in wanted:
        try:
            loaded[name] = reader.load(name)
        except EmptySplitError as err:  # read the others too, to say which splits have images
            empty.append(err)
    if empty:
        if loaded:
            hint = f"pass --splits {' '.join(loaded)} to prepare only the splits that have images"
        else:
            hint = f"none of the splits asked for ({', '.join(wanted)}) has images"
        raise EmptySplitError(f"{'; '.join(str(e) for e in empty)}: {hint}", empty[0].split)
    return write_cache(path, loaded, load_size, expected, text_encoder)


def summary(path: Path) -> list[str]:
    """What ``t2igan prepare`` reports about the cache ``path``: its splits and the boxes that
    were clipped to their image."""
    import h5py

    cached = CachedReader(path, in_memory=False)
    lines = [f"cache: {path}"]
    with h5py.File(path, "r") as f:
        for name in cached.splits:
            link = f.get(name, getlink=True)
            same = f" (those of {link.path.strip('/')})" if isinstance(link, h5py.SoftLink) else ""
            lines.append(f"  {name}: {len(f[name]['names'])} images{same}")
    m = cached.manifest
    if "clipped_boxes" in m:
        per = ", ".join(f"{k} {v}" for k, v in m.get("clipped_boxes_per_split", {}).items())
        tolerance = m.get("box_tolerance_px")
        lines.append("  bounding boxes clipped to their image"
                     + (f" (they overran it by at most {tolerance} px)" if tolerance else "")
                     + f": {m['clipped_boxes']}"
                     + (f" ({per})" if m["clipped_boxes"] and per else ""))  # fmt: skip
    return lines


def prepare_command(dataset: str, root, source, load_size: int, options: dict) -> str:
    """The ``t2igan prepare`` command line that builds the cache for these settings."""
    defaults = canonical_options(dataset, {})
    given = canonical_options(dataset, options)
    flags = {"split": "--split", "bbox_crop": "--bbox-crop", "skip_missing": "--skip-missing",
             "captions_per_image": "--captions-per-image", "text_dir": "--captions",
             "captions": "--captions", "embeddings": "--embeddings"}  # fmt: skip
    parts = ["t2igan prepare", f"--dataset {dataset}", f"--root {root}"]
    if source is not None:
        parts.append(f"--source {source}")
    parts.append(f"--load-size {load_size}")
    for key, value in given.items():
        if value != defaults[key] and key in flags:
            parts.append(flags[key] if value is True else f"{flags[key]} {value}")
    return " ".join(parts)


def reader_options(dataset: str, split=None, bbox_crop=False, captions_per_image=None,
                   captions=None, embeddings=None, skip_missing=False) -> dict:  # fmt: skip
    """Reader keyword arguments from the data module's / prepare's flags (None: the default)."""
    caption_key = "captions" if dataset == "mhp" else "text_dir"
    options = {"split": split, "bbox_crop": bbox_crop or None,
               "captions_per_image": captions_per_image, caption_key: captions,
               "embeddings": embeddings, "skip_missing": skip_missing or None}  # fmt: skip
    return {k: v for k, v in options.items() if v is not None}
