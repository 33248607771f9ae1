"""Logs ``val/caption_acc`` and ``test/caption_acc`` on synthetic birds."""

from __future__ import annotations

import lightning as L

from t2igan.metrics.caption_consistency import CaptionAccuracy, read_birds


class CaptionConsistency(L.Callback):
    """For every validation / test batch, generate one image per conditioning text and check
    with the bird reader (:mod:`t2igan.metrics.caption_consistency`) that it shows
    the attributes the captions name. Logs ``<stage>/caption_acc`` (body, head and wing colour
    together) and ``<stage>/caption_acc/<attribute>``; NaN when any generated image is not
    finite. Batches without attributes (real datasets) are skipped.
    """

    def __init__(self) -> None:
        self.metrics = {"val": CaptionAccuracy(), "test": CaptionAccuracy()}

    def _update(self, stage: str, pl_module, batch: dict) -> None:
        if "attributes" not in batch:
            return
        metric = self.metrics[stage].to(pl_module.device)
        fake = pl_module.sample(batch["text_emb"], **pl_module.conditioning_of(batch))
        metric.update(read_birds(fake), batch["attributes"], batch["attributes_named"], fake)

    def _log(self, stage: str, pl_module) -> None:
        metric = self.metrics[stage]
        if metric.count.sum() == 0:
            return
        scores = metric.compute()
        pl_module.log(f"{stage}/caption_acc", scores.pop("caption_acc"), prog_bar=True)
        for name, value in scores.items():
            pl_module.log(f"{stage}/caption_acc/{name}", value)
        metric.reset()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        self._update("val", pl_module, batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._log("val", pl_module)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        self._update("test", pl_module, batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._log("test", pl_module)
