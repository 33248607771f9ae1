"""``class_path``, t2igan's only registry: a class is named by its dotted import path, as in
LightningCLI configs, text-encoder specs and the ``t2igan`` entry of every checkpoint."""

from __future__ import annotations

import importlib


def import_class(class_path: str, base: type | None = None) -> type:
    """The class named ``class_path`` (``"package.module.Class"``); with ``base``, it must be a
    subclass of it. A clear ``ValueError`` names the path when it does not resolve."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"class_path {class_path!r} does not name an importable class") from err
    if base is not None and not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{class_path} is not a {base.__name__} subclass")
    return cls
