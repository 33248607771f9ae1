"""The bases every paper model builds on: :class:`TextToImageModel` for any text-to-image model
(the GANs and the recurrent VAEs of ``t2igan.models.draw``), :class:`TextToImageGAN` for the GAN
engine.

:class:`TextToImageModel` holds what callbacks, ``t2igan generate``, ``test`` and ``predict``
rely on, whatever the model's objective: the public sampling interface ``sample_noise(n)``,
``sample(text_emb, noise, **conditioning)``; the conditioning a model takes, named in
:attr:`TextToImageModel.takes` by the batch contract's keys (``("text",)`` here; GAWWN adds
``"boxes"`` or ``"keypoints"``, alignDRAW ``"tokens"``) and received by that name:
``sample(text, noise, boxes=boxes)``. Calling a model without a conditioning it takes, or with
one it does not, raises a ValueError naming it (:meth:`TextToImageModel.check_conditioning`).
It also records in every checkpoint the model's class (``t2igan generate`` loads any model) and
every rank's random-number state (``--ckpt_path last`` resumes exactly), gives each rank of a
multi-process run its own random streams, and runs the validation, test and predict steps
(:meth:`TextToImageModel.evaluation_step` says what a model scores).

A :class:`TextToImageGAN` owns a generator and a discriminator and trains them with manual
optimisation: per batch, one discriminator step then one generator step, each inside
``toggled_optimizer`` so the other network's parameters take no gradient. Subclasses say *what*
each step computes (:meth:`discriminator_loss`, :meth:`generator_loss`) and how to sample; this
class says *when*. An optional exponential moving average of the generator (a frozen
``AveragedModel``) is used for every sample when enabled. GANs add ``discriminate(images,
text_emb, **conditioning)`` to the interface.

For subclasses: pass the base's arguments on to ``__init__`` (it keeps them; it never reads
``self.hparams``), build the networks from the constructor's arguments, never from
``self.hparams`` (``save_hyperparameters()`` only records them, and a model built inside another
one under LightningCLI records the outer config), and, for a GAN, return ``[D, G]`` optimiser
pairs from :meth:`configure_optimizers` (:meth:`optimiser_pair`); a model that trains in stages
says which pair trains now with :meth:`current_pair`. Under DDP each rank draws its own random
numbers (:meth:`setup`) and checkpoints keep every rank's RNG state.
"""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from t2igan.nn import init_dcgan_weights


def _numpy_state(state: dict | None = None):
    """numpy's global RNG state as tensors and numbers (loadable with ``weights_only=True``),
    or, given such a dict, back in numpy's form."""
    if state is None:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                "has_gauss": int(has_gauss), "cached": float(cached)}  # fmt: skip
    keys = state["keys"].numpy().astype(np.uint32)
    return ("MT19937", keys, state["pos"], state["has_gauss"], state["cached"])


def rng_state() -> dict:
    """This process's random-number states (torch, numpy, python, CUDA), loadable with
    ``weights_only=True``."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(_numpy_state(state["numpy"]))
    random.setstate(state["python"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_rank(rank: int) -> int:
    """Seed torch (CPU and CUDA), numpy and python for process ``rank`` of a multi-process run
    from the run's seed (``torch.initial_seed()``, which ``seed_everything`` set alike on every
    rank) and the rank, so that each rank draws its own noise, crops, flips and captions.
    Returns the seed."""
    seed = int(np.random.SeedSequence([torch.initial_seed(), rank]).generate_state(1)[0])
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    return seed


def _ranks(first: int, last: int) -> str:
    return f"rank {first}" if first == last else f"ranks {first}-{last}"


class EpochDecay(LRScheduler):
    """Learning rate ``lr * factor ** ((epoch + offset) // every)`` in (0-based) ``epoch``,
    stepped once per epoch: ``offset=0`` decays after every ``every`` epochs (StackGAN's code,
    torch's ``StepLR``), ``offset=1`` at the start of epochs ``every``, ``2 every``, ... counted
    from 1 (the icml2016 Lua code). Only ``last_epoch`` and ``base_lrs`` matter in its state,
    so the ``StepLR`` states of older checkpoints load into it."""

    def __init__(self, optimizer, every: int, factor: float, offset: int = 0) -> None:
        if every < 1:
            raise ValueError(f"lr_decay_every must be >= 1 epoch, got {every}")
        self.every, self.factor, self.offset = every, factor, offset
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        decays = (self.last_epoch + self.offset) // self.every
        return [base * self.factor**decays for base in self.base_lrs]

    def load_state_dict(self, state_dict: dict) -> None:
        # The schedule is the model's (its arguments); the checkpoint gives where it stands.
        keep = {"every": self.every, "factor": self.factor, "offset": self.offset}
        super().load_state_dict(state_dict)
        self.__dict__.update(keep)


def read_checkpoint(path: str | Path, what: str, how_to_get: str) -> tuple[dict, str]:
    """``(checkpoint, class_path)`` of a t2igan checkpoint, loaded on the CPU with
    ``weights_only=True`` (tensors and plain data only: no code runs from the file). Errors name
    the file; a missing one also says ``how_to_get`` it. ``what`` names the argument."""
    import pickle
    import zipfile

    if Path(path).is_dir():
        raise ValueError(f"{what} {path} is a folder, not a checkpoint file: {how_to_get}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} {path} does not exist: {how_to_get}")
    # torch.save writes a zip archive; anything else (a text file, an image) would otherwise
    # reach the unpickler and fail with a bare KeyError.
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{what} {path} is not a checkpoint (torch.save's zip format) or is cut short"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{what} {path} holds pickled Python objects, not only tensors and plain data, so "
            "it is not loaded (loading it could run code): pass a checkpoint that t2igan wrote"
        ) from err
    except (RuntimeError, EOFError) as err:  # a damaged or truncated archive
        raise ValueError(
            f"{what} {path} cannot be read ({str(err).splitlines()[0]}); is it complete?"
        ) from err
    meta = ckpt.get("t2igan") if isinstance(ckpt, dict) else None
    if meta is None:
        raise ValueError(f"{path} is not a t2igan checkpoint (no 't2igan' entry)")
    bad = [k for k, v in ckpt.get("state_dict", {}).items()
           if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]  # fmt: skip
    if bad:  # it would draw black images: the run it comes from diverged
        raise ValueError(f"{what} {path} holds {len(bad)} non-finite weights (e.g. {bad[0]}): "
                         "its run diverged; pass an earlier checkpoint of it")  # fmt: skip
    return ckpt, meta["class_path"]


class NonFiniteLossError(RuntimeError):
    """A training loss is NaN or infinite: the run stops before the optimiser applies it."""


def require_finite(module: L.LightningModule, name: str, loss: torch.Tensor, batch_idx: int):
    """Stop training with a :class:`NonFiniteLossError` naming the loss, the epoch and the batch
    when ``loss`` is not finite (a diverged run would otherwise train on to the end and save
    NaN weights). Costs one host-device synchronisation per call on a GPU."""
    if bool(torch.isfinite(loss.detach()).all()):
        return
    trainer = module._trainer
    last = getattr(trainer.checkpoint_callback, "last_model_path", "") if trainer else ""
    kept = f"the last checkpoint, {last}, is finite" if last else "no checkpoint was written yet"
    raise NonFiniteLossError(
        f"{name} is {float(loss)} at epoch {module.current_epoch}, batch {batch_idx} (global "
        f"step {module.global_step}): training stopped; {kept}. Lower the learning rate, or "
        "resume from it with --ckpt_path."
    )


class TextToImageModel(L.LightningModule):
    """Base class of every text-to-image model; see the module docstring. A subclass implements
    :meth:`render` (images for checked inputs, in eval mode) and :meth:`evaluation_step`, and
    trains as it likes (``training_step``, ``configure_optimizers``).

    Args (keyword-only; a subclass passes its own values on):
        text_dim: text embedding size.
        image_size: image side.
        z_dim: length of one sample's noise vector (the sampling interface's).
        text_encoder: how captions were embedded (recorded for ``t2igan generate``).
    """

    #: The conditioning this model takes, by the batch contract's names: always ``"text"``
    #: (``text_emb``, positional), and any of ``"boxes"``, ``"keypoints"``, ``"tokens"``
    #: (keyword arguments of :meth:`sample`, passed on to :meth:`render`).
    takes: tuple[str, ...] = ("text",)
    #: Conditionings that are integer ids (kept as long), not coordinates (made float32).
    integer_conditioning = frozenset({"tokens"})
    #: Whether training needs real images (False: a model that reads fixed image features).
    needs_images = True

    def __init__(
        self, *, text_dim: int, image_size: int, z_dim: int, text_encoder: dict | None = None
    ) -> None:
        super().__init__()
        self.text_dim = text_dim
        self.image_size = image_size
        self.z_dim = z_dim
        self.text_encoder_spec = text_encoder

    # ------------------------------------------------------- sampling interface
    def sample_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` noise vectors z ~ N(0, I), shape (n, z_dim)."""
        return torch.randn(n, self.z_dim, generator=generator).to(self.device)

    def check_conditioning(self, given: dict) -> dict:
        """``given`` (name -> tensor, None for not given) checked against :attr:`takes`: the
        tensors this model takes, on its device (float32, or long for ids); a ValueError names
        a conditioning it needs and was not given, or one it was given and does not take."""
        extra = list(self.takes[1:])
        missing = [k for k in extra if given.get(k) is None]
        name = type(self).__name__
        if missing:
            raise ValueError(
                f"{name} is conditioned on {' and '.join(missing)} as well as text: pass "
                + ", ".join(f"{k}=..." for k in missing)
            )
        unused = [k for k, v in given.items() if v is not None and k not in extra]
        if unused:
            takes = " and ".join(self.takes)
            raise ValueError(f"{name} takes {takes} only, not {' or '.join(unused)}")
        return {k: given[k].to(self.device, torch.long if k in self.integer_conditioning
                               else torch.float32) for k in extra}  # fmt: skip

    def conditioning_of(self, batch: dict) -> dict:
        """The conditioning this model takes beyond text, from a batch (contract keys)."""
        missing = [k for k in self.takes[1:] if k not in batch]
        if missing:
            raise ValueError(
                f"{type(self).__name__} is conditioned on {' and '.join(missing)}, which the "
                "batches lack: use a dataset that has them (cub, synthetic)"
            )
        return {k: batch[k] for k in self.takes[1:]}

    @torch.no_grad()
    def sample(self, text_emb: torch.Tensor, noise: torch.Tensor | None = None,
               **conditioning) -> torch.Tensor:  # fmt: skip
        """Images in [-1, 1] for text embeddings (B, D) and noise (B, z_dim), in eval mode.
        A model that takes more than text gets it by name (:attr:`takes`), e.g. ``boxes=``
        (B, 4), ``keypoints=`` (B, K, 3) or ``tokens=`` (B, L) word ids."""
        cond = self.check_conditioning(conditioning)
        text_emb = text_emb.to(self.device, torch.float32)
        if noise is None:
            noise = self.sample_noise(len(text_emb))
        out = self.render(text_emb, noise.to(self.device, torch.float32), **cond)
        return out.float().clamp(-1, 1)

    def render(self, text_emb: torch.Tensor, noise: torch.Tensor, **conditioning):
        """Images for checked inputs on this model's device (what :meth:`sample` returns, before
        the clamp); a subclass runs its networks in eval mode and restores their mode."""
        raise NotImplementedError

    # --------------------------------------------------------------- evaluation
    def evaluation_step(self, batch: dict, stage: str) -> None:
        """Score one validation or test batch and log under ``stage/`` (``val``, ``test``)."""
        raise NotImplementedError

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.evaluation_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.evaluation_step(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """One sample per conditioning text: ``{"images", "captions", "index"}``."""
        images = self.sample(batch["text_emb"], **self.conditioning_of(batch))
        return {"images": images, "captions": batch["captions"],
                "index": batch["index"]}  # fmt: skip

    # ------------------------------------------------------ multi-process runs
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if self.needs_images and not getattr(dm, "has_images", True):
            if not getattr(dm, "images", True):
                raise ValueError(f"{type(self).__name__} draws images, and --data.images false "
                                 "gives batches without them: leave it out (only the keypoint "
                                 "generator reads no images)")  # fmt: skip
            raise ValueError(f"{type(self).__name__} draws images, and --data.dataset "
                             f"{dm.dataset} has image features only: train it on cub or flowers "
                             f"({dm.dataset} trains the DS-SJE text encoder, CharCNNRNNSJE)")  # fmt: skip
        # Every rank starts from the same seed_everything(); give each its own streams (noise,
        # CA draws, crops, flips, caption picks). Rank 0 keeps the run's seed, so a 1-device run
        # and rank 0 of a multi-device run draw alike. A resume then restores each rank's state.
        if stage == "fit" and self.trainer.world_size > 1 and self.trainer.global_rank > 0:
            seed_rank(self.trainer.global_rank)

    def _all_ranks(self, state: dict) -> list[dict]:
        """``state`` of every rank, in rank order (collective: every rank calls it, as Lightning
        does when it saves a checkpoint)."""
        if self._trainer is None or self.trainer.world_size == 1 or not dist.is_initialized():
            return [state]
        states: list = [None] * dist.get_world_size()
        dist.all_gather_object(states, state)
        return states

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        cls = type(self)
        # The class (so `t2igan generate` can load any model) and the random-number states, so
        # that `--ckpt_path last` continues the same data order and noise as an unbroken run:
        # "rng" is rank 0's (the layout of every t2igan checkpoint), "rng_per_rank" each rank's.
        states = self._all_ranks(rng_state())
        checkpoint["t2igan"] = {
            "class_path": f"{cls.__module__}.{cls.__qualname__}",
            "rng": states[0],
            "rng_per_rank": states,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        meta = checkpoint.get("t2igan", {})
        states = meta.get("rng_per_rank") or ([meta["rng"]] if meta.get("rng") else [])
        if not states or self._trainer is None:  # plain weight loading: leave the RNGs alone
            return
        rank, world = self.trainer.global_rank, self.trainer.world_size
        if len(states) != world:
            both = min(len(states), world)
            kept = ("rank 0 continues where it was" if both == 1
                    else f"{_ranks(0, both - 1)} continue where they were")  # fmt: skip
            fate = (f"{_ranks(len(states), world - 1)} start new streams" if world > len(states)
                    else f"the states of {_ranks(world, len(states) - 1)} are dropped")  # fmt: skip
            rank_zero_warn(
                f"{self.trainer.ckpt_path or 'the checkpoint'} holds the random-number states of "
                f"{len(states)} rank(s) and resumes on {world}: {kept}, {fate}. The run goes on, but not as it would have on "
                f"{len(states)} rank(s)."
            )
        if rank < len(states):
            set_rng_state(states[rank])
        else:  # a rank the checkpoint did not have: rank 0's state, then a stream of its own
            set_rng_state(states[0])
            seed_rank(rank)


class TextToImageGAN(TextToImageModel):
    """Base class; see the module docstring. Subclasses call :meth:`set_networks`.

    Args (keyword-only; a subclass passes its own values on):
        text_dim: text embedding size.
        image_size: image side.
        z_dim: length of one sample's noise vector (the sampling interface's).
        lr: Adam learning rate of G and D.
        beta1: Adam beta1.
        beta2: Adam beta2.
        lr_decay_every: epochs between learning-rate decays.
        lr_decay: learning-rate factor at each decay.
        ema_decay: if set, keep an EMA of G with this decay and sample from it.
        text_encoder: how captions were embedded (recorded for ``t2igan generate``).
    """

    #: 0: the learning rate decays after every ``lr_decay_every`` epochs (StackGAN's code); 1: at
    #: the start of epochs ``lr_decay_every``, ``2 lr_decay_every``, ... counted from 1 (the
    #: icml2016 Lua code). See :class:`EpochDecay`.
    lr_decay_offset = 0

    def __init__(
        self,
        *,
        text_dim: int,
        image_size: int,
        z_dim: int,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        lr_decay_every: int = 100,
        lr_decay: float = 0.5,
        ema_decay: float | None = None,
        text_encoder: dict | None = None,
    ) -> None:
        super().__init__(
            text_dim=text_dim, image_size=image_size, z_dim=z_dim, text_encoder=text_encoder
        )
        self.automatic_optimization = False
        # The engine trains with what it is given, whether or when a subclass calls
        # save_hyperparameters() (which only records the arguments, for checkpoints and the CLI).
        self.lr = lr
        self.betas = (beta1, beta2)
        self.lr_decay_every = lr_decay_every
        self.lr_decay = lr_decay
        self.ema_decay = ema_decay
        self.generator_ema: AveragedModel | None = None
        self.fused_adam = False  # opt-in (t2igan.callbacks.SpeedUps), not a model argument

    # ----------------------------------------------------------------- networks
    def set_networks(
        self, generator: nn.Module, discriminator: nn.Module, init_linear: bool = False
    ):
        """Install G and D with the dcgan.torch initialisation, and the EMA copy of G if asked."""
        init_dcgan_weights(generator, linear=init_linear)
        init_dcgan_weights(discriminator, linear=init_linear)
        self.generator = generator
        self.discriminator = discriminator
        if self.ema_decay:
            self.generator_ema = AveragedModel(
                generator, multi_avg_fn=get_ema_multi_avg_fn(self.ema_decay), use_buffers=True
            )
            self.generator_ema.requires_grad_(False)

    # ------------------------------------------------------- sampling interface
    def generate(self, generator: nn.Module, text_emb: torch.Tensor, noise: torch.Tensor,
                 **conditioning):  # fmt: skip
        """Run ``generator`` (G or its EMA copy) on text and noise (and the checked
        ``conditioning`` a model that takes more than text receives); subclasses may override."""
        return generator(noise, text_emb, **conditioning)

    def sampling_generator(self) -> nn.Module:
        """The generator that :meth:`sample` runs: the EMA copy if there is one, else G."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    def render(self, text_emb: torch.Tensor, noise: torch.Tensor, **conditioning):
        """G's images, in eval mode (running BatchNorm statistics, as the authors' demos), with
        the EMA generator if any."""
        g = self.sampling_generator()
        was_training = g.training
        g.eval()
        try:
            return self.generate(g, text_emb, noise, **conditioning)
        finally:
            g.train(was_training)

    def discriminate(self, images: torch.Tensor, text_emb: torch.Tensor,
                     **conditioning) -> torch.Tensor:  # fmt: skip
        """Discriminator logits (B,) for image-text pairs (and the conditioning of
        :attr:`takes`, by name)."""
        return self.discriminator(images, text_emb, **self.check_conditioning(conditioning))

    # --------------------------------------------------------------- objectives
    def discriminator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """D loss on one batch and a dict of scalars to log."""
        raise NotImplementedError

    def generator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """G loss on one batch and a dict of scalars to log."""
        raise NotImplementedError

    # ----------------------------------------------------------------- training
    def current_pair(self) -> int:
        """Which ``[D, G]`` pair of :meth:`configure_optimizers`' lists (``[D, G, D', G', ...]``,
        schedulers alike) trains now: 0 here; a model that trains in stages picks its stage's.
        The EMA follows pair 0's generator, ``self.generator``, and is updated only while that
        pair trains."""
        return 0

    def _pair(self, items) -> tuple:
        k = 2 * self.current_pair()
        return tuple(items[k : k + 2])

    def update_discriminator(self) -> bool:
        """Whether this batch's D step applies its update (decided before the batch's losses):
        always here; a model may skip it while D is ahead (GAWWN's MHP threshold). D's loss is
        still computed, as the authors' code does."""
        return True

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_d, opt_g = self._pair(self.optimizers())
        update_d = self.update_discriminator()
        with self.toggled_optimizer(opt_d):
            d_loss, d_logs = self.discriminator_loss(batch)
            require_finite(self, "train/d_loss", d_loss, batch_idx)
            opt_d.zero_grad(set_to_none=True)
            if update_d:
                self.manual_backward(d_loss)
                opt_d.step()
        with self.toggled_optimizer(opt_g):
            g_loss, g_logs = self.generator_loss(batch)
            require_finite(self, "train/g_loss", g_loss, batch_idx)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            opt_g.step()
        if self.generator_ema is not None and self.current_pair() == 0:
            self.generator_ema.update_parameters(self.generator)
        bs = len(batch["images"])
        self.log_dict(
            {"train/d_loss": d_loss, "train/g_loss": g_loss}, prog_bar=True, batch_size=bs
        )
        self.log_dict({**d_logs, **g_logs}, batch_size=bs)

    def on_train_epoch_end(self) -> None:
        # Manual optimisation: Lightning does not step schedulers for us. Each pair's schedule
        # counts the epochs that pair trained.
        for sch in self._pair(self.lr_schedulers()):
            sch.step()
        opt_d, opt_g = self._pair(self.optimizers())
        self.log_dict({"train/lr_d": opt_d.param_groups[0]["lr"],
                       "train/lr_g": opt_g.param_groups[0]["lr"]})  # fmt: skip

    def optimiser_pair(
        self, generator: nn.Module, discriminator: nn.Module, lr_decay_every: int
    ) -> tuple[list, list]:
        """``([Adam(D), Adam(G)], their EpochDecay schedules)`` with this model's settings."""
        opts = [torch.optim.Adam(net.parameters(), lr=self.lr, betas=self.betas,
                                 fused=self.fused_adam or None)
                for net in (discriminator, generator)]  # fmt: skip
        return opts, [EpochDecay(opt, lr_decay_every, self.lr_decay, self.lr_decay_offset)
                      for opt in opts]  # fmt: skip

    def configure_optimizers(self):
        return self.optimiser_pair(self.generator, self.discriminator, self.lr_decay_every)

    def on_train_start(self) -> None:
        # A resumed optimiser takes its groups' settings from the checkpoint: the run's own
        # choice of fused Adam (SpeedUps) decides, not the one of the run that saved it.
        for opt in self.trainer.optimizers:
            if isinstance(opt, torch.optim.Adam):
                for group in opt.param_groups:
                    group["fused"] = self.fused_adam or None

    # --------------------------------------------------------------- evaluation
    def evaluation_step(self, batch: dict, stage: str) -> None:
        """D's mean probabilities on real, wrong and fake pairs (``stage/d_real`` etc.)."""
        cond = self.conditioning_of(batch)
        fake = self.sample(batch["text_emb"], **cond)
        scores = {
            "real": self.discriminate(batch["images"], batch["text_emb"], **cond),
            "wrong": self.discriminate(batch["wrong_images"], batch["text_emb"], **cond),
            "fake": self.discriminate(fake, batch["text_emb"], **cond),
        }
        self.log_dict(
            {f"{stage}/d_{k}": torch.sigmoid(v.float()).mean() for k, v in scores.items()},
            batch_size=len(fake),
        )
