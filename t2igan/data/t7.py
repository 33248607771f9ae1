"""Torch7 files (``torch.save``'s binary format, as torch7's File.lua writes it and the authors'
Lua code reads it): a bounded reader, :func:`load_t7`, and a minimal writer, :func:`save_t7`.

Every ``.t7`` that t2igan reads goes through :func:`load_t7` (Reed's caption tables, the cvpr2016
features and captions, the authors' text encoders). It checks what each storage and tensor claims
against the file *before* any array is made; torchfile, the usual pure-Python reader, builds
tensors with ``as_strided`` from the claimed sizes, so a crafted file made it read the process's
own memory, crash (segfault) or try to allocate terabytes. The limits:

* a storage of N elements must have its N * itemsize bytes left in the file;
* a tensor's class and its storage's are torch7 types (Byte, Char, Short, Int, Long, Float,
  Double, Half; cutorch's Cuda ones, which it writes as the host storage of their type) and
  match; it has at most :data:`MAX_DIMS` dimensions, sizes and strides are non-negative, and
  ``offset + sum((size - 1) * stride)`` lies inside its storage;
* a tensor has at most :data:`ELEMENTS_PER_BYTE` x (the file's size in bytes) elements, and no
  dimension longer than that: a view with stride 0 (torch's ``expand``) claims many elements over
  a small storage, and every caller copies what it reads;
* every string, table and function claims no more bytes than are left in the file, and objects
  nest no deeper than Python's recursion limit allows.

A file that breaks one is refused with a :class:`T7FormatError` (a ``ValueError``), one line
naming the file and the object (its key path in the tables, e.g. ``txt`` or
``protos.enc_doc.modules[3].weight``, and the Torch class around it).

The writer handles tables, strings, numbers, float and byte tensors (numpy arrays) and storages,
Torch objects; an object written twice (a shared storage) is written once and referenced after.
``t2igan embed --out FILE.t7`` writes the papers' caption layout with it; the tests write the
authors' ``.t7`` fixtures with it.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np

NIL, NUMBER, STRING, TABLE, TORCH, BOOLEAN = 0, 1, 2, 3, 4, 5
FUNCTION, LEGACY_RECUR_FUNCTION, RECUR_FUNCTION = 6, 7, 8

#: Most dimensions a tensor may have (numpy 1.x's limit; torch7 sets none).
MAX_DIMS = 32
#: Most elements a tensor may have per byte of its file. A tensor that does not repeat elements
#: has at most one per byte (each element is stored); the margin is for views with stride 0.
ELEMENTS_PER_BYTE = 8


class Obj:
    """A Torch object: class name and a table of fields."""

    def __init__(self, typename: str, fields: dict) -> None:
        self.typename, self.fields = typename, fields

    def __repr__(self) -> str:
        return f"Obj({self.typename!r})"


class Storage:
    """A FloatStorage, or a ByteStorage for uint8 data."""

    def __init__(self, data: np.ndarray) -> None:
        data = np.asarray(data)
        self.kind, dtype = ("Byte", np.uint8) if data.dtype == np.uint8 else ("Float", "<f4")
        self.data = np.ascontiguousarray(data, dtype=dtype).reshape(-1)


class Tensor:
    """A tensor view of ``storage``: shape ``shape``, contiguous unless ``strides`` are given,
    starting at element ``offset`` (0-based) of the storage."""

    def __init__(self, storage: Storage, shape: tuple[int, ...],
                 strides: tuple[int, ...] | None = None, offset: int = 0) -> None:  # fmt: skip
        self.storage, self.shape, self.offset = storage, tuple(shape), offset
        if strides is None:
            strides = tuple(int(s) for s in np.cumprod((1, *self.shape[::-1]))[:-1][::-1])
        self.strides = tuple(strides)


def tensor(a) -> Tensor:
    a = np.asarray(a)
    a = a if a.dtype == np.uint8 else a.astype(np.float32)
    return Tensor(Storage(a), a.shape)


# --- reading ------------------------------------------------------------------------------------

#: torch7's storage and tensor types, by the letters of their class names.
_TYPES = {"Byte": "u1", "Char": "i1", "Short": "<i2", "Int": "<i4", "Long": "<i8",
          "Float": "<f4", "Double": "<f8", "Half": "<f2"}  # fmt: skip
#: Class name -> element type, the CPU classes and cutorch's (``torch.CudaTensor`` is float).
_STORAGES, _TENSORS = {}, {}
for _name, _code in _TYPES.items():
    for _prefix in ("", "Cuda"):
        _letters = "" if (_prefix, _name) == ("Cuda", "Float") else _name
        _STORAGES[f"torch.{_prefix}{_letters}Storage"] = np.dtype(_code)
        _TENSORS[f"torch.{_prefix}{_letters}Tensor"] = np.dtype(_code)


class T7FormatError(ValueError):
    """A ``.t7`` file that is malformed, or claims more than it holds: ``reason`` says what and
    where (the message is ``"<file>: <reason>"``)."""

    def __init__(self, path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class Table(dict):
    """A Lua table that is not a list (keys other than 1..n): a dict, hashed by identity as Lua
    keys tables, so that a table can key another (nngraph does)."""

    __hash__ = object.__hash__


class Key:
    """A list or tensor used as a table key (Lua keys by identity; Python cannot hash them)."""

    def __init__(self, obj) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other) -> bool:
        return isinstance(other, Key) and other.obj is self.obj


class LuaFunction:
    """A serialised Lua function: its bytecode and upvalues, kept as read (never run)."""

    def __init__(self, dumped: bytes, upvalues=None) -> None:
        self.dumped, self.upvalues = dumped, upvalues


_READING = object()  # stands for a tensor or storage while it is read (a reference to it is bad)
_INT, _LONG, _DOUBLE = struct.Struct("<i"), struct.Struct("<q"), struct.Struct("<d")


class _Reader:
    """Reads one object, checking every claim against the bytes left in the file."""

    def __init__(self, f, path, size: int) -> None:
        self.f, self.path, self.size, self.pos = f, path, size, 0
        self.max_elements = ELEMENTS_PER_BYTE * size
        self.objects: dict[int, object] = {}  # reference index -> object
        self.storages: set[int] = set()  # ids of the arrays read as storages
        self.where: list[str] = []  # the key path of the object being read
        self.owners: list[str] = []  # the Torch classes around it

    def error(self, reason: str) -> T7FormatError:
        return T7FormatError(self.path, reason)

    def place(self) -> str:
        where = "".join(self.where).lstrip(".") or "at the top level"
        return where + (f" (in {self.owners[-1]})" if self.owners else "")

    def take(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) < n:
            raise self.error(f"the file ends early (at byte {self.pos + len(data):,}), in "
                             f"{self.place()}")  # fmt: skip
        self.pos += n
        return data

    def claim(self, count: int, itemsize: int, what: str) -> None:
        """``what`` claims ``count`` items of ``itemsize`` bytes: they must be left in the file."""
        left = self.size - self.pos
        if count < 0 or count * itemsize > left:
            raise self.error(f"{what} {self.place()} claims {count:,} x {itemsize} bytes, but "
                             f"the file has {left:,} bytes left")  # fmt: skip

    def int(self) -> int:
        return _INT.unpack(self.take(4))[0]

    def long(self) -> int:
        return _LONG.unpack(self.take(8))[0]

    def string(self, what: str = "a string") -> str:
        n = self.int()
        self.claim(n, 1, what)
        return self.take(n).decode("utf-8", "surrogateescape")  # Lua strings are bytes

    def obj(self):
        kind = self.int()
        if kind == NIL:
            return None
        if kind == NUMBER:
            x = _DOUBLE.unpack(self.take(8))[0]
            return int(x) if x.is_integer() else x
        if kind == BOOLEAN:
            return self.int() == 1
        if kind == STRING:
            return self.string()
        if kind not in (TABLE, TORCH, FUNCTION, LEGACY_RECUR_FUNCTION, RECUR_FUNCTION):
            raise self.error(f"unknown object type {kind} {self.place()} (at byte "
                             f"{self.pos - 4:,}): not a binary Torch7 file, or damaged")  # fmt: skip
        index = self.int()
        if index in self.objects:  # written before: a reference
            known = self.objects[index]
            if known is _READING:
                raise self.error(f"a tensor or storage {self.place()} refers to itself")
            return known
        if kind == TABLE:
            n = self.int()
            self.claim(n, 8, "a table")  # an entry is at least a key type and a value type
            table = Table()
            self.objects[index] = table
            for _ in range(n):
                key = self.obj()
                self.where.append(f".{key}" if isinstance(key, str) else f"[{key!r}]"
                                  if isinstance(key, int | float | bool) else "[<key>]")  # fmt: skip
                value = self.obj()
                self.where.pop()
                try:
                    table[key] = value
                except TypeError:  # a list or tensor as key
                    table[Key(key)] = value
            # tables with keys 1..n are lists (torchfile does the same; an empty one is a list)
            if all(type(k) is int and 1 <= k <= len(table) for k in table):
                items = [table[k] for k in range(1, len(table) + 1)]
                items = [items if v is table else v for v in items]
                self.objects[index] = items
                return items
            return table
        if kind == TORCH:
            version = self.string("a class version")
            name = self.string("a class name") if version.startswith("V ") else version
            if name in _STORAGES or name in _TENSORS:
                self.objects[index] = _READING
                value = self.storage(name) if name in _STORAGES else self.tensor(name)
                self.objects[index] = value
                return value
            if name.startswith("torch.") and name.endswith(("Tensor", "Storage")):
                raise self.error(f"unknown tensor type {name} {self.place()}")
            obj = Obj(name, None)
            self.objects[index] = obj
            self.owners.append(name)
            obj.fields = self.obj()
            self.owners.pop()
            return obj
        n = self.int()  # a Lua function
        self.claim(n, 1, "a function")
        function = LuaFunction(self.take(n))
        self.objects[index] = function
        function.upvalues = self.obj()
        return function

    def storage(self, name: str) -> np.ndarray:
        dtype = _STORAGES[name]
        n = self.long()
        self.claim(n, dtype.itemsize, name)
        data = np.empty(n, dtype)
        got = self.f.readinto(memoryview(data).cast("B"))
        if got != data.nbytes:
            raise self.error(f"the file ends early, in the {name} {self.place()}")
        self.pos += got
        self.storages.add(id(data))
        return data

    def tensor(self, name: str) -> np.ndarray:
        dtype = _TENSORS[name]
        ndim = self.int()
        if not 0 <= ndim <= MAX_DIMS:
            raise self.error(f"{name} {self.place()} claims {ndim} dimensions (0 to {MAX_DIMS})")
        sizes = list(struct.unpack(f"<{ndim}q", self.take(8 * ndim)))
        strides = list(struct.unpack(f"<{ndim}q", self.take(8 * ndim)))
        offset = self.long() - 1  # 1-based in the file
        storage = self.obj()
        what = (f"{name} {self.place()}, sizes {_x(sizes)} with strides {_x(strides)} from "
                f"storage offset {offset + 1},")  # fmt: skip
        if min(sizes + strides, default=0) < 0:
            raise self.error(f"{what} has a negative size or stride")
        count = math.prod(sizes) if ndim else 0  # torch7: a 0-d tensor is empty
        if storage is None or count == 0:
            if count:
                raise self.error(f"{what} has {count:,} elements but no storage")
            if max(sizes, default=0) > self.max_elements:  # (0, 10**18) is empty, but absurd
                raise self.error(f"{what} has a dimension longer than {self.max_elements:,}, "
                                 f"{ELEMENTS_PER_BYTE} per byte of the file")  # fmt: skip
            return np.empty(sizes if ndim else (0,), dtype)
        if not isinstance(storage, np.ndarray) or id(storage) not in self.storages:
            raise self.error(f"{what} has a {type(storage).__name__} for its storage")
        if storage.dtype != dtype:
            raise self.error(f"{what} is over a storage of {storage.dtype}, not {dtype}")
        if offset < 0:
            raise self.error(f"{what} starts before its storage (offsets count from 1)")
        end = offset + sum((n - 1) * s for n, s in zip(sizes, strides)) + 1
        if end > len(storage):
            raise self.error(f"{what} reaches element {end:,} of its {len(storage):,}-element "
                             "storage")  # fmt: skip
        if count > self.max_elements:  # stride-0 views: few stored elements, many claimed
            raise self.error(f"{what} claims {count:,} elements, more than {ELEMENTS_PER_BYTE} "
                             f"per byte of the file ({self.max_elements:,})")  # fmt: skip
        return np.lib.stride_tricks.as_strided(storage[offset:], shape=sizes,
                                               strides=[s * dtype.itemsize for s in strides])  # fmt: skip


def _x(values) -> str:
    return " x ".join(str(v) for v in values) if values else "none"


def load_t7(path: str | Path):
    """Read the binary Torch7 file ``path``, checking every claim before making anything of it
    (see the module docstring for the limits).

    Returns Lua values as Python ones: nil -> None, numbers -> int when whole else float,
    strings -> str (UTF-8, undecodable bytes kept as surrogates), tables with keys 1..n -> list,
    other tables -> :class:`Table` (a dict), Torch objects (nn modules ...) -> :class:`Obj`,
    storages -> 1-d numpy arrays and tensors -> numpy views of their storage (tensors that
    share a storage share memory, as in Lua).

    Raises:
        T7FormatError: (a ValueError) the file is not a binary Torch7 file, is damaged, or claims
            more than it holds; one line naming the file and the object.
    """
    path = Path(path)
    with open(path, "rb") as f:
        reader = _Reader(f, path, os.fstat(f.fileno()).st_size)
        try:
            return reader.obj()
        except RecursionError:
            raise reader.error(f"objects nest too deeply, at {reader.place()}") from None


# --- writing ------------------------------------------------------------------------------------


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
                for s in (*v.shape, *v.strides):
                    self.long(int(s))
                self.long(v.offset + 1)
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
