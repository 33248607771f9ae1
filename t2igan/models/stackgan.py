"""StackGAN: Zhang et al., "StackGAN: Text to Photo-realistic Image Synthesis with Stacked
Generative Adversarial Networks", ICCV 2017 (arXiv:1612.03242).

Implements Conditioning Augmentation with its KL term (Sec. 3.1, Eq. 3-6), the Stage-I GAN that
draws 64 x 64 images from text and noise (Sec. 3.2, Eq. 3-4) and the Stage-II GAN that refines
them to 256 x 256 with the text again, Stage-I fixed (Sec. 3.3, Eq. 5-6). The networks are in
:mod:`t2igan.models.stackgan_networks`, the losses (:func:`~t2igan.losses.stackgan_d_loss`,
:func:`~t2igan.losses.stackgan_g_loss`) beside :func:`~t2igan.losses.kl_divergence`; this file
holds the LightningModules that train them.

What the defaults are (docs/stackgan.md gives each difference with its source):

* Networks, conditioning augmentation (``Linear`` + ReLU, read as mean and log-variance) and
  losses: the authors' PyTorch code (hanzhanggit/StackGAN-Pytorch ``model.py``, ``trainer.py``,
  architectures.md 3.3-3.4); with ``ngf=128, ndf=64``, condition 128, z 100, 4 residual blocks
  and 1024-d text the parameter counts are the authors'.
* Schedule: the TensorFlow code's birds/flowers configs (hanzhanggit/StackGAN
  ``stageI/cfg/birds.yml``, ``stageII/cfg/birds.yml``): batch 64, Adam 2e-4 / 0.5, 600 + 600
  epochs, the rate halved after every 50 Stage-I epochs and every 100 Stage-II epochs (the paper
  says 100 for both), KL weight 2.0.
* Captions: 4 embeddings per image averaged, drawn *with* replacement (the data module's
  ``num_captions``); the TF code draws the 4 without replacement, the PyTorch code takes one.
* Stage-I during Stage-II runs in eval mode (running BatchNorm statistics, nothing of it changes);
  the TF code updates its BatchNorm statistics, the PyTorch code runs it in training mode.
* The logit convolutions' biases are zeroed at initialisation (``init_dcgan_weights``; the
  authors' ``weights_init`` leaves them at PyTorch's default).
* Text: the data module's encoder (all-MiniLM-L6-v2 by default) where the authors used
  char-CNN-RNN embeddings (1024-d); ``text_dim`` follows the data.

Three LightningModules:

* :class:`StackGANStage1` trains Stage-I.
* :class:`StackGANStage2` trains Stage-II on a frozen Stage-I loaded from a Stage-I checkpoint.
* :class:`StackGAN` trains both in one run: Stage-I for ``stage1_epochs`` epochs, then Stage-II.

Each describes its stages once, as :class:`Stage` records (networks, optimiser pair, noise
split, image side); ``stage`` (a buffer in :class:`StackGAN`) selects the one that trains.

The noise of one sample is all of its randomness: ``z`` and the conditioning-augmentation draws
``eps`` (one per stage), so ``sample(text_emb, noise)`` is deterministic and a fixed noise vector
fixes the whole picture. ``noise = [z, eps_1]`` (Stage-I) or ``[z, eps_1, eps_2]`` (Stage-II and
the one-run model); ``z_dim`` of the sampling interface is that total length.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from t2igan.losses import stackgan_d_loss, stackgan_g_loss
from t2igan.models.base import TextToImageGAN, read_checkpoint
from t2igan.models.stackgan_networks import (
    ConditioningAugmentation,
    Stage1Discriminator,
    Stage1Generator,
    Stage2Discriminator,
    Stage2Generator,
)
from t2igan.nn import init_dcgan_weights

__all__ = [
    "StackGANStage1", "StackGANStage2", "StackGAN", "Stage", "read_stage1_checkpoint",
    # re-exported: they lived here before issue 13
    "ConditioningAugmentation", "Stage1Generator", "Stage1Discriminator", "Stage2Generator",
    "Stage2Discriminator", "stackgan_d_loss", "stackgan_g_loss",
]  # fmt: skip


@contextmanager
def _eval_mode(module: nn.Module):
    """Run ``module`` in eval mode (running BatchNorm statistics), then restore its mode."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


class Stage(NamedTuple):
    """One StackGAN stage as a model trains it."""

    generator: nn.Module  # the G trained in this stage
    discriminator: nn.Module  # its D, conditioned on this G's CA mean
    pair: int  # its [D, G] pair in configure_optimizers' lists (TextToImageGAN.current_pair)
    lr_decay_every: int  # epochs of this stage between learning-rate decays
    noise: list[int]  # sizes of a noise vector's parts: [z, eps_1] or [z, eps_1, eps_2]
    side: int  # image side it draws and D sees (data images are area-resized to it)
    stage1: nn.Module | None = None  # the frozen Stage-I generator under a Stage-II G


class _CAConditioned(TextToImageGAN):
    """What every StackGAN model shares: its :class:`Stage` records, D conditioned on G's CA
    mean, and the losses of :func:`stackgan_d_loss` / :func:`stackgan_g_loss` on the stage that
    trains now. Subclasses set ``self.stages`` (one record, or two selected by ``stage``)."""

    stages: tuple[Stage, ...]

    def current_stage(self) -> Stage:
        """The record of the stage that trains now."""
        return self.stages[int(self.stage) - 1] if len(self.stages) > 1 else self.stages[0]

    def current_pair(self) -> int:
        return self.current_stage().pair

    def draw(self, stage: Stage, generator: nn.Module, text_emb: torch.Tensor,
             noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """``(images, mu, logvar)`` of ``generator`` (the stage's G or its EMA copy) at the
        stage's side; a Stage-II G refines the frozen Stage-I's images, drawn without gradient."""
        z, eps1, *eps2 = noise.split(stage.noise, 1)
        if stage.stage1 is None:
            return generator(z, text_emb, eps1)
        with torch.no_grad():
            low = stage.stage1(z, text_emb, eps1)[0]
        return generator(low, text_emb, eps2[0])

    @staticmethod
    def _resize(stage: Stage, images: torch.Tensor) -> torch.Tensor:
        """Data images at the stage's side (area downsampling in the one-run Stage-I)."""
        if images.shape[-1] == stage.side:
            return images
        return F.interpolate(images, size=stage.side, mode="area")

    def train(self, mode: bool = True):
        super().train(mode)
        frozen = self.current_stage().stage1
        if frozen is not None:  # the frozen Stage-I runs as at test time, whatever Lightning asks
            frozen.eval()
        return self

    # ------------------------------------------------------------------- sampling
    def sampling_generator(self) -> nn.Module:
        stage = self.current_stage()
        # the EMA follows self.generator (pair 0); another stage samples with its own G
        return super().sampling_generator() if stage.pair == 0 else stage.generator

    def generate(self, generator: nn.Module, text_emb: torch.Tensor, noise: torch.Tensor):
        images = self.draw(self.current_stage(), generator, text_emb, noise)[0]
        if images.shape[-1] != self.image_size:
            # the one-run model's Stage-I: upsampled so that every sample of the run has one size
            images = F.interpolate(images, size=self.image_size, mode="nearest")
        return images

    def discriminate(self, images: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """Conditional logits (B,); D is conditioned on the trained G's CA mean of ``text_emb``."""
        stage = self.current_stage()
        mu, _ = stage.generator.ca.encode(text_emb)
        return stage.discriminator(self._resize(stage, images), mu)[0]

    # ------------------------------------------------------------------- objectives
    def discriminator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        stage = self.current_stage()
        text = batch["text_emb"]
        fake, mu, _ = self.draw(stage, stage.generator, text, self.sample_noise(len(text)))
        return stackgan_d_loss(
            stage.discriminator, self._resize(stage, batch["images"]),
            self._resize(stage, batch["wrong_images"]), fake.detach(), mu.detach(),
        )  # fmt: skip

    def generator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        stage = self.current_stage()
        text = batch["text_emb"]
        fake, mu, logvar = self.draw(stage, stage.generator, text, self.sample_noise(len(text)))
        return stackgan_g_loss(stage.discriminator, fake, mu, logvar, self.kl_weight)

    def configure_optimizers(self):
        optimisers, schedulers = [], []
        for stage in sorted(self.stages, key=lambda s: s.pair):
            opts, scheds = self.optimiser_pair(stage.generator, stage.discriminator,
                                               stage.lr_decay_every)  # fmt: skip
            optimisers += opts
            schedulers += scheds
        return optimisers, schedulers


# ----------------------------------------------------------------------------- Stage-I
class StackGANStage1(_CAConditioned):
    """StackGAN Stage-I: 64 x 64 images from text (Zhang et al. 2017, Sec. 3.2).

    Sampling noise: ``[z, eps]`` of size ``z_dim + condition_dim`` (``self.z_dim``).

    Args:
        text_dim: text embedding size (linked from the data module).
        image_size: image side (linked from the data module; the paper's 64).
        z_dim: size of z (N_z = 100).
        condition_dim: size of the CA condition (N_g = 128).
        ngf: generator width, the authors' GF_DIM (128): 4 x 4 features have ``8 * ngf``
            channels.
        ndf: discriminator width, the authors' DF_DIM (64).
        kl_weight: weight of the CA's KL term in G's loss (the authors' code: 2.0).
        ca_activation: after CA's linear layer: ``relu`` (StackGAN-Pytorch, the default) or
            ``leaky_relu`` (StackGAN TF).
        lr: Adam learning rate for G and D.
        beta1: Adam beta1.
        beta2: Adam beta2.
        lr_decay_every: epochs between learning-rate halvings (birds/flowers configs: 50; the
            paper says 100).
        lr_decay: learning-rate factor at each decay.
        ema_decay: if set, keep an EMA of G with this decay and sample from it (not in the paper).
        text_encoder: set by the CLI from the data module: how captions were embedded, so
            ``t2igan generate`` embeds new captions the same way.
    """

    def __init__(
        self,
        text_dim: int = 1024,
        image_size: int = 64,
        z_dim: int = 100,
        condition_dim: int = 128,
        ngf: int = 128,
        ndf: int = 64,
        kl_weight: float = 2.0,
        ca_activation: str = "relu",
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        lr_decay_every: int = 50,
        lr_decay: float = 0.5,
        ema_decay: float | None = None,
        text_encoder: dict | None = None,
    ) -> None:
        super().__init__(
            text_dim=text_dim, image_size=image_size, z_dim=z_dim + condition_dim, lr=lr,
            beta1=beta1, beta2=beta2, lr_decay_every=lr_decay_every, lr_decay=lr_decay,
            ema_decay=ema_decay, text_encoder=text_encoder,
        )  # fmt: skip
        self.save_hyperparameters()
        self.kl_weight = kl_weight
        self.set_networks(
            Stage1Generator(z_dim, text_dim, condition_dim, ngf, image_size, ca_activation),
            Stage1Discriminator(condition_dim, ndf, image_size),
            init_linear=True,  # the authors' weights_init draws Linear weights from N(0, 0.02)
        )
        self.stages = (Stage(self.generator, self.discriminator, 0, lr_decay_every,
                             [z_dim, condition_dim], image_size),)  # fmt: skip


# ----------------------------------------------------------------------------- Stage-II
def read_stage1_checkpoint(path: str | Path) -> tuple[dict, dict, dict | None]:
    """``(generator args, generator state dict, text encoder spec)`` of a
    :class:`StackGANStage1` checkpoint (its EMA generator when it kept one: the one it samples
    with)."""
    how = ("train Stage-I first (t2igan fit --config experiments/stackgan_stage1.yaml) and pass "
           "its checkpoint, e.g. --model.init_args.stage1_ckpt "
           "runs/stackgan_stage1/checkpoints/last.ckpt")  # fmt: skip
    ckpt, class_path = read_checkpoint(path, "stage1_ckpt", how)
    if not class_path.endswith(".StackGANStage1"):
        raise ValueError(
            f"{path} is a {class_path} checkpoint; Stage-II needs a StackGANStage1 checkpoint "
            "(experiments/stackgan_stage1.yaml)"
        )
    hp = ckpt["hyper_parameters"]
    args = {k: hp[k] for k in ("z_dim", "text_dim", "condition_dim", "ngf", "image_size",
                               "ca_activation")}  # fmt: skip
    state = ckpt["state_dict"]
    prefix = "generator_ema.module." if hp.get("ema_decay") else "generator."
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return args, weights, hp.get("text_encoder")


class _StackedGAN(_CAConditioned):
    """What :class:`StackGANStage2` and :class:`StackGAN` share: Stage-II's networks on top of a
    Stage-I generator, and sampling through both stages."""

    def _stage2(
        self, stage1_generator: Stage1Generator, condition_dim: int, ngf: int, ndf: int,
        num_residual: int, ca_activation: str, lr_decay_every: int,
    ) -> Stage:  # fmt: skip
        """Build Stage-II's networks on ``stage1_generator`` (DCGAN-initialised here too:
        :class:`StackGAN` trains it from this init, :class:`StackGANStage2` then loads its
        checkpoint) and return Stage-II's record."""
        self.set_networks(
            Stage2Generator(self.text_dim, condition_dim, ngf, num_residual, ca_activation),
            Stage2Discriminator(condition_dim, ndf, self.image_size),
            init_linear=True,
        )  # fmt: skip
        init_dcgan_weights(stage1_generator, linear=True)
        self.stage1_generator = stage1_generator
        # noise = [z, eps_1, eps_2]: Stage-I's z and CA draw, then Stage-II's CA draw
        noise = [stage1_generator.z_dim, stage1_generator.ca.condition_dim, condition_dim]
        return Stage(self.generator, self.discriminator, 0, lr_decay_every, noise,
                     self.image_size, stage1=stage1_generator)  # fmt: skip

    def _freeze_stage1(self) -> None:
        self.stage1_generator.requires_grad_(False).eval()

    @torch.no_grad()
    def sample_stages(
        self, text_emb: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Stage-I images, Stage-II images)`` for the same text and noise, in [-1, 1]."""
        text_emb = text_emb.to(self.device, torch.float32)
        if noise is None:
            noise = self.sample_noise(len(text_emb))
        noise = noise.to(self.device, torch.float32)
        z, eps1, _ = noise.split(self.stages[-1].noise, 1)
        with _eval_mode(self.stage1_generator):
            low = self.stage1_generator(z, text_emb, eps1)[0]
        return low.float().clamp(-1, 1), self.sample(text_emb, noise)


class StackGANStage2(_StackedGAN):
    """StackGAN Stage-II: 256 x 256 images refined from a frozen Stage-I (Sec. 3.3).

    The Stage-I generator is loaded once from ``stage1_ckpt``; its architecture then lives in
    this module's hyper-parameters (``stage1``) and its weights in this module's checkpoint, so
    ``t2igan generate`` and resuming need only the Stage-II checkpoint. It is frozen
    (``requires_grad=False`` before any DDP wrapping, so never synchronised, and not in G's
    optimiser) and always runs in eval mode (running BatchNorm statistics, as at test time);
    its images reach Stage-II detached. ``sample()`` returns Stage-II images;
    :meth:`sample_stages` returns both stages for the same noise.

    Sampling noise: ``[z, eps_1, eps_2]`` (Stage-I's z and CA draw, then Stage-II's CA draw).

    Args:
        stage1_ckpt: checkpoint of a trained :class:`StackGANStage1`.
        text_dim: text embedding size (linked from the data module; must be Stage-I's).
        image_size: image side (linked from the data module; 4x Stage-I's: the paper's 256).
        condition_dim: size of Stage-II's own CA condition (128).
        ngf: generator width, the authors' GF_DIM (128).
        ndf: discriminator width, the authors' DF_DIM (64).
        num_residual: residual blocks in G (the authors' R_NUM: 4 at 256 x 256).
        kl_weight: weight of the KL term of Stage-II's CA (the authors' code: 2.0).
        ca_activation: after CA's linear layer: ``relu`` (StackGAN-Pytorch) or ``leaky_relu``.
        lr: Adam learning rate for G and D.
        beta1: Adam beta1.
        beta2: Adam beta2.
        lr_decay_every: epochs between learning-rate halvings (authors' configs: 100).
        lr_decay: learning-rate factor at each decay.
        ema_decay: if set, keep an EMA of Stage-II's G and sample from it (not in the paper).
        text_encoder: set by the CLI from the data module (must be Stage-I's).
        stage1: filled in from ``stage1_ckpt`` (Stage-I generator's arguments) and stored in
            the checkpoint; leave it unset.
    """

    def __init__(
        self,
        stage1_ckpt: str | None = None,
        text_dim: int = 1024,
        image_size: int = 256,
        condition_dim: int = 128,
        ngf: int = 128,
        ndf: int = 64,
        num_residual: int = 4,
        kl_weight: float = 2.0,
        ca_activation: str = "relu",
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        lr_decay_every: int = 100,
        lr_decay: float = 0.5,
        ema_decay: float | None = None,
        text_encoder: dict | None = None,
        stage1: dict | None = None,
    ) -> None:
        weights = None
        if stage1 is None:
            if stage1_ckpt is None:
                raise ValueError(
                    "StackGANStage2 needs the trained Stage-I: set stage1_ckpt "
                    "(--model.init_args.stage1_ckpt runs/stackgan_stage1/checkpoints/last.ckpt)"
                )
            stage1, weights, stage1_encoder = read_stage1_checkpoint(stage1_ckpt)
            if text_encoder is not None and stage1_encoder not in (None, text_encoder):
                raise ValueError(
                    f"the data's text encoder {text_encoder} differs from Stage-I's "
                    f"{stage1_encoder} ({stage1_ckpt}): train Stage-II on the captions Stage-I "
                    "was trained with"
                )
        if text_dim != stage1["text_dim"]:
            raise ValueError(
                f"text_dim {text_dim} differs from Stage-I's {stage1['text_dim']}: use the text "
                "embeddings Stage-I was trained with"
            )
        if image_size != 4 * stage1["image_size"]:
            raise ValueError(
                f"Stage-II draws 4x Stage-I's side: Stage-I is {stage1['image_size']} px, so "
                f"image_size must be {4 * stage1['image_size']}, got {image_size} "
                "(--data.image_size)"
            )
        super().__init__(
            text_dim=text_dim, image_size=image_size,
            z_dim=stage1["z_dim"] + stage1["condition_dim"] + condition_dim, lr=lr, beta1=beta1,
            beta2=beta2, lr_decay_every=lr_decay_every, lr_decay=lr_decay, ema_decay=ema_decay,
            text_encoder=text_encoder,
        )  # fmt: skip
        self.save_hyperparameters(ignore=["stage1"])
        self.hparams["stage1"] = stage1
        self.kl_weight = kl_weight
        self.stages = (self._stage2(Stage1Generator(**stage1), condition_dim, ngf, ndf,
                                    num_residual, ca_activation, lr_decay_every),)  # fmt: skip
        # frozen before any DDP wrapping, so never synchronised, and not in G's optimiser
        self._freeze_stage1()
        if weights is not None:
            self.stage1_generator.load_state_dict(weights)


# ----------------------------------------------------------------------------- both stages
class StackGAN(_StackedGAN):
    """Both StackGAN stages in one run: Stage-I for ``stage1_epochs`` epochs, then Stage-II on
    the frozen Stage-I for the remaining epochs (``trainer.max_epochs`` = 600 + 600 in the
    paper). One checkpoint holds both stages; it resumes in either stage.

    Data come at Stage-II's ``image_size`` (256); Stage-I trains on them area-downsampled to
    ``image_size / 4``. Each stage has its own pair of Adam optimisers and its own halving
    schedule, counted in its own epochs; ``optimizers()`` returns all four
    ``[D-II, G-II, D-I, G-I]`` and the ``stage`` buffer picks the pair that trains. The EMA of
    Stage-II's G (``ema_decay``) is updated only in Stage-II. At the switch Stage-I is frozen
    (``requires_grad=False``, eval mode); a run resumed in Stage-II freezes it before DDP wraps
    the module, but one that crosses the switch under DDP keeps Stage-I registered for gradient
    sync (it gets no gradients; use ``ddp_find_unused_parameters_true``, as for every t2igan
    GAN), so for multi-GPU runs prefer the two stage configs.

    ``sample()`` draws from the stage being trained: Stage-I's images upsampled (nearest) to
    ``image_size`` during Stage-I, Stage-II's after.

    Args:
        text_dim: text embedding size (linked from the data module).
        image_size: Stage-II image side (linked from the data module; 256).
        stage1_epochs: epochs of Stage-I before Stage-II starts (600).
        z_dim: size of z (100).
        condition_dim: size of both stages' CA conditions (128).
        stage1_ngf: Stage-I generator width, GF_DIM (128).
        stage1_ndf: Stage-I discriminator width, DF_DIM (64).
        ngf: Stage-II generator width, GF_DIM (128).
        ndf: Stage-II discriminator width, DF_DIM (64).
        num_residual: residual blocks in Stage-II's G (4).
        kl_weight: weight of the KL terms (2.0).
        ca_activation: after CA's linear layers: ``relu`` (StackGAN-Pytorch) or ``leaky_relu``.
        lr: Adam learning rate for every network.
        beta1: Adam beta1.
        beta2: Adam beta2.
        stage1_lr_decay_every: Stage-I epochs between halvings (birds/flowers configs: 50; the
            paper says 100).
        lr_decay_every: Stage-II epochs between halvings (100).
        lr_decay: learning-rate factor at each decay.
        ema_decay: if set, keep an EMA of Stage-II's G and sample from it (not in the paper).
        text_encoder: set by the CLI from the data module.
    """

    def __init__(
        self,
        text_dim: int = 1024,
        image_size: int = 256,
        stage1_epochs: int = 600,
        z_dim: int = 100,
        condition_dim: int = 128,
        stage1_ngf: int = 128,
        stage1_ndf: int = 64,
        ngf: int = 128,
        ndf: int = 64,
        num_residual: int = 4,
        kl_weight: float = 2.0,
        ca_activation: str = "relu",
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        stage1_lr_decay_every: int = 50,
        lr_decay_every: int = 100,
        lr_decay: float = 0.5,
        ema_decay: float | None = None,
        text_encoder: dict | None = None,
    ) -> None:
        if image_size % 4:
            raise ValueError(f"image_size must be 4x Stage-I's side, got {image_size}")
        super().__init__(
            text_dim=text_dim, image_size=image_size, z_dim=z_dim + 2 * condition_dim,
            lr=lr, beta1=beta1, beta2=beta2, lr_decay_every=lr_decay_every, lr_decay=lr_decay,
            ema_decay=ema_decay, text_encoder=text_encoder,
        )  # fmt: skip
        self.save_hyperparameters()
        self.kl_weight = kl_weight
        self.stage1_epochs = stage1_epochs
        # Which stage trains: a buffer, so checkpoints (and DDP ranks) carry it; it selects
        # one of the two records (Stage-I is self.stages[0], Stage-II self.stages[1]).
        self.register_buffer("stage", torch.tensor(1))
        s1 = image_size // 4
        stage2 = self._stage2(
            Stage1Generator(z_dim, text_dim, condition_dim, stage1_ngf, s1, ca_activation),
            condition_dim, ngf, ndf, num_residual, ca_activation, lr_decay_every,
        )  # fmt: skip
        self.stage1_discriminator = Stage1Discriminator(condition_dim, stage1_ndf, s1)
        init_dcgan_weights(self.stage1_discriminator, linear=True)
        # Stage-I draws with the same [z, eps_1, eps_2] noise (eps_2 unused), at 1/4 the side;
        # its pair comes second in the optimiser lists ([D-II, G-II, D-I, G-I], as in every
        # StackGAN checkpoint).
        stage1 = Stage(self.stage1_generator, self.stage1_discriminator, 1,
                       stage1_lr_decay_every, stage2.noise, s1)  # fmt: skip
        self.stages = (stage1, stage2)

    def start_stage2(self) -> None:
        """Switch to Stage-II: Stage-I (G and D) is frozen from here on."""
        self.stage.fill_(2)
        self._freeze_stage1()
        self.stage1_discriminator.requires_grad_(False)

    def on_train_epoch_start(self) -> None:
        if int(self.stage) == 1 and self.current_epoch >= self.stage1_epochs:
            self.start_stage2()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        # Runs before DDP wraps the module: a run resumed in Stage-II never syncs Stage-I.
        if int(checkpoint["state_dict"].get("stage", 1)) == 2:
            self.start_stage2()
