"""The papers' preprocessed files, so that existing downloads keep working.

* StackGAN / AttnGAN (Zhang et al. 2017, arXiv:1612.03242): ``{train,test}/filenames.pickle``
  (image keys such as ``001.Black_footed_Albatross/Black_Footed_Albatross_0046_18``),
  ``class_info.pickle`` (1-based class ids) and ``char-CNN-RNN-embeddings.pickle`` ((N, 10, 1024)).
  They are Python 2 pickles: read with ``encoding="latin1"``, by a restricted unpickler that
  builds only numpy arrays, scalars and dtypes, lists, dicts, strings and numbers
  (:func:`read_pickle`): a crafted pickle cannot run code.
* Reed et al. icml2016 (arXiv:1605.05396): one Torch7 ``.t7`` table per image,
  ``<class>/<image>.t7``, with ``img`` (relative path), ``txt`` (10 x 1024 caption embeddings) and
  ``char`` (201 x 10 bytes, the 10 captions as 1-based indices into :data:`REED_ALPHABET`), read
  with the pure-Python ``torchfile`` package.
* Reed et al. cvpr2016 (arXiv:1605.05395), the data of the char-CNN-RNN trainer
  (``cvpr2016_cub``, ``cvpr2016_flowers``): ``manifest.txt`` (one ``<class>.t7`` per line),
  ``trainvalids.txt`` (1-based lines of the manifest used for training), ``images/<class>.t7``
  (float (N, 1024, 10): GoogLeNet features of 10 crops of each of the class's N images) and
  ``text_c10/<class>.t7`` (bytes (N, 201, 10): 10 captions per image in :data:`REED_ALPHABET`
  indices): read by :class:`ReedCVPRReader`, features and captions with no images.
* The ``birds.hdf5`` / ``flowers.hdf5`` files of the most used PyTorch port of GAN-INT-CLS
  (aelnouby/Text-to-Image-Synthesis): groups ``train`` / ``valid`` / ``test`` of examples
  ``<image>_<k>`` with ``name``, ``img`` (JPEG bytes), ``embeddings`` (1024), ``class`` and
  ``txt`` (one caption each): read by :class:`PortHDF5Reader`.
"""

from __future__ import annotations

import importlib
import io
import pickle
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from t2igan.data.contract import Split
from t2igan.data.files import MissingDataError
from t2igan.data.text import TextEncoder

#: The characters of Reed's char-CNN-RNN; index k (1-based) in ``char`` is character k - 1.
REED_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"/\\|_@#$%^&*~`+-=<>()[]{} "
STACKGAN_EMB = "char-CNN-RNN-embeddings.pickle"


class UnsafePickleError(ValueError):
    """A pickle names a global that the papers' files never hold: it is refused unloaded, since
    unpickling it could run arbitrary code."""


def _numpy_global(module: str, name: str):
    """``numpy.core.<module>.<name>`` as numpy 1.x pickles name it, ``numpy._core...`` as numpy
    2.x does: the same function, found under whichever name this numpy has."""
    for base in ("numpy._core", "numpy.core"):
        try:
            with warnings.catch_warnings():  # numpy 2 deprecates the numpy.core alias
                warnings.simplefilter("ignore")
                return getattr(importlib.import_module(f"{base}.{module}"), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"this numpy has no {module}.{name}")


def _latin1_bytes(text="", encoding="latin1"):
    """``_codecs.encode`` as Python 3 pickles ``bytes`` at protocols 0 to 2 (an array's raw data,
    ``_codecs.encode(str, "latin1")``), and ``bytes()`` for empty data; nothing else."""
    import codecs

    if not isinstance(text, str) or not isinstance(encoding, str):
        raise pickle.UnpicklingError("_codecs.encode called with other than (str, 'latin1')")
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}, not latin1")
    return text.encode("latin1")


def _empty_bytes():
    return b""


#: The globals the papers' pickles (and numpy arrays pickled by numpy 1.x or 2.x at any protocol)
#: name, with what each is read as: numpy arrays (``_reconstruct`` + ``ndarray``, or
#: ``_frombuffer`` at protocol 5), numpy scalars (``scalar``, e.g. the numpy.int64 class ids of
#: StackGAN's train/class_info.pickle), dtypes, and the raw bytes of Python 3 protocol 0-2 pickles.
#: Lists, dicts, tuples, strings and numbers need no global.
_SAFE_GLOBALS = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    **{(f"{base}.multiarray", name): (lambda name=name: _numpy_global("multiarray", name))
       for base in ("numpy.core", "numpy._core") for name in ("_reconstruct", "scalar")},
    **{(f"{base}.numeric", "_frombuffer"): (lambda: _numpy_global("numeric", "_frombuffer"))
       for base in ("numpy.core", "numpy._core")},
    ("_codecs", "encode"): lambda: _latin1_bytes,
    ("builtins", "bytes"): lambda: _empty_bytes,  # b"" at protocols 0-2
    ("__builtin__", "bytes"): lambda: _empty_bytes,
}  # fmt: skip


class _PaperUnpickler(pickle.Unpickler):
    """An unpickler that builds only what the papers' pickles contain (see :data:`_SAFE_GLOBALS`)
    and refuses every other global, before anything of it runs."""

    def find_class(self, module: str, name: str):
        make = _SAFE_GLOBALS.get((module, name))
        if make is None:
            raise UnsafePickleError(f"it names the global {module}.{name}")
        return make()

    def persistent_load(self, pid):
        raise UnsafePickleError(f"it holds a persistent id ({pid!r})")


def read_pickle(path: str | Path):
    """Load a StackGAN/AttnGAN pickle (Python 2 protocol: ``encoding="latin1"``), safely.

    Only numpy arrays, numpy scalars and dtypes, lists, tuples, dicts, strings, bytes and numbers
    are built: any other global is refused with an :class:`UnsafePickleError` naming the file and
    the global, and nothing of the pickle runs (a plain ``pickle.load`` of a crafted file runs
    arbitrary code).
    """
    with open(path, "rb") as f:
        try:
            return _PaperUnpickler(f, encoding="latin1").load()
        except UnsafePickleError as err:
            raise UnsafePickleError(
                f"{path}: refused to load this pickle: {err}, which the papers' pickles never "
                "hold (they hold numpy arrays, lists, dicts, strings and numbers only); loading "
                "it could run arbitrary code"
            ) from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                IndexError, KeyError, OverflowError) as err:  # fmt: skip
            raise ValueError(
                f"{path}: not a readable pickle ({type(err).__name__}: {err})"
            ) from err


def stackgan_split(folder: str | Path, split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """StackGAN's ``folder/split/`` files: (image keys, 1-based class ids, (N, 10, D) embeddings).

    A count mismatch between the three files is an error: the embeddings would be misaligned.
    """
    base = Path(folder) / split
    for name in ("filenames.pickle", STACKGAN_EMB):
        if not (base / name).exists():
            raise MissingDataError(
                f"{base / name} not found: expected StackGAN's {split} files (filenames.pickle, "
                f"class_info.pickle, {STACKGAN_EMB}) from the authors' README."
            )
    names = [str(n) for n in read_pickle(base / "filenames.pickle")]
    emb = np.asarray(read_pickle(base / STACKGAN_EMB), dtype=np.float32)
    if emb.ndim == 2:  # some copies store one embedding per image
        emb = emb[:, None]
    if emb.ndim != 3 or len(emb) != len(names):
        raise ValueError(f"{base / STACKGAN_EMB}: embeddings of shape {emb.shape} for "
                         f"{len(names)} names in filenames.pickle")  # fmt: skip
    classes = np.zeros(len(names), dtype=int)
    if (base / "class_info.pickle").exists():
        # numpy.int64 scalars in train, plain int in test
        classes = np.array([int(c) for c in read_pickle(base / "class_info.pickle")])
        if len(classes) != len(names):
            raise ValueError(f"{base / 'class_info.pickle'}: {len(classes)} classes for "
                             f"{len(names)} names")  # fmt: skip
    return names, classes, emb


def decode_reed_chars(char: np.ndarray) -> list[str]:
    """Reed's ``char`` tensor (length x captions, 1-based indices, 0 = padding) -> captions."""
    char = np.asarray(char)
    out = []
    for column in char.T:
        text = "".join(REED_ALPHABET[int(c) - 1] for c in column if 0 < c <= len(REED_ALPHABET))
        out.append(text.strip())
    return out


def read_reed_t7(path: str | Path) -> dict:
    """One of Reed's per-image ``.t7`` tables as ``{"img": str, "txt": (C, D), "captions": [...]}``."""
    import torchfile

    try:
        table = torchfile.load(str(path), utf8_decode_strings=True)
    except Exception as err:  # torchfile raises bare exceptions on malformed files
        raise ValueError(f"{path}: not a readable Torch7 file ({err})") from err
    if "txt" not in table:
        raise ValueError(f"{path}: no 'txt' embeddings in this Torch7 table")
    txt = np.asarray(table["txt"], dtype=np.float32)
    out = {"img": str(table.get("img", "")), "txt": txt.reshape(-1, txt.shape[-1])}
    if "char" in table:
        out["captions"] = decode_reed_chars(table["char"])
    return out


def embeddings_for(folder: str | Path, keys: list[str], split: str) -> list[np.ndarray]:
    """The papers' caption embeddings for the images ``keys`` (``<class>/<image>``, no suffix).

    Args:
        folder: a StackGAN folder (``{train,test}/char-CNN-RNN-embeddings.pickle``) or a folder of
            Reed's ``<class>/<image>.t7`` files.
        keys: the images, in the order wanted.
        split: ``train`` or ``test``, the StackGAN sub-folder to read.
    """
    folder = Path(folder)
    if (folder / split / STACKGAN_EMB).exists():
        names, _, emb = stackgan_split(folder, split)
        row = {n: i for i, n in enumerate(names)}
        missing = [k for k in keys if k not in row]
        if missing:
            raise ValueError(f"{len(missing)} images have no embedding in "
                             f"{folder / split / STACKGAN_EMB}, e.g. {missing[0]}")  # fmt: skip
        return [emb[row[k]] for k in keys]
    if folder.is_dir() and next(folder.glob("*/*.t7"), None) is not None:
        out = []
        for k in keys:
            path = folder / f"{k}.t7"
            if not path.exists():
                raise MissingDataError(f"{path} not found: no Reed .t7 embeddings for image {k}")
            out.append(read_reed_t7(path)["txt"])
        return out
    raise MissingDataError(
        f"{folder}: expected the papers' caption embeddings there, either StackGAN's "
        f"{split}/{STACKGAN_EMB} or Reed's <class>/<image>.t7 files"
    )


def embeddings_dim(folder: str | Path) -> int:
    """Size of the papers' embeddings in ``folder`` (read cheaply from one file)."""
    folder = Path(folder)
    for split in ("test", "train"):
        if (folder / split / STACKGAN_EMB).exists():
            return int(np.asarray(read_pickle(folder / split / STACKGAN_EMB)[0]).shape[-1])
    first = next(folder.glob("*/*.t7"), None) if folder.is_dir() else None
    if first is not None:
        return int(read_reed_t7(first)["txt"].shape[-1])
    if folder.suffix in (".h5", ".hdf5") and folder.exists():
        return PortHDF5Reader(folder).dim
    raise MissingDataError(f"{folder}: no StackGAN pickles, Reed .t7 files or port HDF5 file")


class EncodedImages(Sequence):
    """Images kept as encoded bytes (JPEG, PNG), decoded to (H, W, 3) uint8 RGB on access."""

    def __init__(self, blobs: list[bytes], names: list[str]):
        self.blobs, self.names = blobs, names

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i):
        try:
            with Image.open(io.BytesIO(self.blobs[i])) as img:
                return np.asarray(img.convert("RGB"), dtype=np.uint8)
        except OSError as err:
            raise ValueError(f"image {self.names[i]}: cannot decode its bytes ({err})") from err


class PortHDF5Reader:
    """Reader for the ``birds.hdf5`` / ``flowers.hdf5`` files of aelnouby's PyTorch port.

    Each image appears as up to five examples ``<image>_<k>``, one caption and its 1024-d
    embedding each; they are merged back into one image with its captions and embeddings.

    Args:
        path: the ``.hdf5`` file.
    """

    name = "port-hdf5"
    SPLITS = {"train": "train", "val": "valid", "test": "test"}

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise MissingDataError(f"{self.path} not found: expected a birds.hdf5/flowers.hdf5 "
                                   "file of the PyTorch port of GAN-INT-CLS")  # fmt: skip

    @property
    def dim(self) -> int:
        import h5py

        with h5py.File(self.path, "r") as f:
            group = f[next(iter(f))]
            return int(group[next(iter(group))]["embeddings"].shape[-1])

    def load(self, split: str) -> Split:
        import h5py

        images, captions, emb, classes, names = {}, {}, {}, {}, []
        with h5py.File(self.path, "r") as f:
            if self.SPLITS[split] not in f:
                raise ValueError(f"{self.path}: no group {self.SPLITS[split]!r} (has {list(f)})")
            for key, ex in f[self.SPLITS[split]].items():
                name = _text(ex["name"][()]) if "name" in ex else key.rsplit("_", 1)[0]
                if name not in images:
                    names.append(name)
                    images[name] = np.asarray(ex["img"][()]).tobytes()
                    captions[name], emb[name] = [], []
                    classes[name] = _text(ex["class"][()])
                captions[name].append(_text(ex["txt"][()]).strip())
                emb[name].append(np.asarray(ex["embeddings"][()], dtype=np.float32))
        return Split(
            images=EncodedImages([images[n] for n in names], names),
            captions=[captions[n] for n in names],
            labels=np.array([_class_id(classes[n]) for n in names]),
            names=names,
            caption_emb=[np.stack(emb[n]) for n in names],
        )


def _text(value) -> str:
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _class_id(name: str) -> int:
    """0-based class from ``001.Black_footed_Albatross`` or ``class_00001``."""
    match = re.search(r"\d+", name)
    if match is None:
        raise ValueError(f"cannot read a class number from {name!r}")
    return int(match.group()) - 1


class PrecomputedEncoder(TextEncoder):
    """Stands for the papers' precomputed caption embeddings (char-CNN-RNN), whose encoder is not
    available: it knows their size, and refuses to embed new captions with a clear message.

    Args:
        source: the embedding files the run was trained with.
        dim: size of one embedding.
    """

    def __init__(self, source: str, dim: int) -> None:
        self.init_args = {"source": source, "dim": dim}
        self.source = source
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, captions: list[str]) -> np.ndarray:
        raise RuntimeError(
            f"this run used the papers' precomputed caption embeddings ({self.source}); their "
            "char-CNN-RNN encoder is not recorded, so new captions cannot be embedded. Convert "
            "the authors' matching encoder (python -m t2igan.models.char_cnn_rnn_t7 FILE.t7 "
            "OUT.ckpt) and pass it with --text-encoder OUT.ckpt, or train with a t2igan text "
            "encoder (--data.text_encoder) to generate from any caption."
        )


def _read_t7_tensor(path: Path, what: str, ndim: int) -> np.ndarray:
    import torchfile

    if not path.is_file():
        raise MissingDataError(f"{path} not found: expected {what} there")
    try:
        value = torchfile.load(str(path))
    except Exception as err:  # torchfile raises bare exceptions on malformed files
        raise ValueError(f"{path}: not a readable Torch7 file ({err})") from err
    if not isinstance(value, np.ndarray) or value.ndim != ndim:
        shape = getattr(value, "shape", type(value).__name__)
        raise ValueError(f"{path}: expected {what}, a {ndim}-d tensor; got {shape}")
    return value


class ReedCVPRReader:
    """The data of Reed et al.'s char-CNN-RNN trainer (cvpr2016): GoogLeNet features and
    captions per class, no images (``--data.dataset reed-cvpr --data.source cvpr2016_cub``).

    Training classes are the manifest lines listed in ``ids_file`` (the authors' trainer:
    ``trainvalids.txt``, 150 CUB classes); the other manifest classes are the held-out test
    split, and ``val`` is ``test`` as on CUB (the authors report "val/test" accuracy on them).
    Each image carries its 10 crops' features, (10, 1024); the DS-SJE model draws one crop at
    random in training and uses the first at test, as the authors' loader and evaluator do.

    Args:
        root: the data folder (holds ``manifest.txt``).
        ids_file: the file of training-class lines, inside ``root``.
        image_dir: the features folder inside ``root`` (``images``).
        text_dir: the caption folder inside ``root`` (``text_c10``).
    """

    name = "reed-cvpr"
    cacheable = False  # nothing to decode: the features are read as they are
    has_images = False  # features and captions only: models that draw images cannot train on it
    HOW = ("Reed's cvpr2016 data (cvpr2016_cub / cvpr2016_flowers, linked from "
           "https://github.com/reedscot/cvpr2016), unpacked")  # fmt: skip

    def __init__(self, root: str | Path, ids_file: str = "trainvalids.txt",
                 image_dir: str = "images", text_dir: str = "text_c10") -> None:  # fmt: skip
        self.root = Path(root)
        self.image_dir, self.text_dir = image_dir, text_dir
        manifest = self.root / "manifest.txt"
        if not manifest.is_file():
            raise MissingDataError(f"{manifest} not found: expected {self.HOW} in {self.root}")
        self.classes = [line.strip() for line in manifest.read_text().splitlines() if line.strip()]
        ids = self.root / ids_file
        if not ids.is_file():
            raise MissingDataError(f"{ids} not found: expected the training classes' manifest "
                                   f"lines there ({self.HOW})")  # fmt: skip
        try:
            train = [int(line) for line in ids.read_text().split()]
        except ValueError:
            raise ValueError(f"{ids}: expected manifest line numbers, one per line") from None
        bad = [i for i in train if not 1 <= i <= len(self.classes)]
        if bad:
            raise ValueError(f"{ids}: line {bad[0]} is not in {manifest} "
                             f"({len(self.classes)} classes)")  # fmt: skip
        self.train = [self.classes[i - 1] for i in train]
        self.test = [c for c in self.classes if c not in set(self.train)]

    def sources(self) -> list[Path]:
        return [self.root / "manifest.txt"]

    def load(self, split: str) -> Split:
        classes = self.train if split == "train" else self.test
        if not classes:
            raise ValueError(f"{self.root}: no {split} classes (every manifest class is in "
                             "the ids file)")  # fmt: skip
        features, captions, labels, names = [], [], [], []
        for fname in classes:
            feat_path = self.root / self.image_dir / fname
            text_path = self.root / self.text_dir / fname
            feats = _read_t7_tensor(feat_path, "image features (N, 1024, 10)", 3)
            chars = _read_t7_tensor(text_path, "captions (N, 201, 10)", 3)
            if len(feats) != len(chars):
                raise ValueError(f"{feat_path} has {len(feats)} images but {text_path} has "
                                 f"captions for {len(chars)}")  # fmt: skip
            stem = fname.removesuffix(".t7")
            match = re.match(r"(\d+)\.", stem)
            label = int(match.group(1)) if match else self.classes.index(fname) + 1
            for i in range(len(feats)):
                caps = [c for c in decode_reed_chars(chars[i]) if c]
                if not caps:
                    raise ValueError(f"{text_path}: image {i + 1} has no caption")
                features.append(np.ascontiguousarray(feats[i].T, dtype=np.float32))
                captions.append(caps)
                labels.append(label)
                names.append(f"{stem}/{i + 1}")
        return Split(images=None, captions=captions, labels=np.array(labels), names=names,
                     image_features=features)  # fmt: skip
