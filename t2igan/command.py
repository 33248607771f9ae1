"""What every ``t2igan`` subcommand shares: errors as one line, not a traceback, and the
console script's answers that need no PyTorch (``--help``, ``--version``, a mistyped command).

A command's expected failures (a missing file, a bad value, a model that does not load) are
printed as ``t2igan <command>: <message>`` on stderr, with a hint that ``--debug`` (anywhere on
the command line) or ``T2IGAN_DEBUG=1`` shows the traceback; other exceptions are bugs and keep
theirs. Ctrl-C ends any command with ``t2igan <command>: interrupted`` and exit status 130 (the
shell's for SIGINT), except while a trainer runs (``fit``, ``test``, ...): Lightning catches it
there, stops the trainer gracefully and exits with status 1. Standard library only:
``t2igan --help`` answers at once, not after the ~10 s import of PyTorch and Lightning.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable, Iterable
from importlib.metadata import version
from typing import NoReturn

#: Every subcommand with its line in ``t2igan --help``.
COMMANDS = {
    "fit": "train a model: t2igan fit --config experiments/<paper>.yaml",
    "validate": "score a model on the validation split (--ckpt_path)",
    "test": "score a model on the test split (--ckpt_path; without it, untrained weights)",
    "predict": "draw images for the test split's captions (--ckpt_path)",
    "evaluate": "IS, FID, KID, R-precision, CLIP score of a checkpoint (docs/evaluation.md)",
    "generate": "draw images for your own captions from a checkpoint",
    "app": "GAWWN's what-and-where drawing as a local web page (needs the app extra)",
    "prepare": "check a dataset's raw files and write the HDF5 cache training reads",
    "download": "fetch a dataset's official archives (md5-checked, resumable)",
    "embed": "embed captions (one per line) into an HDF5 file",
}
#: Exception types that mean "the input is wrong", not "t2igan is wrong" (MissingDataError is a
#: FileNotFoundError; Lightning's MisconfigurationException is added by the CLI).
USER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, RuntimeError)
DEBUG_HINT = "(run again with --debug for the traceback)"
#: The exit status of a command stopped by Ctrl-C: 128 + SIGINT, as a shell reports it.
INTERRUPTED = 130


def debug_requested(argv: list[str]) -> bool:
    """Whether ``--debug`` is among ``argv`` or ``T2IGAN_DEBUG`` is set (to anything but 0)."""
    return "--debug" in argv or os.environ.get("T2IGAN_DEBUG", "0") not in ("", "0")


def warn(command: str, message: str) -> None:
    """A warning of ``t2igan <command>`` on stderr."""
    print(f"t2igan {command}: warning: {message}", file=sys.stderr)


def closest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the choice closest to ``word``, or an empty string."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def run_command(
    command: str, run: Callable[[], object], debug: bool,
    errors: tuple[type[BaseException], ...] = USER_ERRORS,
) -> None:  # fmt: skip
    """Run ``t2igan <command>``; an error of one of the ``errors`` types exits with status 1
    after printing its first line (and the ``--debug`` hint), and Ctrl-C with status
    :data:`INTERRUPTED` after one line, unless ``debug``."""
    try:
        run()
    except KeyboardInterrupt:
        if debug:
            raise
        interrupted(command)
    except errors as err:
        if debug:
            raise
        # jsonargparse wraps an error raised while it builds a class-typed argument (a text
        # encoder that refuses its checkpoint) in "Does not validate against any of the Union
        # subtypes": the cause is the useful line
        while str(err).startswith("Does not validate against any of") and err.__cause__:
            err = err.__cause__
        lines = str(err).strip().splitlines() or [type(err).__name__]
        print(f"t2igan {command}: {lines[0]}", file=sys.stderr)
        print(DEBUG_HINT, file=sys.stderr)
        raise SystemExit(1) from None


def interrupted(command: str) -> NoReturn:
    """Exit after Ctrl-C: one line, status :data:`INTERRUPTED`, no traceback. Files are
    written atomically (a temporary file, then a rename), so none is left half-written."""
    print(f"t2igan {command}: interrupted", file=sys.stderr)
    raise SystemExit(INTERRUPTED)


class CommandParser(argparse.ArgumentParser):
    """``argparse`` with usage errors as one line: ``t2igan <command>: <what is wrong>``, and
    where to read the usage (instead of the usage block first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def usage() -> str:
    """What ``t2igan --help`` prints."""
    lines = ["usage: t2igan <command> [options]  (t2igan <command> --help: its options)", "",
             "Text-to-image GANs on PyTorch Lightning.", "", "commands:"]  # fmt: skip
    lines += [f"  {name:<10}{line}" for name, line in COMMANDS.items()]
    lines += ["", "options:", "  -h, --help  show this list", "  --version   t2igan's version",
              "  --debug     show the traceback of an error (or set T2IGAN_DEBUG=1)"]  # fmt: skip
    return "\n".join(lines)


def command_of(argv: list[str]) -> str:
    """The subcommand that ``argv`` (``t2igan``'s arguments) runs. ``--help``, ``--version``, no
    command and an unknown one (with the closest known one) are answered here, and exit."""
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        raise SystemExit(0 if argv else 2)
    if argv[0] == "--version":
        print(f"t2igan {version('t2igan')}")
        raise SystemExit(0)
    # LightningCLI also takes options before its subcommand (t2igan -c config.yaml fit)
    command = next((a for a in argv if a in COMMANDS), argv[0]) if argv[0][0] == "-" else argv[0]
    if command not in COMMANDS:
        print(f"t2igan: unknown command {command!r}{closest(command, COMMANDS)}; "
              "t2igan --help lists them", file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    return command
