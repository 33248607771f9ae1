"""Send the complete run configuration (what ``t2igan fit --print_config`` shows) to W&B."""

from __future__ import annotations

import lightning as L
import yaml
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger


class LogRunConfig(L.Callback):
    """Log the full run configuration (trainer, model, data, callbacks, seed), as parsed by
    the ``t2igan`` command line, to every W&B logger under the key ``run``. Lightning already
    sends the model's and the data module's hyper-parameters; this adds the rest, so a run in
    the dashboard can be repeated from its config alone.

    It reads the configuration that LightningCLI hands to its config-saving callback; outside
    the command line (a plain ``Trainer``) there is none and it does nothing. Rank 0 only.
    """

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        saver = next((c for c in trainer.callbacks if isinstance(c, SaveConfigCallback)), None)
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if saver is None or not loggers:
            return
        config = yaml.safe_load(saver.parser.dump(saver.config, skip_none=False))
        for logger in loggers:
            logger.experiment.config.update({"run": config}, allow_val_change=True)
