"""The ``t2igan`` command's dispatch: LightningCLI's subcommands (fit, validate, test, predict)
and t2igan's own (generate, evaluate, app, prepare, download, embed), errors of the expected
kinds as one line (:mod:`t2igan.command`)."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

from lightning.fabric.utilities.exceptions import MisconfigurationException

from t2igan.cli.download import download_main
from t2igan.cli.embed import embed_main
from t2igan.cli.evaluate import evaluate_main
from t2igan.cli.fit import cli
from t2igan.cli.generate import generate_main
from t2igan.cli.prepare import prepare_main
from t2igan.command import USER_ERRORS, command_of, debug_requested, run_command, warn


def app_main(argv: list[str]) -> None:
    from t2igan.cli.app import app_main as run  # Gradio loads only for the page

    run(argv)


#: Subcommands beside LightningCLI's fit / validate / test / predict: name -> main(argv).
SUBCOMMANDS = {
    "generate": generate_main,
    "app": app_main,
    "prepare": prepare_main,
    "download": download_main,
    "embed": embed_main,
    "evaluate": evaluate_main,
}


def sets_ckpt_path(argv: list[str]) -> bool:
    """Whether a LightningCLI command line gives ``ckpt_path``, as a flag or in a config file."""
    import yaml

    for flag, value in zip(argv, [*argv[1:], None]):
        if flag.startswith("--ckpt_path"):
            return True
        if flag.startswith("--config="):
            flag, value = flag.split("=", 1)
        if flag in ("-c", "--config") and value and Path(value).is_file():
            config = yaml.safe_load(Path(value).read_text())
            if isinstance(config, dict) and config.get("ckpt_path") is not None:
                return True
    return False


def main(argv: list[str] | None = None) -> None:
    """``t2igan ARGV``: a LightningCLI subcommand or one of :data:`SUBCOMMANDS`, with errors of
    the expected kinds as one line (see :mod:`t2igan.command`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    command = command_of(argv)
    if command == "test" and not sets_ckpt_path(argv[1:]):
        warn("test", "no --ckpt_path, so this scores the model's untrained (initial) weights; "
             "pass --ckpt_path RUN/checkpoints/last.ckpt")  # fmt: skip
    if argv[0] in SUBCOMMANDS:
        run = partial(SUBCOMMANDS[command], argv[1:])
    else:
        run = partial(cli, argv)
    run_command(command, run, debug, (*USER_ERRORS, MisconfigurationException))
