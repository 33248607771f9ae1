"""``python -m t2igan.cli ARGS`` (as torchrun runs it): the ``t2igan`` command."""

from t2igan.cli import main

main()
