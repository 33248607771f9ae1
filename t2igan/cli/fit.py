"""``t2igan fit``, ``validate``, ``test`` and ``predict``: LightningCLI with the data module's
sizes and text encoder linked to the model, every output under the run directory, atomic
checkpoints, checked ``--ckpt_path``, and usage errors led by one line.

t2igan fit --config experiments/quickstart.yaml
t2igan fit --config experiments/quickstart.yaml --ckpt_path last      # resume exactly
"""

from __future__ import annotations

import inspect
import os
import re
import sys

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from t2igan.callbacks.checkpoint import (
    check_ckpt_path,
    checkpoint_dir,
    resume_path,
    use_atomic_checkpoints,
)
from t2igan.callbacks.run_config import SaveRunConfig
from t2igan.classpath import imported_class
from t2igan.command import (
    closest,
)
from t2igan.data import T2IDataModule
from t2igan.models.base import TextToImageModel
from t2igan.run import follow_run_dir


class T2IGANCLI(LightningCLI):
    """LightningCLI with the data module's text size, image size and text encoder linked to the
    model, so a config states them once. Every output follows the run directory
    (``--trainer.default_root_dir``): loggers without a ``save_dir`` write under it, all loggers
    of one fit share one ``logs/version_N``, checkpoints are written atomically, and
    ``--ckpt_path last`` resumes ``<run>/checkpoints/last.ckpt`` or stops with a clear error."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.image_size", "model.init_args.image_size")
        parser.link_arguments("data.text_dim", "model.init_args.text_dim", apply_on="instantiate")
        parser.link_arguments(
            "data.text_encoder_spec", "model.init_args.text_encoder", apply_on="instantiate"
        )

    def parse_arguments(self, parser, args) -> None:
        if isinstance(args, (dict, Namespace)):
            return super().parse_arguments(parser, args)
        # Loggers may leave out save_dir (it is the run directory): filled in before validation.
        self.config = parser.parse_args(args, _skip_validation=True)
        if self.config.get("subcommand") is not None:
            follow_run_dir(self.config[self.config.subcommand].trainer)
        try:
            parser.validate(self.config)
        except (TypeError, KeyError, ValueError) as err:  # as jsonargparse's own parse_args
            parser.error(str(err), err)

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoints(trainer)
        return trainer

    def _parse_ckpt_path(self) -> None:
        """LightningCLI reads an explicit ``--ckpt_path``'s hyper-parameters here, before
        ``before_fit``. The file is checked first: one line for a file that is not a checkpoint,
        and its class paths are refused before jsonargparse would import them unless they are
        t2igan's. ``fit`` then builds the model from its config and command line, as
        ``--ckpt_path last`` does, so a resumed run takes changed arguments (a new learning rate
        applies to the restored optimisers); validate, test and predict take the checkpoint's."""
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path is None or path == "last":  # `last` is resolved in before_fit
            return
        check_ckpt_path(path)  # its classes too, before jsonargparse would import them
        if subcommand != "fit":
            super()._parse_ckpt_path()

    def _check_ckpt_path(self) -> None:
        config = self.config_init[self.subcommand]
        config["ckpt_path"] = resume_path(checkpoint_dir(self.trainer), config.get("ckpt_path"))

    before_fit = before_validate = before_test = before_predict = _check_ckpt_path


def cli(args: list[str] | None = None) -> T2IGANCLI:
    return T2IGANCLI(
        TextToImageModel,
        T2IDataModule,
        subclass_mode_model=True,
        # GANs own two optimisers: a --optimizer would silently replace them, so there is none.
        auto_configure_optimizers=False,
        save_config_callback=SaveRunConfig,  # also sends the whole config to W&B loggers
        save_config_kwargs={"overwrite": True},
        parser_class=T2IGANArgumentParser,  # leads usage errors with the option at fault
        args=args,
    )


class T2IGANArgumentParser(LightningArgumentParser):
    """jsonargparse's usage errors led by one line that names the option at fault (and the
    closest valid one), in place of the usage block of every option; its message follows."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("prog", "t2igan")  # not the script's name (cli.py under python -m)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error or os.environ.get("JSONARGPARSE_DEBUG"):
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"{prog}: {lead_line(parser, message)}\n")
        sys.stderr.write(f"error: {message}\n(see {prog} --help)\n")
        self.exit(2)


def lead_line(parser: LightningArgumentParser, message: str) -> str:
    """The one useful line of a jsonargparse error ``message``: an unknown option and the
    closest valid one, or the key whose value is invalid."""
    options = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    if m := re.search(r"unrecognized arguments: (--\S+)", message):
        return f"unknown option {m[1]}{closest(m[1].split('=')[0], options)}"
    if m := re.search(r"does not accept option '(\S+)'", message):
        return f"unknown option --{m[1]}{closest('--' + m[1], options)}"
    key = re.search(r'Parser key "([^"]+)"', message)
    m = re.search(r"class_path '([\w.]+)':\s*Option '(\w+)' is not accepted", message)
    if key and m:  # jsonargparse imported the class already: looked up, never imported here
        cls = imported_class(m[1])
        near = closest(m[2], inspect.signature(cls).parameters) if cls is not None else ""
        return (f"unknown option --{key[1]}.init_args.{m[2]}: {m[1].rpartition('.')[2]} takes "
                f"no argument '{m[2]}'{near}")  # fmt: skip
    given = re.search(r"Given value: (.*)", message)
    if key and given:
        return f"invalid value for --{key[1]}: {given[1]}"
    return message.strip().splitlines()[0]
