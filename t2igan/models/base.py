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
(:meth:`TextToImageModel.evaluation_step` says what a model scores). In training it warns once
when a loss or a weight explodes (:data:`DIVERGING_LOSS`, :data:`DIVERGING_WEIGHT_RMS`: the run
goes on; a NaN or infinite loss stops it, :func:`require_finite`), and a resumed fit trains
with the learning rates of its own arguments, not those its checkpoint's optimisers were saved
with.

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
numbers (:meth:`setup`) and checkpoints keep every rank's RNG state. A subclass that overrides
``setup``, ``on_fit_start``, ``on_save_checkpoint``, ``on_load_checkpoint`` or
``on_train_batch_end`` calls the base's.
"""

from __future__ import annotations

import math
import os
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

from t2igan.data.contract import CUB_PARTS
from t2igan.data.mpii import MPII_PARTS
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


def load_checkpoint_file(path: str | Path, what: str, how_to_get: str) -> dict:
    """The checkpoint file ``path``, loaded on the CPU with ``weights_only=True`` (tensors and
    plain data only: no code runs from the file), or a one-line error that names the file and
    what is wrong with it: a folder, missing (then also ``how_to_get`` it), not torch.save's
    format (a text file, a cut-short copy), holding pickled objects, damaged. ``what`` names
    the argument (``--ckpt_path``)."""
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
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # never advice to load it with weights_only=False
        raise ValueError(
            f"{what} {path} holds pickled Python objects, not only tensors and plain data, so "
            "it is not loaded (loading it could run code): pass a checkpoint that t2igan wrote"
        ) from err
    except (RuntimeError, EOFError) as err:  # a damaged or truncated archive
        raise ValueError(
            f"{what} {path} cannot be read ({str(err).splitlines()[0]}); is it complete?"
        ) from err


def read_checkpoint(path: str | Path, what: str, how_to_get: str) -> tuple[dict, str]:
    """``(checkpoint, class_path)`` of a t2igan checkpoint whose weights are all finite, loaded
    by :func:`load_checkpoint_file` (whose errors name the file; a missing one also says
    ``how_to_get`` it). ``what`` names the argument."""
    ckpt = load_checkpoint_file(path, what, how_to_get)
    meta = ckpt.get("t2igan") if isinstance(ckpt, dict) else None
    if meta is None:
        raise ValueError(f"{path} is not a t2igan checkpoint (no 't2igan' entry)")
    bad = [k for k, v in ckpt.get("state_dict", {}).items()
           if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]  # fmt: skip
    if bad:  # it would draw black images: the run it comes from diverged
        raise ValueError(f"{what} {path} holds {len(bad)} non-finite weights (e.g. {bad[0]}): "
                         "its run diverged; pass an earlier checkpoint of it")  # fmt: skip
    return ckpt, meta["class_path"]


#: The part names of K keypoints, by K: CUB's 15 and MPII's 17 (GAWWN's MHP form), in the data
#: readers' orders. Checkpoints record K, not the names, so a keypoint model names its parts here.
PART_NAMES = {len(CUB_PARTS): CUB_PARTS, len(MPII_PARTS): MPII_PARTS}


def part_names(num_parts: int) -> tuple[str, ...]:
    """The names of ``num_parts`` keypoints (:data:`PART_NAMES`)."""
    if num_parts not in PART_NAMES:
        raise ValueError(f"no part names for {num_parts} keypoints: t2igan knows CUB's 15 and "
                         "MPII's 17")  # fmt: skip
    return PART_NAMES[num_parts]


class NonFiniteLossError(RuntimeError):
    """A training loss is NaN or infinite: the run stops before the optimiser applies it."""


#: A training loss larger than this (in absolute value) is taken as a sign that the run is
#: diverging, and warned of once (training goes on): the GANs' losses are of order 1 and
#: alignDRAW's bound a few thousand nats per image, while a learning rate of 1e3 takes the
#: quickstart's losses to 1e7-1e8 in its first batch.
DIVERGING_LOSS = 1e6
#: A trained parameter tensor whose root mean square exceeds this is taken as exploding, and
#: warned of once: healthy weights stay near 1 or below (convolutions about 0.02-0.5,
#: BatchNorm scales about 1), while a learning rate of 1e3 takes them past 1e3 in one batch.
DIVERGING_WEIGHT_RMS = 100.0
#: The weights are checked every this many training batches, from each epoch's first: one
#: reduction over the parameters and one host-device synchronisation.
WEIGHT_CHECK_EVERY = 100


def written_checkpoint(callback) -> str:
    """The checkpoint file a ``ModelCheckpoint`` wrote last (``last_model_path``) if it is on
    disk, else an empty string: the callback names the file before it writes it, so a refused
    or failed first write leaves the name of a file that does not exist."""
    from lightning.fabric.utilities.cloud_io import get_filesystem

    last = getattr(callback, "last_model_path", "") or ""
    return last if last and get_filesystem(last).exists(last) else ""


def warn_diverging(module: L.LightningModule, what: str, batch_idx: int) -> None:
    """Warn, once per fit, that ``what`` (a loss or a weight and its value) says the run is
    diverging, with where and the learning rate to lower."""
    if getattr(module, "_warned_diverging", False):
        return
    module._warned_diverging = True
    trainer = module._trainer
    lrs = sorted({float(g["lr"]) for opt in (trainer.optimizers if trainer else [])
                  for g in opt.param_groups})  # fmt: skip
    now = f" (now {', '.join(f'{lr:g}' for lr in lrs)})" if lrs else ""
    rank_zero_warn(
        f"{what} at epoch {module.current_epoch}, batch {batch_idx}: the run is diverging; "
        f"lower the learning rate{now}, e.g. --model.init_args.lr. Training goes on (warned "
        "once per fit)."
    )


def require_finite(module: L.LightningModule, name: str, loss: torch.Tensor, batch_idx: int):
    """Stop training with a :class:`NonFiniteLossError` naming the loss, the epoch and the batch
    when ``loss`` is not finite (a diverged run would otherwise train on to the end and save
    NaN weights), and warn once (:func:`warn_diverging`) when it is larger than
    :data:`DIVERGING_LOSS`. Costs one host-device synchronisation per call on a GPU."""
    value = float(loss.detach().abs().max())
    if math.isfinite(value):
        if value > DIVERGING_LOSS:
            warn_diverging(module, f"{name} is {value:.3g}, above {DIVERGING_LOSS:g},", batch_idx)
        return
    trainer = module._trainer
    last = written_checkpoint(trainer.checkpoint_callback if trainer else None)
    if last:
        kept = (f"the last checkpoint, {last}, is finite. Lower the learning rate and resume from "
                "it with --ckpt_path")  # fmt: skip
    else:
        kept = "no checkpoint was written. Lower the learning rate"
    raise NonFiniteLossError(
        f"{name} is {value} at epoch {module.current_epoch}, batch {batch_idx} (global step "
        f"{module.global_step}): training stopped; {kept}."
    )


def exploding_weight(module: nn.Module) -> tuple[str, float] | None:
    """The trained parameter with the largest root mean square and that value, when it is above
    :data:`DIVERGING_WEIGHT_RMS`; else None."""
    params = [(n, p) for n, p in module.named_parameters()
              if p.requires_grad and p.is_floating_point() and p.numel()]  # fmt: skip
    if not params:
        return None
    rms = torch.stack([torch.linalg.vector_norm(p.detach().float()) / p.numel() ** 0.5
                       for _, p in params])  # fmt: skip
    top, i = (float(v) for v in torch.max(rms, 0))  # one synchronisation
    return (params[int(i)][0], top) if top > DIVERGING_WEIGHT_RMS else None


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
        self._fit_lrs: list[list[float]] | None = None  # what this fit configured (on_fit_start)
        self._resumed: dict | None = None  # a checkpoint whose optimiser states are to load
        self._warned_diverging = False

    # ------------------------------------------------------- sampling interface
    def prepare_captions(self, captions: list[str]) -> tuple[dict[str, torch.Tensor], list[int]]:
        """What this model takes from the captions themselves beyond their embeddings, as
        :meth:`sample` keywords, and the indices of the captions it had to cut: nothing here; a
        model that reads word ids (alignDRAW) returns its ``tokens``. Consumers call it for
        every model instead of asking which one reads words."""
        return {}, []

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
        self._fit_lrs, self._resumed = None, None
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
        if self._fit_lrs is not None:  # the rates a resume compares its own with
            checkpoint["t2igan"]["fit_lrs"] = self._fit_lrs

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self._trainer is not None and self.trainer.state.fn == "fit":
            # its optimiser states load after on_fit_start (most strategies) or before it
            self._resumed = checkpoint
            if self._fit_lrs is not None:
                self._take_new_lrs()
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

    # ------------------------------------------------------- learning rates, divergence
    def on_fit_start(self) -> None:
        # Lightning has just built the optimisers from this run's arguments; a resumed fit
        # loads the checkpoint's states into them next, learning rates included. A schedule
        # keeps the rate it was built with as "initial_lr" ("lr" is already its epoch 0 rate).
        self._fit_lrs = [[float(g.get("initial_lr", g["lr"])) for g in opt.param_groups]
                         for opt in self.trainer.optimizers]  # fmt: skip
        self._warned_diverging = False
        if self._resumed is not None:
            self._take_new_lrs()

    def _take_new_lrs(self) -> None:
        """A resumed fit trains with its own learning rates (``--model.init_args.lr``), not
        those its checkpoint's optimiser states were saved with: where they differ, the states
        about to load are changed to this run's rates, each scaled by the decay its schedule (or
        the model's own rule) had reached (``lr * new / old``, the schedule's base rates alike),
        with a warning naming the old and new rates."""
        ckpt, self._resumed = self._resumed, None
        saved = ckpt.get("optimizer_states") or []
        if len(saved) != len(self._fit_lrs):
            return  # Lightning refuses the checkpoint itself
        recorded = ckpt.get("t2igan", {}).get("fit_lrs")
        opts = self.trainer.optimizers
        schedules = []  # (the optimiser it schedules, its state about to load)
        for config, state in zip(self.trainer.lr_scheduler_configs, ckpt.get("lr_schedulers", [])):
            k = next((k for k, o in enumerate(opts) if o is config.scheduler.optimizer), None)
            schedules.append((k, state))
        changed = []
        for k, (opt_state, new_lrs) in enumerate(zip(saved, self._fit_lrs)):
            groups = opt_state.get("param_groups", [])
            if len(groups) != len(new_lrs):
                continue
            for g, (group, new) in enumerate(zip(groups, new_lrs)):
                # what the saved run configured: recorded, or where a schedule keeps it
                try:
                    old = recorded[k][g]
                except (TypeError, IndexError):  # an older checkpoint, without the record
                    old = group.get("initial_lr")
                if not old or math.isclose(old, new, rel_tol=1e-6):
                    continue
                scale = new / old
                group["lr"] = float(group["lr"]) * scale
                if "initial_lr" in group:
                    group["initial_lr"] = new
                for sched_state in (st for j, st in schedules if j == k):
                    for key in ("base_lrs", "_last_lr"):
                        if g < len(sched_state.get(key) or []):
                            sched_state[key][g] = float(sched_state[key][g]) * scale
                changed.append(f"{self._optimiser_name(opts[k], k)} {old:g} -> {new:g}")
        if changed:
            rank_zero_warn(
                f"{self.trainer.ckpt_path or 'the checkpoint'} was trained at other learning "
                f"rates than this run's: {', '.join(changed)}. The resumed optimisers take this "
                "run's (scaled by any decay reached so far)."
            )

    def _optimiser_name(self, opt: torch.optim.Optimizer, k: int) -> str:
        """What optimiser ``k`` trains: the longest module path all its parameters share."""
        names = {id(p): n.split(".") for n, p in self.named_parameters()}
        paths = [names.get(id(p), []) for g in opt.param_groups for p in g["params"]]
        shared = os.path.commonprefix(paths) if paths else []
        return ".".join(shared) if shared else f"optimiser {k}"

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if batch_idx % WEIGHT_CHECK_EVERY == 0 and not self._warned_diverging:
            found = exploding_weight(self)
            if found:
                warn_diverging(self, f"the weights {found[0]} have a root mean square of "
                               f"{found[1]:.3g}, above {DIVERGING_WEIGHT_RMS:g},", batch_idx)  # fmt: skip


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
