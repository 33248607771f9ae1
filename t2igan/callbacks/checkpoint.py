"""Checkpoints a crash cannot lose: ``<run>/checkpoints/last.ckpt`` after every epoch, written
atomically, and the checks ``--ckpt_path last`` makes before it resumes."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint

from t2igan.atomic import remove_stale_tmp, save_atomic
from t2igan.models.base import load_checkpoint_file, written_checkpoint
from t2igan.models.loading import check_classes

log = logging.getLogger(__name__)


class NonFiniteStateError(RuntimeError):
    """The model's weights are not finite: such a state is never written as a checkpoint."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file beside the target, ``fsync``, then rename over it, so
    a checkpoint file is always either the old one or the new one, whatever the filesystem (an
    interrupted write, ``kill -9`` or a power cut leaves no half-written ``last.ckpt``).
    Lightning's own writer goes through a temporary file in ``$TMPDIR`` and, when that is on
    another filesystem, copies it over the target in place. Remote (fsspec) paths keep
    Lightning's writer."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        save_atomic(checkpoint, path)


def use_atomic_checkpoints(trainer: L.Trainer) -> None:
    """Make ``trainer`` write checkpoints with :class:`AtomicCheckpointIO` (unless the user gave
    a checkpoint plugin of their own)."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()


def is_intact(path: str | Path) -> bool:
    """Whether ``path`` loads as a checkpoint (tensors and plain data only) naming only
    classes t2igan would import (:func:`check_classes`)."""
    try:
        check_classes(torch.load(path, map_location="cpu", weights_only=True, mmap=True), "")
    except Exception:  # truncated zip, not a zip, refused global or class: "cannot resume"
        return False
    return True


def newest_intact(folder: str | Path, exclude: Path | None = None) -> Path | None:
    """The most recently written checkpoint in ``folder`` that loads, or None."""
    files = sorted(Path(folder).glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    return next((p for p in files if p != exclude and is_intact(p)), None)


#: How to get a checkpoint to resume from: in the error for one that is missing.
HOW_TO_RESUME = ("pass a checkpoint that `t2igan fit` wrote, e.g. runs/quickstart/checkpoints/"
                 "last.ckpt, or --ckpt_path last for the run's own")  # fmt: skip


def check_ckpt_path(path: str | Path) -> dict:
    """The checkpoint ``--ckpt_path`` names (loaded with ``weights_only=True``), or a one-line
    error when it cannot be resumed from: a folder, a missing file, not a checkpoint (a text
    file, a cut-short copy), one that holds pickled objects (never loaded) or is damaged; the
    newest intact checkpoint beside it (in it, for a folder) is named instead, if there is
    one."""
    path = Path(path)
    try:
        checkpoint = load_checkpoint_file(path, "--ckpt_path", HOW_TO_RESUME)
        check_classes(checkpoint, f"--ckpt_path {path}")
        return checkpoint
    except ValueError as err:
        folder = path if path.is_dir() else path.parent  # a folder: the newest in it
        other = newest_intact(folder, exclude=path) if folder.is_dir() else None
        if other is None:
            raise
        raise ValueError(f"{err}; resume from {other} instead") from err


def resume_path(checkpoint_dir: str | Path, ckpt_path: str | None) -> str | None:
    """The file ``--ckpt_path`` names, checked before a fit starts: ``last`` is
    ``checkpoint_dir/last.ckpt``, which must exist (no silent fresh start); a file that does not
    load is refused (:func:`check_ckpt_path`)."""
    if ckpt_path is None:
        return None
    folder = Path(checkpoint_dir)
    if ckpt_path == "last":
        path = folder / "last.ckpt"
        if not path.exists():
            raise FileNotFoundError(
                f"--ckpt_path last: no checkpoint in {folder}/ to resume from (for a fresh run, "
                "leave out --ckpt_path)"
            )
    else:
        path = Path(ckpt_path)
    check_ckpt_path(path)
    return str(path)


class RunCheckpoint(ModelCheckpoint):
    """The run's checkpoints: ``<run>/checkpoints/last.ckpt`` (every weight, both optimisers,
    schedulers, random-number states and callback states) after every training epoch, and
    optionally a kept copy every ``keep_every_n_epochs`` epochs and a mid-epoch ``last.ckpt``
    every ``every_n_batches`` batches.

    It always saves at the very end of an epoch, after validation and every epoch-end hook, so
    that ``--ckpt_path last`` resumes exactly, however often validation runs. Files are written
    atomically (:class:`AtomicCheckpointIO`); a state whose weights are not finite is never
    written (the last finite checkpoint stays). ``fast_dev_run`` writes nothing. A fresh fit (no
    ``--ckpt_path``) in a folder that holds an earlier run's checkpoints first moves them into
    ``checkpoints/previous-<time>/``, so ``last.ckpt`` always means the newest state of the
    newest run and nothing is lost.

    Args:
        dirpath: the checkpoint folder; default ``<trainer.default_root_dir>/checkpoints``.
        keep_every_n_epochs: also keep ``epoch=NNNN.ckpt`` every this many epochs (0: none).
        every_n_batches: also write ``last.ckpt`` every this many training batches (counted in
            batches, not optimiser steps); 0: at epoch ends only.
    """

    def __init__(
        self, dirpath: str | None = None, keep_every_n_epochs: int = 0, every_n_batches: int = 0
    ) -> None:
        if keep_every_n_epochs < 0 or every_n_batches < 0:
            raise ValueError("keep_every_n_epochs and every_n_batches must be >= 0")
        super().__init__(
            dirpath=dirpath, filename="epoch={epoch:04d}", auto_insert_metric_name=False,
            save_last=True, save_top_k=-1, every_n_epochs=0, save_on_train_epoch_end=True,
            enable_version_counter=False,
        )  # fmt: skip
        self.keep_every_n_epochs = keep_every_n_epochs
        self.every_n_batches = every_n_batches

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")
        use_atomic_checkpoints(trainer)
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero:
            remove_stale_tmp(Path(self.dirpath))  # of a save that kill -9 interrupted

    def on_fit_start(self, trainer: L.Trainer, pl_module) -> None:
        # Here, not in setup: Lightning knows whether it resumes only after setup.
        folder = Path(self.dirpath)
        old = sorted(folder.glob("*.ckpt")) if folder.is_dir() else []
        if (
            old
            and trainer.ckpt_path is None
            and not trainer.fast_dev_run
            and trainer.is_global_zero
        ):
            newest = max(p.stat().st_mtime for p in old)
            kept = folder / time.strftime("previous-%Y%m%d-%H%M%S", time.localtime(newest))
            kept.mkdir(exist_ok=True)
            for path in old:
                os.replace(path, kept / path.name)
            log.warning("%d checkpoints of an earlier run moved to %s/", len(old), kept)
        trainer.strategy.barrier("RunCheckpoint.on_fit_start")

    def _skip(self, trainer: L.Trainer) -> bool:
        return bool(trainer.fast_dev_run) or trainer.sanity_checking or trainer.state.fn != "fit"

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        bad = [n for n, p in trainer.lightning_module.state_dict().items()
               if p.is_floating_point() and not torch.isfinite(p).all()]  # fmt: skip
        if bad:
            self.last_model_path = written_checkpoint(self)  # "" if it names no file yet
            if self.last_model_path:
                kept = (f"The last finite checkpoint is {self.last_model_path}: resume from it "
                        "with --ckpt_path and a lower learning rate")  # fmt: skip
            else:
                kept = "No checkpoint was written before it: lower the learning rate"
            raise NonFiniteStateError(
                f"{len(bad)} weights are not finite at epoch {trainer.current_epoch} (e.g. "
                f"{bad[0]}); not saving {filepath}. {kept}."
            )
        super()._save_checkpoint(trainer, filepath)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        if self.every_n_batches and not self._skip(trainer):
            # ``completed`` is incremented after this hook: ``done + 1`` batches are finished
            if (done + 1) % self.every_n_batches == 0:
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        if self._skip(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        keep = self.keep_every_n_epochs
        if keep and (trainer.current_epoch + 1) % keep == 0:
            self._save_checkpoint(trainer, self.format_checkpoint_name(candidates))
        self._save_last_checkpoint(trainer, candidates)

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        """Nothing: the epoch's checkpoint is written at its end, after validation."""

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        """Nothing: every epoch end already wrote ``last.ckpt`` (and fast_dev_run writes none)."""


def checkpoint_dir(trainer: L.Trainer) -> Path:
    """Where the trainer's :class:`RunCheckpoint` writes (``<run>/checkpoints`` by default)."""
    callback = next((c for c in trainer.callbacks if isinstance(c, RunCheckpoint)), None)
    if callback is not None and callback.dirpath:
        return Path(callback.dirpath)
    return Path(trainer.default_root_dir) / "checkpoints"
