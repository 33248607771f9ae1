"""Files a crash cannot leave half-written, and their digests: t2igan's one atomic writer.

Every file t2igan writes that a later run reads (checkpoints, caches, converted weights,
embeddings) goes to ``.<name>.<pid>.tmp`` beside its target, is flushed and ``fsync``-ed, then
renamed over the target, and the folder is synced: an interrupted write, ``kill -9`` or a power
cut leaves the old file or the new one, never half of one. A temporary file a killed process
left behind is removed by :func:`remove_stale_tmp`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

#: Temporary files of atomic writes: ``.<target name>.<pid>.tmp`` beside the target.
_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


def tmp_path(path: Path) -> Path:
    """The temporary file an atomic write of ``path`` by this process goes through."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_path(path: str | Path):
    """Yields the temporary path to write ``path``'s new content to (by any writer: h5py,
    torch.save, ...); on leaving, it is synced and renamed over ``path``, and the folder is
    synced. On an error (or Ctrl-C) the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:  # the rename itself survives a power cut only once the folder is synced
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | Path, write: Callable[[object], None]) -> Path:
    """``write(f)`` to a binary file object whose content replaces ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def save_atomic(obj, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path``, atomically."""
    import torch

    return write_atomic(path, lambda f: torch.save(obj, f))


def file_digest(path: str | Path, algorithm: str) -> str:
    """Hex digest (``sha256``, ``md5``, ...) of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (one of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # e.g. a pid out of range
        return False
    return True


def remove_stale_tmp(folder: str | Path) -> list[Path]:
    """Remove the temporary files ``.<name>.<pid>.tmp`` in ``folder`` whose process is no
    longer running (a write killed with ``kill -9`` cannot remove its own); returns them.
    Files of running processes, this one included, are left alone."""
    removed = []
    if not Path(folder).is_dir():
        return removed
    for tmp in sorted(Path(folder).iterdir()):
        match = _TMP.match(tmp.name)
        if match is None or not tmp.is_file():
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            tmp.unlink()
        except FileNotFoundError:  # another process removed it first
            continue
        log.warning("removed %s: a temporary file of an interrupted write (process %d is no "
                    "longer running)", tmp, pid)  # fmt: skip
        removed.append(tmp)
    return removed
