"""What every ``t2igan`` subcommand shares: errors as one line, not a traceback.

A command's expected failures (a missing file, a bad value, a model that does not load) are
printed as ``t2igan <command>: <message>`` on stderr, with a hint that ``--debug`` (anywhere on
the command line) or ``T2IGAN_DEBUG=1`` shows the traceback; other exceptions are bugs and keep
theirs. Standard library only, so that importing it costs nothing.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable, Iterable

#: Exception types that mean "the input is wrong", not "t2igan is wrong" (MissingDataError is a
#: FileNotFoundError; Lightning's MisconfigurationException is added by the CLI).
USER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, RuntimeError)
DEBUG_HINT = "(run again with --debug for the traceback)"


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
    after printing its first line (and the ``--debug`` hint), unless ``debug``."""
    try:
        run()
    except errors as err:
        if debug:
            raise
        lines = str(err).strip().splitlines() or [type(err).__name__]
        print(f"t2igan {command}: {lines[0]}", file=sys.stderr)
        print(DEBUG_HINT, file=sys.stderr)
        raise SystemExit(1) from None


class CommandParser(argparse.ArgumentParser):
    """``argparse`` with usage errors as one line: ``t2igan <command>: <what is wrong>``, and
    where to read the usage (instead of the usage block first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")
