"""The scores of ``t2igan evaluate`` during ``fit`` (every N epochs, on fewer samples) and in
``t2igan test``."""

from __future__ import annotations

from dataclasses import replace

import lightning as L

from t2igan.command import warn


class ImageMetrics(L.Callback):
    """Computes the metrics of :mod:`t2igan.metrics.scoring` (same code, same protocol but for the
    number of samples) and logs them as ``<stage>/<metric>`` (and ``<stage>/<metric>_std``):
    at the end of every ``every_n_epochs``-th validation on the validation split, and at the
    end of ``t2igan test`` on the test split. On synthetic birds FID and KID are computed in
    the bird classifier's feature space (trained and cached on first use, under a minute or
    two on a CPU) and ``caption_acc_classifier`` and the readers' agreement are logged beside
    ``caption_acc``. A metric whose weights are missing is skipped with a warning at the
    start (the run goes on; ``t2igan evaluate`` makes it an error).

    Args:
        every_n_epochs: validations between scorings during fit.
        num_samples: generated images per scoring (the protocol's 30,000 take long: see
            docs/evaluation.md; these scores are for following a run, not for tables).
        metrics: names of :data:`t2igan.metrics.scoring.METRICS`.
        inception_weights: Inception-v3 file for is, fid and kid on real datasets.
        clip_model: CLIP model folder for clip_score.
        is_inception: StackGAN's fine-tuned Inception (converted) for is on birds and flowers.
        batch_size: images per sampling batch.
    """

    def __init__(
        self,
        every_n_epochs: int = 5,
        num_samples: int = 1024,
        metrics: tuple[str, ...] = ("fid", "kid", "caption_acc"),
        inception_weights: str | None = None,
        clip_model: str | None = None,
        is_inception: str | None = None,
        batch_size: int = 64,
    ) -> None:
        from t2igan.metrics.scoring import METRICS

        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"ImageMetrics: unknown metric {unknown[0]!r}; choose from "
                             f"{', '.join(METRICS)}")  # fmt: skip
        if every_n_epochs < 1 or num_samples < 1:
            raise ValueError("ImageMetrics: every_n_epochs and num_samples must be at least 1")
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.metrics = tuple(metrics)
        self.inception_weights = inception_weights
        self.clip_model = clip_model
        self.is_inception = is_inception
        self.batch_size = batch_size
        self.warned = False

    def _score(self, trainer, pl_module, split: str) -> None:
        from t2igan.metrics.evaluation import PROTOCOLS
        from t2igan.metrics.scoring import Scorer, score_model

        dm = trainer.datamodule
        protocol = replace(PROTOCOLS[dm.dataset], num_samples=self.num_samples, split=split)
        classifier = None
        if dm.dataset == "synthetic":
            from t2igan.metrics.bird_classifier import load_or_train

            classifier, _ = load_or_train(dm.root, dm.reader.seed)
        scorer = Scorer(self.metrics, protocol, self.inception_weights, self.clip_model,
                        bird_classifier=classifier, is_inception=self.is_inception)  # fmt: skip
        if scorer.skipped and not self.warned:
            for name, why in scorer.skipped.items():
                warn(trainer.state.fn or "fit", f"ImageMetrics skips {name}: {why}")
            self.warned = True
        scores = score_model(pl_module, dm.dataset_of(split), scorer, self.num_samples,
                             self.batch_size, protocol.seed)  # fmt: skip
        stage = "val" if split == "val" else "test"
        logs = {}
        for name, s in scores.items():
            if "mean" in s:
                logs[f"{stage}/{name}"] = s["mean"]
                if s.get("std") is not None:
                    logs[f"{stage}/{name}_std"] = s["std"]
            else:  # the readers' agreement
                logs.update({f"{stage}/{name}/{k}": v for k, v in s.items()})
        pl_module.log_dict(logs, sync_dist=False)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._score(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._score(trainer, pl_module, "test")
