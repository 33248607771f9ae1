"""Save the complete run configuration (what ``t2igan fit --print_config`` shows): in the run
folder and in the fit's log folder, and to W&B."""

from __future__ import annotations

from pathlib import Path

import yaml
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger


class SaveRunConfig(SaveConfigCallback):
    """LightningCLI's config saving (``config.yaml`` in the fit's ``logs/version_N/``, so every
    fit keeps its own), plus ``<run>/config.yaml`` (the configuration of the latest fit) and the
    full run configuration (trainer, model, data, callbacks, seed) sent to every W&B logger
    under the key ``run``. Lightning already sends the model's and the data module's
    hyper-parameters; this adds the rest, so a run in the dashboard can be repeated from its
    config alone. The ``t2igan`` command line uses it for every run: any W&B logger gets the
    config, no flag needed. Lightning calls :meth:`save_config` on rank 0 only.
    """

    def save_config(self, trainer, pl_module, stage: str) -> None:
        run = Path(trainer.default_root_dir)
        run.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, run / self.config_filename, skip_none=False,
                         overwrite=True, multifile=False)  # fmt: skip
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers:
            return
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in loggers:
            logger.experiment.config.update({"run": config}, allow_val_change=True)
