"""A minimal Torch7 serialiser (torch.save's binary format, as torch7/File.lua writes it, the
format torchfile and the authors' Lua code read): tables, strings, numbers, float and byte
tensors (numpy arrays) and storages, Torch objects; an object written twice (a shared storage)
is written once and referenced after. ``t2igan embed --out FILE.t7`` writes the papers' caption
layout with it; the tests write the authors' ``.t7`` fixtures with it."""

from __future__ import annotations

import struct

import numpy as np

NIL, NUMBER, STRING, TABLE, TORCH = 0, 1, 2, 3, 4


class Obj:
    """A Torch object: class name and a table of fields."""

    def __init__(self, typename: str, fields: dict) -> None:
        self.typename, self.fields = typename, fields


class Storage:
    """A FloatStorage, or a ByteStorage for uint8 data."""

    def __init__(self, data: np.ndarray) -> None:
        data = np.asarray(data)
        self.kind, dtype = ("Byte", np.uint8) if data.dtype == np.uint8 else ("Float", "<f4")
        self.data = np.ascontiguousarray(data, dtype=dtype).reshape(-1)


class Tensor:
    """A tensor view of ``storage`` (contiguous, shape ``shape``)."""

    def __init__(self, storage: Storage, shape: tuple[int, ...]) -> None:
        self.storage, self.shape = storage, shape


def tensor(a) -> Tensor:
    a = np.asarray(a)
    a = a if a.dtype == np.uint8 else a.astype(np.float32)
    return Tensor(Storage(a), a.shape)


class _Writer:
    def __init__(self, f) -> None:
        self.f, self.memo = f, {}

    def int(self, v):
        self.f.write(struct.pack("<i", v))

    def long(self, v):
        self.f.write(struct.pack("<q", v))

    def string(self, s: str):
        b = s.encode()
        self.int(len(b))
        self.f.write(b)

    def ref(self, obj, kind) -> bool:
        """Write the type and the reference index; True when the object is new."""
        self.int(kind)
        new = id(obj) not in self.memo
        self.memo.setdefault(id(obj), (len(self.memo) + 1, obj))
        self.int(self.memo[id(obj)][0])
        return new

    def obj(self, v):
        if v is None:
            self.int(NIL)
        elif isinstance(v, bool | int | float):
            self.int(NUMBER)
            self.f.write(struct.pack("<d", float(v)))
        elif isinstance(v, str):
            self.int(STRING)
            self.string(v)
        elif isinstance(v, dict | list):
            if self.ref(v, TABLE):
                items = v.items() if isinstance(v, dict) else enumerate(v, 1)
                items = list(items)
                self.int(len(items))
                for k, x in items:
                    self.obj(k)
                    self.obj(x)
        elif isinstance(v, Obj):
            if self.ref(v, TORCH):
                self.string("V 1")
                self.string(v.typename)
                self.obj(v.fields)
        elif isinstance(v, np.ndarray):
            self.obj(tensor(v))
        elif isinstance(v, Tensor):
            if self.ref(v, TORCH):
                self.string("V 1")
                self.string(f"torch.{v.storage.kind}Tensor")
                self.int(len(v.shape))
                strides = np.cumprod((1, *v.shape[::-1]))[:-1][::-1]
                for s in v.shape:
                    self.long(int(s))
                for s in strides:
                    self.long(int(s))
                self.long(1)
                self.obj(v.storage)
        elif isinstance(v, Storage):
            if self.ref(v, TORCH):
                self.string("V 1")
                self.string(f"torch.{v.kind}Storage")
                self.long(len(v.data))
                self.f.write(v.data.tobytes())
        else:
            raise TypeError(type(v))


def save_t7(path, obj) -> None:
    """Write ``obj`` (dicts and lists become tables; numpy arrays tensors) to ``path``."""
    with open(path, "wb") as f:
        _Writer(f).obj(obj)
