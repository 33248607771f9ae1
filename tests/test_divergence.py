"""A diverging run says so: losses or weights that explode are warned of once (naming the loss or
the parameter, its value, the epoch and batch, and the learning rate to lower) while training
goes on; a run that diverges before its first checkpoint says none was written. A resumed fit
trains with the learning rate it is given, not the one its checkpoint's optimisers were saved
with."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch

from t2igan.callbacks import RunCheckpoint
from t2igan.callbacks.checkpoint import NonFiniteStateError
from t2igan.models import GANINTCLS
from t2igan.models.base import (
    DIVERGING_LOSS,
    DIVERGING_WEIGHT_RMS,
    NonFiniteLossError,
    TextToImageModel,
)

from .conftest import tiny_datamodule

DIVERGING = "the run is diverging"


def _trainer(tmp_path, batches: int = 3, epochs: int = 1, callbacks=(), **kwargs) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, limit_train_batches=batches, limit_val_batches=0,
                     logger=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=tmp_path, callbacks=list(callbacks), **kwargs)  # fmt: skip


def _fit(trainer: L.Trainer, model, dm, **kwargs) -> list[str]:
    """The warnings ``trainer.fit`` gave that say the run is diverging."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, datamodule=dm, **kwargs)
    return [str(w.message) for w in caught if DIVERGING in str(w.message)]


def _gan(lr: float = 2e-4, **kwargs) -> GANINTCLS:
    L.seed_everything(0)
    return GANINTCLS(text_dim=64, image_size=32, ngf=8, ndf=8, lr=lr, **kwargs)


def test_a_huge_learning_rate_is_warned_of_once_and_the_run_goes_on(data_root, tmp_path):
    """lr 1e3: the weights pass 1e3 in the first step and the losses reach 1e7-1e8 (finite,
    so nothing stopped the run and nothing was said)."""
    trainer = _trainer(tmp_path, batches=3)
    (message,) = _fit(trainer, _gan(lr=1e3), tiny_datamodule(data_root))
    assert trainer.global_step == 2 * 3  # not stopped: a warning, not an error
    assert message.endswith(" at epoch 0, batch 0: the run is diverging; lower the learning "
                            "rate (now 1000), e.g. --model.init_args.lr. Training goes on (warned "
                            "once per fit).")  # fmt: skip
    loss = message.startswith(("train/d_loss is ", "train/g_loss is "))
    weight = message.startswith("the weights ") and "have a root mean square of " in message
    assert loss or weight, message
    value = float(message.split(" is " if loss else " of ")[1].split(",")[0])
    assert value > (DIVERGING_LOSS if loss else DIVERGING_WEIGHT_RMS)


def test_a_healthy_run_is_not_warned_of(data_root, tmp_path):
    assert _fit(_trainer(tmp_path, batches=4), _gan(), tiny_datamodule(data_root)) == []


def test_exploding_weights_name_the_parameter(data_root, tmp_path):
    class Blow(L.Callback):  # after batch 0's step, before the model's check of it
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            with torch.no_grad():
                pl_module.generator.project[0].weight.mul_(1e6)

    model = _gan()
    (message,) = _fit(_trainer(tmp_path, batches=1, callbacks=[Blow()]), model,
                      tiny_datamodule(data_root))  # fmt: skip
    weight = model.generator.project[0].weight
    rms = weight.norm() / weight.numel() ** 0.5
    assert message.startswith(f"the weights generator.project.0.weight have a root mean square "
                              f"of {float(rms):.3g}, above 100, at epoch 0, batch 0: the run is "
                              "diverging; lower the learning rate (now 0.0002)")  # fmt: skip


class PoisonAtEpochEnd(L.Callback):
    """Makes a weight of G NaN at the end of epoch ``epoch`` (a state no checkpoint may keep)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                next(pl_module.generator.parameters()).fill_(float("nan"))


def test_a_run_that_diverges_in_epoch_0_says_no_checkpoint_was_written(data_root, tmp_path):
    trainer = _trainer(tmp_path, batches=2, epochs=2, callbacks=[PoisonAtEpochEnd(0),
                                                                  RunCheckpoint()])  # fmt: skip
    with pytest.raises(NonFiniteStateError) as err:
        trainer.fit(_gan(), datamodule=tiny_datamodule(data_root))
    assert str(err.value) == (
        f"1 weights are not finite at epoch 0 (e.g. generator.project.0.weight); not saving "
        f"{tmp_path}/checkpoints/last.ckpt. No checkpoint was written before it: lower the "
        "learning rate."
    )
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()
    # in a later epoch, the finite file of the epoch before is named
    trainer = _trainer(tmp_path / "b", batches=2, epochs=3, callbacks=[PoisonAtEpochEnd(1),
                                                                        RunCheckpoint()])  # fmt: skip
    with pytest.raises(NonFiniteStateError, match=r"not saving .*b/checkpoints/last.ckpt\. The "
                       r"last finite checkpoint is .*b/checkpoints/last.ckpt: resume from it"):  # fmt: skip
        trainer.fit(_gan(), datamodule=tiny_datamodule(data_root))


def test_a_nan_loss_names_no_checkpoint_that_is_not_on_disk(data_root, tmp_path):
    """The checkpoint callback may name a file it never wrote (it names last.ckpt before it
    writes it): the error then says that none was written, not that it is finite."""

    class NamedNotWritten(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            trainer.checkpoint_callback.last_model_path = str(tmp_path / "never.ckpt")
            if batch_idx == 1:
                batch["images"].fill_(float("nan"))

    trainer = _trainer(tmp_path, batches=3, callbacks=[NamedNotWritten(), RunCheckpoint()])
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit(_gan(), datamodule=tiny_datamodule(data_root))
    assert str(err.value) == (
        "train/d_loss is nan at epoch 0, batch 1 (global step 2): training stopped; no "
        "checkpoint was written. Lower the learning rate."
    )


# --------------------------------------------------------------- resume with a new lr
class LearningRates(L.Callback):
    """Records, when training starts (after a resume restored the optimisers), each optimiser's
    rate, the rate its schedule started from and the schedule's base rate."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.lr = [g["lr"] for opt in trainer.optimizers for g in opt.param_groups]
        self.initial = [g.get("initial_lr") for opt in trainer.optimizers for g in opt.param_groups]
        self.base = [b for c in trainer.lr_scheduler_configs for b in c.scheduler.base_lrs]


def _resume(tmp_path, dm, model, epochs: int) -> tuple[LearningRates, list[str]]:
    seen = LearningRates()
    trainer = _trainer(tmp_path, batches=2, epochs=epochs, callbacks=[RunCheckpoint(), seen])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, datamodule=dm, ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    return seen, [str(w.message) for w in caught if "learning rates" in str(w.message)]


def test_a_resumed_fit_trains_with_its_new_learning_rate(data_root, tmp_path):
    """GAN-INT-CLS halves its rate at the start of every epoch here (lr_decay_every 1, counted
    from 1): at epoch 1 it trains at lr / 4. Resumed there with lr 1e-3 (was 2e-4), it trains
    at 1e-3 / 4, and its schedule goes on from 1e-3."""
    dm = tiny_datamodule(data_root)
    _trainer(tmp_path, batches=2, callbacks=[RunCheckpoint()]).fit(
        _gan(lr=2e-4, lr_decay_every=1), datamodule=dm
    )
    seen, said = _resume(tmp_path, dm, _gan(lr=1e-3, lr_decay_every=1), epochs=2)
    assert seen.lr == pytest.approx([1e-3 / 4] * 2)
    assert seen.initial == pytest.approx([1e-3] * 2) and seen.base == pytest.approx([1e-3] * 2)
    assert said == [
        f"{tmp_path}/checkpoints/last.ckpt was trained at other learning rates than this run's: "
        "discriminator 0.0002 -> 0.001, generator 0.0002 -> 0.001. The resumed optimisers take "
        "this run's (scaled by any decay reached so far)."
    ]
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["lr"] == 1e-3  # what the record says is what trained
    assert [o["param_groups"][0]["lr"] for o in ckpt["optimizer_states"]] == pytest.approx(
        [1e-3 / 8] * 2
    )  # and the schedule went on from it: epoch 2 at lr / 8
    # resumed again at the same rate: nothing said, nothing changed
    seen, said = _resume(tmp_path, dm, _gan(lr=1e-3, lr_decay_every=1), epochs=3)
    assert said == [] and seen.lr == pytest.approx([1e-3 / 8] * 2)


class _Decaying(TextToImageModel):
    """A model without a scheduler that lowers its own rate (as alignDRAW and DS-SJE do): x 0.5
    after every batch."""

    def __init__(self, lr: float) -> None:
        super().__init__(text_dim=64, image_size=32, z_dim=4)
        self.lr = lr
        self.net = torch.nn.Linear(64, 4)

    def training_step(self, batch, batch_idx):
        return self.net(batch["text_emb"]).pow(2).mean()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(outputs, batch, batch_idx)
        for group in self.optimizers().param_groups:
            group["lr"] *= 0.5

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def test_a_new_learning_rate_keeps_a_models_own_decay(data_root, tmp_path):
    dm = tiny_datamodule(data_root)
    _trainer(tmp_path, batches=2, callbacks=[RunCheckpoint()]).fit(_Decaying(0.1), datamodule=dm)
    seen, said = _resume(tmp_path, dm, _Decaying(0.4), epochs=2)
    assert seen.lr == pytest.approx([0.4 / 4])  # two halvings, from the new rate
    assert said and "net 0.1 -> 0.4" in said[0]
