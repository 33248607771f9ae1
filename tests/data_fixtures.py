"""Small, format-faithful fixtures of the real datasets' on-disk layouts, written by the tests."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from t2igan.data.contract import CUB_PARTS
from t2igan.data.t7 import save_t7, tensor

#: Image sizes (w, h) cycled over the fixture images: not square, not all alike.
SIZES = ((80, 60), (64, 96), (100, 70))


def _image(path: Path, size: tuple[int, int], seed: int, mode: str = "RGB") -> None:
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG")


#: Real rows of the official CUB ``bounding_boxes.txt`` whose box ends one pixel past its image
#: (x + w = W + 1 or y + h = H + 1), which the official file ships: (image id, images.txt key,
#: the row's box, image size (w, h), train_test_split value). The overrun side of each size
#: follows from the row (x + w = 501 for id 47: a 500-pixel width; y + h = 376, 334 and 376 for
#: ids 757, 1233 and 1241: heights of 375, 333 and 375); the other side is a usual CUB size
#: that holds the box (the real subset in ../shared/data has none of these four images).
REAL_OFF_BY_ONE = (
    (47, "001.Black_footed_Albatross/Black_Footed_Albatross_0050_796125", "5.0 127.0 496.0 131.0",
     (500, 333), 0),
    (757, "014.Indigo_Bunting/Indigo_Bunting_0058_12207", "58.0 70.0 216.0 306.0", (500, 375), 0),
    (1233, "023.Brandt_Cormorant/Brandt_Cormorant_0014_23050", "123.0 22.0 210.0 312.0",
     (500, 333), 1),
    (1241, "023.Brandt_Cormorant/Brandt_Cormorant_0067_23352", "68.0 20.0 431.0 356.0",
     (500, 375), 1),
)  # fmt: skip


def make_cub(root: Path, classes=(1, 2, 4, 7), per_class: int = 3, crlf: bool = False,
             captions: int = 10, real_rows=()) -> Path:  # fmt: skip
    """A CUB_200_2011 folder (plus ``text_c10`` beside it, the StackGAN layout) with
    ``per_class`` images of each class id in ``classes``. Image ids run in a shuffled name
    order (images.txt is not sorted by name); image k has box (5, 6, w/2, h/2) and its left
    wing at (10, 20), right wing invisible. Class 1 and 4 are StackGAN test classes.

    ``real_rows`` (e.g. :data:`REAL_OFF_BY_ONE`) adds images with real ids, names and boxes,
    in JPEGs of the given sizes, after the others."""
    cub = root / "CUB_200_2011"
    rows, n = [], 0
    for c in classes:
        for j in range(per_class):
            n += 1
            rows.append((c, f"{c:03d}.Bird_{c}/Bird_{c}_{j:04d}_{100 + n}"))
    order = np.random.default_rng(0).permutation(len(rows))
    rows = [rows[i] for i in order]
    assert all(r[0] > len(rows) for r in real_rows), "real ids must follow the fixture's"
    eol = "\r\n" if crlf else "\n"

    def write(rel: str, lines: list[str]) -> None:
        path = cub / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(eol.join(lines + [""]).encode())

    images, labels, split, boxes, locs = [], [], [], [], []

    def add(i: int, key: str, c: int, box: str, is_train: int, size, mode="RGB", beak=False):
        _image(cub / "images" / f"{key}.jpg", size, i, mode)
        images.append(f"{i} {key}.jpg")
        labels.append(f"{i} {c}")
        split.append(f"{i} {is_train}")
        boxes.append(f"{i} {box}")
        for p, name in enumerate(CUB_PARTS, 1):
            xy, vis = ("10.0 20.0", 1) if name == "left wing" else ("0.0 0.0", 0)
            if beak and name == "beak":
                xy, vis = (f"{size[0] - 1}.0 {size[1] - 1}.0", 1)
            locs.append(f"{i} {p} {xy} {vis}")
        _captions(root, key, captions, eol)

    for i, (c, key) in enumerate(rows, 1):
        w, h = SIZES[i % len(SIZES)]
        mode = "L" if i == 2 else "CMYK" if i == 3 else "RGB"
        add(i, key, c, f"5.0 6.0 {w / 2} {h / 2}", i % 2, (w, h), mode, beak=True)
    for i, key, box, size, is_train in real_rows:
        add(i, key, int(key[:3]), box, is_train, size)
    names = {c: f"{c:03d}.Bird_{c}" for c in classes}
    names.update({int(key[:3]): key.split("/")[0] for _, key, *_ in real_rows})
    write("images.txt", images)
    write("classes.txt", [f"{c} {names[c]}" for c in sorted(names)])
    write("image_class_labels.txt", labels)
    write("train_test_split.txt", split)
    write("bounding_boxes.txt", boxes)
    write("parts/parts.txt", [f"{p} {name}" for p, name in enumerate(CUB_PARTS, 1)])
    write("parts/part_locs.txt", locs)
    return cub


def _captions(root: Path, key: str, count: int, eol: str) -> None:
    text = root / "text_c10" / f"{key}.txt"
    text.parent.mkdir(parents=True, exist_ok=True)
    text.write_bytes(eol.join(f"caption {k} of image {key}." for k in range(count)).encode())


def cub_keys(cub: Path) -> list[str]:
    """Image keys of a fixture in images.txt order."""
    lines = (cub / "images.txt").read_text().split()
    return [s.rsplit(".", 1)[0] for s in lines[1::2]]


def make_flowers(root: Path, labels=(1, 1, 5, 5, 2, 10, 3, 3)) -> Path:
    """An Oxford-102 folder: image i+1 has label labels[i], setid puts images in all three sets."""
    from scipy.io import savemat

    flowers = root / "flowers"
    for i, label in enumerate(labels, 1):
        _image(flowers / "jpg" / f"image_{i:05d}.jpg", SIZES[i % 3], i)
        text = flowers / "text_c10" / f"class_{label:05d}" / f"image_{i:05d}.txt"
        text.parent.mkdir(parents=True, exist_ok=True)
        text.write_text("".join(f"flower {i} caption {k}.\n" for k in range(10)))
    n = len(labels)
    savemat(flowers / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    ids = np.arange(1, n + 1, dtype=np.uint16)
    savemat(flowers / "setid.mat", {"trnid": ids[None, 0::3], "valid": ids[None, 1::3],
                                    "tstid": ids[None, 2::3]})  # fmt: skip
    return flowers


def write_stackgan(folder: Path, split: str, keys: list[str], classes: list[int], dim: int = 8,
                   count: int | None = None) -> np.ndarray:  # fmt: skip
    """StackGAN's ``split/`` pickles (protocol 0, as the Python 2 originals): embeddings row r
    is filled with r + k / 10 for caption k. ``count`` writes a wrong number of rows."""
    base = folder / split
    base.mkdir(parents=True, exist_ok=True)
    n = len(keys) if count is None else count
    emb = np.arange(n, dtype=np.float32)[:, None, None] + np.arange(10)[None, :, None] / 10
    emb = np.broadcast_to(emb, (n, 10, dim)).astype(np.float32)
    for name, obj in (("filenames.pickle", list(keys)), ("class_info.pickle", list(classes)),
                      ("char-CNN-RNN-embeddings.pickle", emb)):  # fmt: skip
        with open(base / name, "wb") as f:
            pickle.dump(obj, f, protocol=0 if name != "char-CNN-RNN-embeddings.pickle" else 2)
    return emb


class _Py2Pickler(pickle._Pickler):
    """Writes protocol 2 pickles as Python 2 with numpy 1.x wrote them (StackGAN's originals):
    byte strings (an array's raw data) and text as Python 2 ``str`` (``BINSTRING`` of latin1
    bytes, read back with ``encoding="latin1"``), numpy's functions under ``numpy.core``. With
    ``unicode_text``, text is written as Python 2 ``unicode`` instead (``BINUNICODE``)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, f, unicode_text: bool = False):
        super().__init__(f, protocol=2)
        self.unicode_text = unicode_text

    def _binstring(self, data: bytes) -> None:
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)

    def save_bytes(self, obj: bytes) -> None:
        self._binstring(obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        if self.unicode_text:
            return pickle._Pickler.save_str(self, obj)
        self._binstring(obj.encode("latin1"))
        self.memoize(obj)

    def save_global(self, obj, name=None) -> None:
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def py2_pickle(path: Path, obj, unicode_text: bool = False) -> Path:
    """Write ``obj`` as a Python 2 / numpy 1.x protocol 2 pickle (see :class:`_Py2Pickler`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        _Py2Pickler(f, unicode_text).dump(obj)
    return path


def reed_chars(captions: list[str]) -> np.ndarray:
    """Captions as Reed's ``char`` bytes (201, C): 1-based alphabet indices, 0 = padding."""
    from t2igan.data.paper_files import REED_ALPHABET

    char = np.zeros((201, len(captions)), dtype=np.uint8)
    for j, text in enumerate(captions):
        for i, ch in enumerate(text[:201]):
            char[i, j] = REED_ALPHABET.index(ch) + 1
    return char


def write_reed_t7(path: Path, img: str, txt: np.ndarray, captions: list[str]) -> None:
    """One of Reed's per-image tables: ``img``, ``txt`` (C, D) and ``char`` (201, C) bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_t7(path, {"img": img, "txt": txt.astype(np.float32), "char": reed_chars(captions)})


def write_reed_cvpr(root: Path, classes: dict[str, list[list[str]]], train: list[int],
                    dim: int = 16) -> dict[str, np.ndarray]:  # fmt: skip
    """Reed's cvpr2016 layout: ``manifest.txt``, ``trainvalids.txt`` (the 1-based manifest lines
    in ``train``), ``images/<class>.t7`` float (N, dim, 10) and ``text_c10/<class>.t7`` bytes
    (N, 201, 10), for ``classes``: file name -> each image's captions. Returns the features
    written per class; feature [i, f, v] is 1000 * class index + 100 * i + f + v / 10."""
    feats = {}
    for dirname in ("images", "text_c10"):
        (root / dirname).mkdir(parents=True, exist_ok=True)
    for k, (fname, images) in enumerate(classes.items()):
        n = len(images)
        i, f, v = np.meshgrid(np.arange(n), np.arange(dim), np.arange(10), indexing="ij")
        feats[fname] = (1000 * k + 100 * i + f + v / 10).astype(np.float32)
        save_t7(root / "images" / fname, tensor(feats[fname]))
        chars = np.stack([reed_chars((caps + [""] * 10)[:10]) for caps in images])
        save_t7(root / "text_c10" / fname, tensor(chars))
    (root / "manifest.txt").write_text("".join(f"{c}\n" for c in classes))
    (root / "trainvalids.txt").write_text("".join(f"{i}\n" for i in train))
    return feats


def write_port_hdf5(path: Path, images: dict[str, tuple[str, list[str]]], dim: int = 8) -> None:
    """aelnouby's layout: split ``train``/``valid``/``test`` groups of ``<name>_<k>`` examples.
    ``images``: name -> (class, captions); all go to ``train`` except names starting 'v'."""
    import io

    import h5py

    with h5py.File(path, "w") as f:
        for n, (name, (cls, caps)) in enumerate(images.items()):
            buf = io.BytesIO()
            Image.fromarray(np.full((30, 40, 3), 10 * n, np.uint8)).save(buf, "JPEG")
            split = "valid" if name.startswith("v") else "train"
            for k, cap in enumerate(caps):
                g = f.create_group(f"{split}/{name}_{k}")
                g.create_dataset("name", data=name)
                g.create_dataset("img", data=np.void(buf.getvalue()))
                g.create_dataset("embeddings", data=np.full(dim, n + k / 10, np.float32))
                g.create_dataset("class", data=cls)
                g.create_dataset("txt", data=cap)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
