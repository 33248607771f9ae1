"""``class_path``, t2igan's only registry: a class is named by its dotted import path, as in
LightningCLI configs, text-encoder specs and the ``t2igan`` entry of every checkpoint.

Importing a module runs its code, so a class path read from a file (a checkpoint, the text-encoder
spec it records, a run's config) is checked before anything is imported: it must name one of
t2igan's classes (:data:`FILE_CLASSES`), or a class whose module this process has already
imported (your own model class, imported by your program or named in your LightningCLI config:
looking it up runs nothing). A class path the user gives on the command line is the user's
choice: ``allowed=None`` takes any.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable

#: What a class path read from a file may name: a package prefix (ending in ``.``) or one class.
#: Every text encoder a t2igan spec can name (``TextEncoder`` subclasses) is t2igan's own.
FILE_CLASSES = ("t2igan.",)


class UntrustedClassError(ValueError):
    """A file names a class outside the allowed ones whose module is not imported: it is
    refused before anything is imported (importing a module runs its code)."""


def _allowed(class_path: str, allowed: Iterable[str]) -> bool:
    return any(class_path.startswith(a) if a.endswith(".") else class_path == a for a in allowed)


def check_class_path(
    class_path: object, allowed: Iterable[str] | None = FILE_CLASSES, source: str | None = None
) -> tuple[str, str]:
    """``(module, name)`` of ``class_path`` once it is known to be safe to import: a dotted path
    of identifiers, inside ``allowed`` or in a module already imported. ``source`` (the file and
    what in it names the class) leads the error. Imports nothing."""
    where = f"{source}: " if source else ""
    parts = class_path.split(".") if isinstance(class_path, str) else []
    if len(parts) < 2 or not all(p.isidentifier() and not p.startswith("__") for p in parts):
        raise ValueError(f"{where}class_path {class_path!r} is not a dotted class path "
                         "(package.module.Class)")  # fmt: skip
    module, _, name = class_path.rpartition(".")
    if allowed is not None and not _allowed(class_path, allowed) and module not in sys.modules:
        raise UntrustedClassError(
            f"{source or 'the file'} names the class {class_path}, which is not t2igan's: "
            "refused without importing it (importing a module runs its code); pass a file that "
            "t2igan wrote"
        )
    return module, name


def check_class_paths(
    obj: object, allowed: Iterable[str] | None = FILE_CLASSES, source: str | None = None
) -> None:
    """:func:`check_class_path` on every ``class_path`` (and LightningCLI's ``_class_path``)
    value anywhere in ``obj``, nested dicts and lists (a checkpoint's hyper-parameters, a run's
    config), before any of them is imported."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in ("class_path", "_class_path"):
                    check_class_path(value, allowed, source)
                else:
                    stack.append(value)
        elif isinstance(item, list | tuple):
            stack.extend(item)


#: Classes that moved, as checkpoints written before recorded them: old module -> {class name:
#: the module it lives in now}.
MOVED = {
    "t2igan.models.gan_int_cls": {
        name: "t2igan.models.style_encoder"
        for name in ("StyleEncoder", "StyleEncoderGAN", "style_loss", "reconstruction_loss")
    },
}


def import_class(
    class_path: str,
    base: type | None = None,
    allowed: Iterable[str] | None = FILE_CLASSES,
    source: str | None = None,
) -> type:
    """The class named ``class_path`` (``"package.module.Class"``); with ``base``, it must be a
    subclass of it. The name is checked before anything is imported
    (:func:`check_class_path`: within ``allowed``, whose default suits a class path read from a
    file, or already imported; ``allowed=None`` for one the user gave). A clear ``ValueError``,
    led by ``source``, names the path when it is refused or does not resolve."""
    module, name = check_class_path(class_path, allowed, source)
    module = MOVED.get(module, {}).get(name, module)
    where = f"{source}: " if source else ""
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(
            f"{where}class_path {class_path!r} does not name an importable class"
        ) from err
    if not isinstance(cls, type):
        raise ValueError(f"{where}class_path {class_path!r} names a {type(cls).__name__}, "
                         "not a class")  # fmt: skip
    if base is not None and not issubclass(cls, base):
        raise ValueError(f"{where}{class_path} is not a {base.__name__} subclass")
    return cls


def imported_class(class_path: str) -> type | None:
    """The class ``class_path`` names if its module is already imported, else None: a lookup
    that never imports (for a class path quoted in an error message)."""
    module, _, name = class_path.rpartition(".")
    cls = getattr(sys.modules.get(module), name, None)
    return cls if isinstance(cls, type) else None
