"""Where a run's outputs go: everything under its run directory, ``trainer.default_root_dir``
(``runs/quickstart/`` for the quickstart), whatever the config file said."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import Namespace

#: Loggers that write ``<save_dir>/<name>/version_N/`` folders (W&B's ``version`` is a run id).
FOLDER_LOGGERS = ("TensorBoardLogger", "CSVLogger")


def follow_run_dir(trainer: Namespace) -> None:
    """Point the loggers of a parsed trainer config at its run directory: a logger without a
    ``save_dir`` (W&B: with its default ``.``) writes under ``default_root_dir``, and the folder
    loggers of one fit share one ``version_N`` (each would otherwise count on its own, and the
    second find the first's new folder)."""
    loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]
    loggers = [lg for lg in loggers if isinstance(lg, Namespace) and "init_args" in lg]
    for lg in loggers:
        default = "." if lg.class_path.endswith("WandbLogger") else None
        if lg.init_args.get("save_dir", 0) == default:
            lg.init_args.save_dir = str(trainer.default_root_dir or ".")
    folders = [lg.init_args for lg in loggers if lg.class_path.rpartition(".")[2] in FOLDER_LOGGERS]
    version = next_log_version(folders)
    for args in folders:
        if args.get("version") is None:
            args.version = version


def next_log_version(loggers: list[Namespace]) -> int:
    """The first N such that no ``save_dir/name/version_N`` of these loggers' arguments exists."""
    taken = [-1]
    for args in loggers:
        if args.get("save_dir") is None:
            continue
        for d in (Path(args.save_dir) / str(args.get("name") or "")).glob("version_*"):
            number = d.name.removeprefix("version_")
            if number.isdigit():
                taken.append(int(number))
    return max(taken) + 1
