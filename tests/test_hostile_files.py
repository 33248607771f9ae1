"""Crafted papers' files (issue 34): .t7 tensors and pickled arrays that claim more than their
file holds are refused with one line naming the file and the object, before any array is made,
and ``t2igan prepare`` then writes nothing. Each file is written here, by t2igan's Torch7 writer
(patched where it cannot claim what a crafted file does) or by hand-assembled pickle opcodes."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from t2igan.cli import main
from t2igan.data.paper_files import STACKGAN_EMB, ReedCVPRReader, read_pickle, read_reed_t7
from t2igan.data.t7 import Obj, Storage, T7FormatError, Tensor, load_t7, save_t7, tensor
from t2igan.models.char_cnn_rnn_t7 import convert_t7

from .data_fixtures import (
    cub_keys,
    make_cub,
    reed_chars,
    write_reed_cvpr,
    write_reed_t7,
    write_stackgan,
)

ROOT = Path(__file__).resolve().parents[1]
HUGE = 10**12


def _storage(n: int) -> Storage:
    return Storage(np.arange(n, dtype=np.float32))


def _claim_storage(path: Path, have: int, claim: int) -> Path:
    """Make the FloatStorage of ``have`` elements in ``path`` claim ``claim`` (the writer only
    writes what it holds)."""
    name = b"torch.FloatStorage"
    data = path.read_bytes()
    old = name + struct.pack("<q", have)
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, name + struct.pack("<q", claim)))
    return path


#: The tensors of issue 34: (the tensor written, how it is patched, what the error says).
CLAIMS = {
    "past its storage": (lambda: Tensor(_storage(16), (10, 1024)), None,
                         r"sizes 10 x 1024 .* reaches element 10,240 of its 16-element storage"),
    "10^6 x 10^6 view": (lambda: Tensor(_storage(1), (10**6, 10**6), strides=(0, 0)), None,
                         r"claims 1,000,000,000,000 elements, more than 8 per byte"),
    "10^12 storage": (lambda: Tensor(_storage(5), (5,)), (5, HUGE),
                      r"torch\.FloatStorage .*claims 1,000,000,000,000 x 4 bytes, but the file "
                      r"has [\d,]+ bytes left"),
}  # fmt: skip


def _write(path: Path, obj, claim: str) -> Path:
    save_t7(path, obj)
    patch = CLAIMS[claim][1]
    return _claim_storage(path, *patch) if patch else path


def _encoder(weight) -> Obj:
    """Enough of the authors' encoder for the converter to reach its first weight."""
    conv = [Obj("nn.TemporalConvolution", {"weight": tensor(np.zeros((4, 8))),
            "bias": tensor(np.zeros(4)), "inputFrameSize": 2}) for _ in range(3)]  # fmt: skip
    conv[0].fields["weight"] = weight
    linear = Obj("nn.Linear", {"weight": tensor(np.zeros((4, 4))), "bias": tensor(np.zeros(4))})
    return Obj("nn.gModule", {"modules": [*conv, linear]})


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_reed_caption_tables_claiming_more_than_their_file_are_refused(tmp_path, claim):
    """read_reed_t7 accepted the first (caption_emb then held the process's memory) and the
    second (a view of 10^12 floats), and ran out of memory on the third."""
    path = tmp_path / "001.Bird" / "Bird_0001.t7"
    path.parent.mkdir()
    _write(path, {"img": "001.Bird/Bird_0001.jpg", "txt": CLAIMS[claim][0](),
                  "char": reed_chars(["a red bird."] * 10)}, claim)  # fmt: skip
    with pytest.raises(ValueError, match=r"Bird_0001\.t7: not a readable Torch7 file "
                       r"\(torch\.Float(Tensor|Storage) txt[ ,]"):  # fmt: skip
        read_reed_t7(path)
    with pytest.raises(ValueError, match=CLAIMS[claim][2]):
        read_reed_t7(path)


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_cvpr_features_claiming_more_than_their_file_are_refused(tmp_path, claim):
    root = tmp_path / "cvpr2016_cub"
    write_reed_cvpr(root, {"001.Red_bird.t7": [["a red bird."]], "002.Blue_bird.t7":
                           [["a blue bird."]]}, train=[1])  # fmt: skip
    _write(root / "images" / "001.Red_bird.t7", CLAIMS[claim][0](), claim)
    with pytest.raises(ValueError, match=r"images/001\.Red_bird\.t7: not a readable Torch7 "
                       r"file \(torch\.Float(Tensor|Storage) at the top level"):  # fmt: skip
        ReedCVPRReader(root).load("train")
    with pytest.raises(ValueError, match=CLAIMS[claim][2]):
        ReedCVPRReader(root).load("train")


@pytest.mark.parametrize("claim", ["10^6 x 10^6 view", "10^12 storage"])
def test_encoders_claiming_huge_tensors_are_refused(tmp_path, claim):
    """The converter copied the 10^12-element view (and asked numpy for the storage) until
    it ran out of memory; "past its storage" crashed it, see the next test."""
    path = _write(tmp_path / "enc.t7", _encoder(CLAIMS[claim][0]()), claim)
    with pytest.raises(ValueError, match=r"enc\.t7 is not a Torch7 file t2igan can read: "
                       r"torch\.Float(Tensor|Storage) modules\[1\]\.weight \(in "
                       r"nn\.TemporalConvolution\)"):  # fmt: skip
        convert_t7(path, tmp_path / "enc.ckpt")
    assert not (tmp_path / "enc.ckpt").exists()


def test_the_converter_exits_with_one_line_instead_of_a_segfault(tmp_path):
    """A weight claiming 4096 x 4096 floats over a storage of 16: the converter copied it and
    died of a segmentation fault (exit 139)."""
    path = tmp_path / "enc.t7"
    save_t7(path, _encoder(Tensor(_storage(16), (4096, 4096))))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "t2igan.models.char_cnn_rnn_t7", str(path),
                           str(tmp_path / "enc.ckpt")], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(
        "python -m t2igan.models.char_cnn_rnn_t7: "
    )
    assert (
        "enc.t7 is not a Torch7 file t2igan can read: torch.FloatTensor modules[1].weight"
        in done.stderr
        and "reaches element 16,777,216 of its 16-element storage" in done.stderr
    )
    assert not (tmp_path / "enc.ckpt").exists()


def test_prepare_refuses_a_caption_table_past_its_storage_and_writes_nothing(tmp_path, capsys):
    """`t2igan prepare --embeddings` used to store the process's memory as caption_emb."""
    cub = make_cub(tmp_path / "raw")
    folder = tmp_path / "cub_icml"
    keys = cub_keys(cub)
    for r, key in enumerate(keys):
        write_reed_t7(folder / f"{key}.t7", key + ".jpg", np.full((10, 1024), r, np.float32),
                      ["a bird."] * 10)  # fmt: skip
    bad = folder / f"{keys[0]}.t7"
    save_t7(bad, {"img": keys[0] + ".jpg", "txt": Tensor(_storage(16), (10, 1024)),
                  "char": reed_chars(["a bird."] * 10)})  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "--dataset", "cub", "--root", str(tmp_path / "data"), "--source",
              str(cub), "--embeddings", str(folder)])  # fmt: skip
    assert exit_info.value.code == 1
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith(f"t2igan prepare: {bad}: not a readable Torch7 file (")
    assert "torch.FloatTensor txt, sizes 10 x 1024" in first
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file()]


def test_load_t7_checks_every_claim_and_keeps_valid_files(tmp_path):
    path = tmp_path / "x.t7"
    shared = _storage(6)
    save_t7(path, {"a": Tensor(shared, (2, 3)), "b": Tensor(shared, (3,), strides=(2,)),
                   "rows": Tensor(shared, (4, 3), strides=(0, 1), offset=3),
                   "empty": Tensor(_storage(0), ()), "m": Obj("nn.Linear", {"x": [1, "y"]})})  # fmt: skip
    t = load_t7(path)
    np.testing.assert_array_equal(t["b"], [0, 2, 4])
    assert np.shares_memory(t["a"], t["b"]) and t["rows"].shape == (4, 3)
    np.testing.assert_array_equal(t["rows"][3], [3, 4, 5])
    assert t["empty"].shape == (0,) and t["m"].typename == "nn.Linear"
    assert t["m"].fields == {"x": [1, "y"]}
    bad = [
        (Tensor(shared, (2, 2), strides=(-1, 1), offset=2), "has a negative size or stride"),
        (Tensor(shared, (2,), offset=-1), "starts before its storage"),
        (Tensor(shared, (2,), offset=5), "reaches element 7 of its 6-element"),
        (Tensor(shared, (1,) * 40), "claims 40 dimensions"),
    ]
    for value, message in bad:
        save_t7(path, {"w": value})
        with pytest.raises(T7FormatError, match=rf"x\.t7: torch\.FloatTensor w.*{message}"):
            load_t7(path)
    save_t7(path, {"w": tensor(np.zeros(2))})
    data = path.read_bytes()
    path.write_bytes(data.replace(b"torch.FloatStorage", b"torch.ShortStorage"))
    with pytest.raises(T7FormatError, match="w, .* is over a storage of int16, not float32"):
        load_t7(path)
    path.write_bytes(data.replace(b"torch.FloatStorage", b"torch.CmplxStorage"))
    with pytest.raises(T7FormatError, match=r"unknown tensor type torch\.CmplxStorage w"):
        load_t7(path)
    path.write_bytes(data[:-3])
    with pytest.raises(T7FormatError, match="FloatStorage w claims 2 x 4 bytes, but the file "
                       "has 5 bytes left"):  # fmt: skip
        load_t7(path)
    path.write_bytes(data[:30])
    with pytest.raises(T7FormatError, match=r"x\.t7: the file ends early \(at byte 30\)"):
        load_t7(path)


# --- pickles ------------------------------------------------------------------------------------

_RECONSTRUCT = b"cnumpy.core.multiarray\n_reconstruct\n"


def _text(s: str) -> bytes:
    return pickle.BINUNICODE + struct.pack("<I", len(s)) + s.encode()


def _bytes(b: bytes) -> bytes:
    return pickle.BINBYTES + struct.pack("<I", len(b)) + b


def _int(n: int) -> bytes:
    if -(2**31) <= n < 2**31:
        return pickle.BININT + struct.pack("<i", n)
    return pickle.LONG1 + b"\x08" + n.to_bytes(8, "little", signed=True)


def _array(shape: bytes, dtype: bytes, state: bytes = b"") -> bytes:
    """``_reconstruct(ndarray, shape, dtype)`` (then BUILD with ``state``), as numpy pickles."""
    made = _RECONSTRUCT + b"cnumpy\nndarray\n" + shape + dtype + pickle.TUPLE3 + pickle.REDUCE
    return made + (pickle.MARK + state + pickle.TUPLE + pickle.BUILD if state else b"")


def _dtype(code: str) -> bytes:
    return b"cnumpy\ndtype\n" + _text(code) + pickle.NEWFALSE + pickle.NEWTRUE + \
        pickle.TUPLE3 + pickle.REDUCE  # fmt: skip


def _void_state(itemsize: int) -> bytes:
    """A void dtype's state, claiming ``itemsize`` bytes an element."""
    return pickle.MARK + _int(3) + _text("|") + pickle.NONE * 3 + _int(itemsize) + _int(1) + \
        _int(0) + pickle.TUPLE + pickle.BUILD  # fmt: skip


_ONE = pickle.BININT1 + b"\x01"
_SHAPE_0 = pickle.BININT1 + b"\x00" + pickle.TUPLE1
_B = _bytes(b"b")
#: Crafted pickles: (the pickle, what the error says). Each made numpy ask for a terabyte (a
#: MemoryError traceback), except the last: a dtype's state set after an array took it
#: stretched the array's 16 bytes to 2,000,000 (later reads go past them).
PICKLES = {
    "_reconstruct of 10^12 bytes": (
        b"\x80\x02" + _array(_int(HUGE // 10**6) + _int(10**6) + pickle.TUPLE2, _B) + b".",
        r"claims an array of shape \(1000000, 1000000\) \(1,000,000,000,000 elements\)"),
    "object array state of 10^12 items": (
        b"\x80\x02" + _array(_SHAPE_0, _B, _ONE + _int(10**6) + _int(10**6) + pickle.TUPLE2
                             + _dtype("O8") + pickle.NEWFALSE + pickle.EMPTY_LIST + pickle.NONE
                             + pickle.APPEND) + b".",
        r"claims an array of shape \(1000000, 1000000\)"),
    "dtype of 10^12 bytes": (
        b"\x80\x02" + _array(_ONE + pickle.TUPLE1, _dtype("V8") + _void_state(HUGE)) + b".",
        r"claims a dtype of 1,000,000,000,000 bytes an element in a file of \d+ bytes"),
    "bytes of 10^12": (
        b"\x80\x04" + pickle.BINBYTES8 + struct.pack("<Q", HUGE) + b"abc.",
        r"claims 1,000,000,000,000 bytes of data where the file has 4 left"),
    "dtype changed after use": (
        b"\x80\x02" + _dtype("V8") + pickle.BINPUT + b"\x00" + pickle.POP
        + _array(_SHAPE_0, _B, _ONE + _int(2) + pickle.TUPLE1 + pickle.BINGET + b"\x00"
                 + pickle.NEWFALSE + _bytes(bytes(16)))
        + pickle.BINGET + b"\x00" + _void_state(10**6) + pickle.POP + b".",
        r"not a readable pickle .*sets the state of a numpy dtype that it has used already"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(PICKLES))
def test_pickles_claiming_more_than_their_file_are_refused(tmp_path, name):
    data, message = PICKLES[name]
    path = tmp_path / "x.pickle"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=rf"x\.pickle: .*{message}"):
        read_pickle(path)


def test_prepare_refuses_a_stackgan_pickle_claiming_a_terabyte(tmp_path, capsys):
    """`t2igan prepare --embeddings` ended in numpy's MemoryError traceback."""
    cub = make_cub(tmp_path / "raw")
    keys = cub_keys(cub)
    test = [k for k in keys if k.startswith(("001", "004"))]
    train = [k for k in keys if k not in test]
    for split, ks in (("train", train), ("test", test)):
        write_stackgan(tmp_path / "sg", split, ks, [int(k[:3]) for k in ks])
    (tmp_path / "sg" / "train" / STACKGAN_EMB).write_bytes(
        PICKLES["_reconstruct of 10^12 bytes"][0]
    )
    with pytest.raises(SystemExit):
        main(["prepare", "--dataset", "cub", "--root", str(tmp_path / "data"), "--source",
              str(cub), "--embeddings", str(tmp_path / "sg")])  # fmt: skip
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith(f"t2igan prepare: {tmp_path / 'sg' / 'train' / STACKGAN_EMB}: "
                            "refused to load this pickle: it claims an array of shape")  # fmt: skip
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
