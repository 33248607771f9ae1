"""The commands, t2igan's top layer: ``t2igan fit`` and LightningCLI's other subcommands
(:mod:`t2igan.cli.fit`), ``generate``, ``evaluate``, ``app``, ``prepare``, ``download``,
``embed`` and ``make demo`` (:mod:`t2igan.cli.demo`). Nothing below this package imports it.

This module itself imports only the standard library, so ``t2igan --help``, ``--version`` and a
mistyped command are answered at once, before the ~10 s import of PyTorch and Lightning.
"""

from __future__ import annotations

import sys

from t2igan.command import command_of, debug_requested, interrupted


def main(argv: list[str] | None = None) -> None:
    """The ``t2igan`` console script (and ``python -m t2igan.cli``): what
    :func:`~t2igan.command.command_of` answers without PyTorch, the rest by
    :func:`t2igan.cli.commands.main`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = command_of([a for a in argv if a != "--debug"])
    try:  # Ctrl-C while PyTorch loads: the same line as during the command
        from t2igan.cli.commands import main as run
    except KeyboardInterrupt:
        if debug_requested(argv):
            raise
        interrupted(command)
    run(argv)
