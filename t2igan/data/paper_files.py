"""The papers' preprocessed files, so that existing downloads keep working.

* StackGAN / AttnGAN (Zhang et al. 2017, arXiv:1612.03242): ``{train,test}/filenames.pickle``
  (image keys such as ``001.Black_footed_Albatross/Black_Footed_Albatross_0046_18``),
  ``class_info.pickle`` (1-based class ids) and ``char-CNN-RNN-embeddings.pickle`` ((N, 10, 1024)).
  They are Python 2 pickles: read with ``encoding="latin1"``, by a restricted unpickler that
  builds only numpy arrays, scalars and dtypes, lists, dicts, strings and numbers
  (:func:`read_pickle`): a crafted pickle cannot run code, nor claim an array larger than its
  file (it is refused before numpy allocates it).
* Reed et al. icml2016 (arXiv:1605.05396): one Torch7 ``.t7`` table per image,
  ``<class>/<image>.t7``, with ``img`` (relative path), ``txt`` (10 x 1024 caption embeddings) and
  ``char`` (201 x 10 bytes, the 10 captions as 1-based indices into :data:`REED_ALPHABET`), read
  with t2igan's bounded Torch7 reader (:func:`t2igan.data.t7.load_t7`: a tensor that claims more
  than its file holds is refused before any array is made).
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

import functools
import importlib
import io
import math
import operator
import os
import pickle
import re
import struct
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


@functools.cache
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


class _ClaimError(pickle.UnpicklingError):
    """A pickle claims more than its file holds: an array's data, an element size or a byte
    string. Refused before anything of that size is allocated."""


class _NdarrayName:
    """Stands for ``numpy.ndarray`` in a pickle: numpy's pickles only pass it to
    ``_reconstruct``; calling it (``ndarray(shape)`` allocates the claimed shape) is refused."""

    def __new__(cls, *args, **kwargs):
        raise pickle.UnpicklingError("it calls numpy.ndarray, which numpy's pickles never do")


def _count(shape, limit: int) -> int:
    """Elements of an array of the pickle's ``shape``: at most ``limit``, the file's size (every
    element takes at least a byte of it)."""
    if not isinstance(shape, tuple | list) or len(shape) > 64:
        raise pickle.UnpicklingError(f"an array shape {shape!r:.80}")
    dims = tuple(operator.index(n) for n in shape)
    if min(dims, default=0) < 0:
        raise pickle.UnpicklingError(f"an array shape {dims} with a negative size")
    count = math.prod(dims)
    if count > limit or max(dims, default=0) > limit:
        raise _ClaimError(f"it claims an array of shape {dims} ({count:,} elements) in a file of "
                          f"{limit:,} bytes")  # fmt: skip
    return count


def _dtypes_in(value):
    """The dtypes in a dtype's pickled state (its fields and sub-array)."""
    if isinstance(value, np.dtype):
        yield value
    elif isinstance(value, tuple | list | dict):
        for v in value.values() if isinstance(value, dict) else value:
            yield from _dtypes_in(v)


class _BoundedFile:
    """The pickle file, read so that no read asks for more bytes than are left: a pickle's
    counted strings (BINBYTES8, BINSTRING, frames ...) claim their own length."""

    def __init__(self, f, size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        if n > self.left:
            raise _ClaimError(f"it claims {n:,} bytes of data where the file has {self.left:,} "
                              "left")  # fmt: skip
        data = self.f.read(n)
        self.left -= len(data)
        return data

    def readline(self) -> bytes:
        data = self.f.readline()
        self.left -= len(data)
        return data


class _PaperUnpickler(pickle._Unpickler):
    """An unpickler that builds only what the papers' pickles contain (see :data:`_SAFE_GLOBALS`),
    refuses every other global before anything of it runs, and checks every size a pickle claims
    against the file's size (``limit``: an array's data, and any element, is in the file) before
    allocating it.

    It is Python's own pure-Python unpickler (``pickle._Unpickler``): the C one allocates a
    BINBYTES8 or BYTEARRAY8 of the claimed length before reading it, and sets states (BUILD)
    with no hook to check them first. A state is set only on an array or dtype that this pickle
    has just made and not used yet: numpy applies a dtype's new state to the arrays already
    made with it, which would then reach past their data.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, f, size: int) -> None:
        super().__init__(_BoundedFile(f, size), encoding="latin1")
        self.limit = size
        self.unset: dict[int, object] = {}  # id -> array or dtype awaiting its state

    def find_class(self, module: str, name: str):
        make = _SAFE_GLOBALS.get((module, name))
        if make is None:
            raise UnsafePickleError(f"it names the global {module}.{name}")
        return make(self)

    def persistent_load(self, pid):
        raise UnsafePickleError(f"it holds a persistent id ({pid!r})")

    def dtype(self, spec) -> np.dtype:
        """A dtype given as a dtype of this pickle or a type code (``b"b"``), checked, and from
        now on in use (its state can no longer be set)."""
        if isinstance(spec, bytes):
            spec = spec.decode("latin1")
        if not isinstance(spec, str | np.dtype):
            raise pickle.UnpicklingError(f"a dtype given as a {type(spec).__name__}")
        dtype = spec if isinstance(spec, np.dtype) else np.dtype(spec)
        self.unset.pop(id(dtype), None)
        if dtype.itemsize > self.limit:
            raise _ClaimError(f"it claims a dtype of {dtype.itemsize:,} bytes an element in a "
                              f"file of {self.limit:,} bytes")  # fmt: skip
        return dtype

    def new_dtype(self, spec, align=False, copy=False) -> np.dtype:
        """``numpy.dtype(spec, align, copy)`` as numpy pickles a dtype, always a new one (its
        state is set next, which must never reach numpy's shared builtin dtypes)."""
        if isinstance(spec, bytes):
            spec = spec.decode("latin1")
        if not isinstance(spec, str):
            raise pickle.UnpicklingError(f"numpy.dtype called with a {type(spec).__name__}")
        dtype = np.dtype(spec, align=bool(align), copy=True)
        self.unset[id(dtype)] = dtype
        return dtype

    def reconstruct(self, subtype, shape, dtype) -> np.ndarray:
        if subtype is not _NdarrayName:
            raise pickle.UnpicklingError("_reconstruct called with other than numpy.ndarray")
        dtype = self.dtype(dtype)
        if _count(shape, self.limit) * dtype.itemsize > self.limit:
            raise _ClaimError(f"it claims an array of shape {tuple(shape)} of {dtype} in a "
                              f"file of {self.limit:,} bytes")  # fmt: skip
        array = _numpy_global("multiarray", "_reconstruct")(np.ndarray, shape, dtype)
        self.unset[id(array)] = array
        return array

    def scalar(self, dtype, *args):
        return _numpy_global("multiarray", "scalar")(self.dtype(dtype), *args)

    def frombuffer(self, buffer, dtype, shape, order="C") -> np.ndarray:
        if not isinstance(buffer, bytes | bytearray):  # protocol 5 arrays carry their bytes
            raise pickle.UnpicklingError(f"an array over a {type(buffer).__name__}")
        dtype = self.dtype(dtype)
        if _count(shape, self.limit) * dtype.itemsize != len(buffer):
            raise _ClaimError(f"it claims an array of shape {tuple(shape)} of {dtype} over "
                              f"{len(buffer):,} bytes of data")  # fmt: skip
        return _numpy_global("numeric", "_frombuffer")(buffer, dtype, shape, order)

    def check_array_state(self, state) -> None:
        """The state numpy pickles for an array, ``([version,] shape, dtype, is_fortran,
        data)``, checked before ``ndarray.__setstate__`` allocates its shape: the data must
        be there."""
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("an array state that numpy never pickles")
        shape, dtype, _, data = state[-4:]
        if not isinstance(dtype, np.dtype):
            raise pickle.UnpicklingError(f"an array state with a {type(dtype).__name__} dtype")
        dtype, count = self.dtype(dtype), _count(shape, self.limit)
        if dtype.hasobject:
            have, claimed = (len(data) if isinstance(data, list) else -1), count
        elif isinstance(data, bytes | bytearray | str):  # str: a Python 2 string, latin1
            have, claimed = len(data), count * dtype.itemsize
        else:
            raise pickle.UnpicklingError(f"an array's data given as a {type(data).__name__}")
        if have != claimed:
            raise _ClaimError(f"it claims an array of shape {tuple(shape)} of {dtype} "
                              f"({claimed:,} {'items' if dtype.hasobject else 'bytes'}) but "
                              f"holds {max(have, 0):,}")  # fmt: skip

    def load_build(self):
        """BUILD sets the state of an array or a dtype that this pickle has just made."""
        state = self.stack.pop()
        inst = self.stack[-1]
        if self.unset.pop(id(inst), None) is not inst:
            what = ("numpy dtype" if isinstance(inst, np.dtype) else "numpy array"
                    if isinstance(inst, np.ndarray) else type(inst).__name__)  # fmt: skip
            raise pickle.UnpicklingError(f"it sets the state of a {what} that it has used "
                                         "already, or that is not its own new array or dtype")  # fmt: skip
        if isinstance(inst, np.ndarray):
            self.check_array_state(state)
            inst.__setstate__(state)
        else:
            for dtype in _dtypes_in(state):  # its fields' dtypes: in use from now on
                self.dtype(dtype)
            inst.__setstate__(state)
            self.dtype(inst)

    dispatch[pickle.BUILD[0]] = load_build

    def load_bytearray8(self):
        """BYTEARRAY8 (protocol 5 arrays): read, and only then copied to a bytearray."""
        (n,) = struct.unpack("<Q", self.read(8))
        self.append(bytearray(self.read(n)))

    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8


#: The globals the papers' pickles (and numpy arrays pickled by numpy 1.x or 2.x at any protocol)
#: name, with what each is read as by a :class:`_PaperUnpickler`: numpy arrays (``_reconstruct`` +
#: ``ndarray``, or ``_frombuffer`` at protocol 5), numpy scalars (``scalar``, e.g. the numpy.int64
#: class ids of StackGAN's train/class_info.pickle), dtypes, and the raw bytes of Python 3
#: protocol 0-2 pickles. Lists, dicts, tuples, strings and numbers need no global.
_SAFE_GLOBALS = {
    ("numpy", "ndarray"): lambda u: _NdarrayName,
    ("numpy", "dtype"): lambda u: u.new_dtype,
    **{(f"{base}.multiarray", "_reconstruct"): lambda u: u.reconstruct
       for base in ("numpy.core", "numpy._core")},
    **{(f"{base}.multiarray", "scalar"): lambda u: u.scalar
       for base in ("numpy.core", "numpy._core")},
    **{(f"{base}.numeric", "_frombuffer"): lambda u: u.frombuffer
       for base in ("numpy.core", "numpy._core")},
    ("_codecs", "encode"): lambda u: _latin1_bytes,
    ("builtins", "bytes"): lambda u: _empty_bytes,  # b"" at protocols 0-2
    ("__builtin__", "bytes"): lambda u: _empty_bytes,
}  # fmt: skip


def read_pickle(path: str | Path):
    """Load a StackGAN/AttnGAN pickle (Python 2 protocol: ``encoding="latin1"``), safely.

    Only numpy arrays, numpy scalars and dtypes, lists, tuples, dicts, strings, bytes and numbers
    are built: any other global is refused with an :class:`UnsafePickleError` naming the file and
    the global, and nothing of the pickle runs (a plain ``pickle.load`` of a crafted file runs
    arbitrary code). No array, element type or byte string may claim more bytes than the file
    has (an array's data is in the file): a pickle that does is refused with a ``ValueError``
    naming the file, before that much memory is asked for.
    """
    with open(path, "rb") as f:
        try:
            return _PaperUnpickler(f, os.fstat(f.fileno()).st_size).load()
        except UnsafePickleError as err:
            raise UnsafePickleError(
                f"{path}: refused to load this pickle: {err}, which the papers' pickles never "
                "hold (they hold numpy arrays, lists, dicts, strings and numbers only); loading "
                "it could run arbitrary code"
            ) from None
        except _ClaimError as err:
            raise ValueError(f"{path}: refused to load this pickle: {err} (damaged or "
                             "crafted)") from None  # fmt: skip
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                IndexError, KeyError, OverflowError, RecursionError, struct.error) as err:  # fmt: skip
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


def _load_t7(path: Path):
    from t2igan.data.t7 import T7FormatError, load_t7

    try:
        return load_t7(path)
    except T7FormatError as err:
        raise ValueError(f"{path}: not a readable Torch7 file ({err.reason})") from None


def read_reed_t7(path: str | Path) -> dict:
    """One of Reed's per-image ``.t7`` tables as ``{"img": str, "txt": (C, D), "captions": [...]}``.

    Raises:
        ValueError: (one line naming the file and the key) the file is not a readable Torch7
            table, a tensor in it claims more than the file holds, or ``txt`` / ``char`` are not
            2-d tensors.
    """
    table = _load_t7(Path(path))
    if not isinstance(table, dict) or "txt" not in table:
        raise ValueError(f"{path}: no 'txt' embeddings in this Torch7 table")
    txt, char = table["txt"], table.get("char")
    if not (isinstance(txt, np.ndarray) and txt.ndim in (1, 2) and txt.size
            and np.issubdtype(txt.dtype, np.number)):  # fmt: skip
        raise ValueError(f"{path}: txt is {_describe(txt)}, not the (captions, dim) embeddings")
    txt = np.asarray(txt, dtype=np.float32)
    out = {"img": str(table.get("img", "")), "txt": txt.reshape(-1, txt.shape[-1])}
    if char is not None:
        if not (isinstance(char, np.ndarray) and char.ndim == 2
                and np.issubdtype(char.dtype, np.integer)):  # fmt: skip
            raise ValueError(f"{path}: char is {_describe(char)}, not the (length, captions) "
                             "character indices")  # fmt: skip
        out["captions"] = decode_reed_chars(char)
    return out


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} tensor of shape {value.shape}"
    return f"a {type(value).__name__}"


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
    if not path.is_file():
        raise MissingDataError(f"{path} not found: expected {what} there")
    value = _load_t7(path)
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
