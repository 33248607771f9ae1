"""The style encoder of Reed et al., "Generative Adversarial Text to Image Synthesis", ICML 2016
(arXiv:1605.05396), Section 4.4, which the authors did not release: :class:`StyleEncoder` (the
network S) and :class:`StyleEncoderGAN` (S trained with a frozen, trained GAN on
``L_style = E ||z - S(G(z, phi(t)))||^2``; style transfer ``G(S(x), phi(t))``).
"""

from __future__ import annotations

import torch
from torch import nn

from t2igan.classpath import check_class_path, check_class_paths, import_class
from t2igan.models.base import TextToImageGAN, read_checkpoint, require_finite
from t2igan.models.gan_int_cls import _levels, image_trunk
from t2igan.nn import init_dcgan_weights


class StyleEncoder(nn.Module):
    """S(x) -> z: the style encoder of Section 4.4, a ConvNet that inverts G.

    The paper gives no architecture (and the authors' code has no S), so this follows the
    suggested spec (architectures.md 1.9): D's image trunk down to 4x4, flattened, then one
    linear layer to ``z_dim``. It sees no text: whatever the caption does not fix is what S must
    read from the image.

    Args:
        z_dim: noise size of the generator to invert.
        ndf: width of the first convolution.
        image_size: input side (a power of two >= 32).
    """

    def __init__(self, z_dim: int = 100, ndf: int = 64, image_size: int = 64) -> None:
        super().__init__()
        self.trunk = image_trunk(image_size, ndf)
        c = ndf * 2 ** (_levels(image_size) - 1)
        self.fc = nn.Linear(c * 16, z_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.trunk(images).flatten(1))  # (B, C, 4, 4) -> (B, C * 16) -> (B, z)


def style_loss(z: torch.Tensor, z_hat: torch.Tensor) -> torch.Tensor:
    """L_style = E ||z - S(G(z, phi(t)))||^2: squared L2 norm per sample, mean over the batch."""
    return (z - z_hat).pow(2).sum(1).mean()


def reconstruction_loss(images: torch.Tensor, redrawn: torch.Tensor) -> torch.Tensor:
    """Mean squared error per pixel and channel between real images and G(S(x), phi(t_x))."""
    return (redrawn.float() - images.float()).pow(2).mean()


def _build_gan(class_path: str, init_args: dict, source: str) -> TextToImageGAN:
    """The GAN ``class_path(**init_args)`` with exactly ``init_args`` as its hyper-parameters.
    ``class_path`` comes from a file (``source``): it is checked before it is imported.

    Under LightningCLI, every ``save_hyperparameters()`` called while the outer model is being
    built records the *outer* model's config; t2igan models build their networks from their
    arguments (never from ``hparams``), so the GAN is right and only its record needs setting.
    """
    gan = import_class(class_path, TextToImageGAN, source=source)(**init_args)
    gan.hparams.clear()
    gan.hparams.update(init_args)
    return gan


def _read_gan_checkpoint(path: str) -> tuple[dict, dict]:
    """``({"class_path", "init_args"}, state_dict)`` of a t2igan GAN checkpoint."""
    how = ("pass the checkpoint of a trained GAN, e.g. "
           "--model.init_args.generator_ckpt runs/quickstart/checkpoints/last.ckpt")  # fmt: skip
    ckpt, class_path = read_checkpoint(path, "generator_ckpt", how)
    # every class the file names is checked before any is imported (this one, its text encoder)
    check_class_path(class_path, source=f"generator_ckpt {path}")
    check_class_paths(ckpt.get("hyper_parameters"), source=f"generator_ckpt {path}")
    if class_path.endswith(".StyleEncoderGAN"):
        # Retraining S on top of a style checkpoint: take the GAN it carries.
        gan = ckpt["hyper_parameters"]["gan"]
        state = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("gan.")}
        return gan, state
    # LightningCLI adds private keys (``_instantiator``, ``_class_path``): not constructor args.
    init_args = {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}
    return {"class_path": class_path, "init_args": init_args}, ckpt["state_dict"]


class StyleEncoderGAN(TextToImageGAN):
    """A trained GAN, frozen, and the style encoder S that inverts its generator (Reed et al.
    2016, Section 4.4): S is trained on ``L_style = E ||z - S(G(z, phi(t)))||^2`` with captions
    t from the data and z ~ N(0, I). Style transfer is then ``x_hat = G(S(x), phi(t))``.

    The GAN (any t2igan model; the paper's is GAN-INT-CLS) is loaded from ``generator_ckpt`` once;
    its class, hyper-parameters and weights then live in this module's checkpoint, which is all
    ``t2igan generate --style-image`` needs (the original GAN checkpoint may be deleted). Its
    parameters have ``requires_grad=False`` and are not in the optimiser; S is trained on the
    images G draws in eval mode (running BatchNorm statistics), as G is used at test time.

    Sampling (:meth:`sample`, :meth:`sample_noise`, :meth:`discriminate`) is the GAN's, so every
    figure callback works on this module too; :meth:`encode_style` is the style interface.

    Args:
        generator_ckpt: checkpoint of a trained t2igan GAN whose generator S inverts.
        text_dim: text embedding size (linked from the data module; must match the GAN's).
        image_size: image side (linked from the data module; must match the GAN's).
        text_encoder: how the data module embeds captions (linked; must match the GAN's, else
            the captions S is trained on are not the ones G learnt).
        ndf: width of S's first convolution (None: the GAN's ``ndf``, else 64).
        lr: Adam learning rate of S (architectures.md 1.9: 2e-4).
        beta1: Adam beta1.
        beta2: Adam beta2.
        style_rescale: not in the paper, off by default. Rescale each style vector S(x) to the
            typical length of the GAN's noise (sqrt(z_dim) for N(0, I)) before G sees it. S is
            trained with a squared error, so it returns E[z | x]: where an image does not fix
            z, S answers near 0, a vector far shorter than any z G was trained on, and there
            the caption decides what the "style" attributes look like. On synthetic birds this
            raises background retention from 44-48% to 66-84% (docs/results.md, Style transfer).
        recon_weight: not in the paper, 0 (off) by default. With a weight w > 0, S is also
            trained on the data's real images x: the loss adds
            ``w * mean (G(S(x), phi(t_x)) - x)^2`` (per pixel, G frozen, the gradient passing
            through G into S), where t_x is x's own caption. The paper's S sees only G's samples
            and can misread real images where they differ from them (a background colour G
            draws slightly off, say); this term fits S to real images as GAN-inversion encoders
            do (Zhu et al. 2016, 2020). On synthetic birds, w = 10 keeps the query's background in
            78.5%, 78.1% and 89.5% of cases on three GAN seeds where the paper's S gives 71.5%,
            45.3% and 72.7%
            (docs/reed2016.md).
        gan: filled in from ``generator_ckpt`` and stored in the checkpoint (the GAN's
            ``class_path`` and ``init_args``); leave it unset.
    """

    def __init__(
        self,
        generator_ckpt: str | None = None,
        text_dim: int | None = None,
        image_size: int | None = None,
        text_encoder: dict | None = None,
        ndf: int | None = None,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        style_rescale: bool = False,
        recon_weight: float = 0.0,
        gan: dict | None = None,
    ) -> None:
        state = None
        if gan is None:
            if generator_ckpt is None:
                raise ValueError(
                    "StyleEncoderGAN needs the trained GAN: set generator_ckpt "
                    "(--model.init_args.generator_ckpt RUN/checkpoints/last.ckpt)"
                )
            gan, state = _read_gan_checkpoint(generator_ckpt)
        gan_model = _build_gan(gan["class_path"], gan["init_args"],
                               f"generator_ckpt {generator_ckpt}" if state is not None
                               else "the style-encoder checkpoint's gan entry")  # fmt: skip
        hp = gan["init_args"]
        for name, given in (("text_dim", text_dim), ("image_size", image_size),
                            ("text_encoder", text_encoder)):  # fmt: skip
            if given is not None and hp.get(name) is not None and given != hp.get(name):
                raise ValueError(
                    f"the data's {name} ({given}) differs from the GAN's ({hp.get(name)}) in "
                    f"{generator_ckpt or 'the checkpoint'}: train the style encoder on the data "
                    "configuration the GAN was trained with"
                )
        super().__init__(text_dim=gan_model.text_dim, image_size=gan_model.image_size,
                         z_dim=gan_model.z_dim, lr=lr, beta1=beta1, beta2=beta2,
                         text_encoder=hp.get("text_encoder"))  # fmt: skip
        # Record the GAN's own text encoder: it is the one `generate` must embed captions with.
        self.save_hyperparameters(ignore=["text_encoder"])
        self.hparams["text_encoder"] = hp.get("text_encoder")
        self.hparams["gan"] = gan
        self.automatic_optimization = True  # one network, one optimiser
        if state is not None:
            gan_model.load_state_dict(state)
        self.gan = gan_model.eval().requires_grad_(False)
        width = ndf or hp.get("ndf") or 64
        self.style_encoder = StyleEncoder(self.z_dim, width, self.image_size)
        init_dcgan_weights(self.style_encoder)

    # ------------------------------------------------ sampling interface: the frozen GAN's
    def sample_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.gan.sample_noise(n, generator)

    def sample(self, text_emb: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.gan.sample(text_emb, noise)

    def discriminate(self, images: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        return self.gan.discriminate(images, text_emb)

    @torch.no_grad()
    def encode_style(self, images: torch.Tensor, rescale: bool | None = None) -> torch.Tensor:
        """Style vectors s = S(x) (B, z_dim) of images in [-1, 1] at ``image_size``, in eval
        mode; ``sample(text_emb, s)`` then draws x's style with new text. ``rescale`` (default:
        the ``style_rescale`` hyper-parameter) gives each s the mean length of the GAN's noise."""
        was_training = self.style_encoder.training
        self.style_encoder.eval()
        try:
            styles = self.style_encoder(images.to(self.device, torch.float32))
        finally:
            self.style_encoder.train(was_training)
        if self.hparams.get("style_rescale", False) if rescale is None else rescale:
            noise = self.sample_noise(4096, generator=torch.Generator().manual_seed(0))
            styles = (
                styles
                * noise.norm(dim=1).mean()
                / styles.norm(dim=1, keepdim=True).clamp_min(1e-12)
            )
        return styles

    def train(self, mode: bool = True):
        # The GAN stays in eval mode whatever Lightning asks: it is frozen, not trained.
        super().train(mode)
        self.gan.eval()
        return self

    # ----------------------------------------------------------------------- objective
    def style_step(self, text_emb: torch.Tensor) -> torch.Tensor:
        """L_style for fresh z ~ N(0, I) and the given captions' embeddings."""
        z = self.sample_noise(len(text_emb))
        fake = self.sample(text_emb, z)  # no gradient into G: only S learns
        return style_loss(z, self.style_encoder(fake))

    def reconstruction_step(self, images: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """:func:`reconstruction_loss` of real images redrawn from their own captions and
        styles, ``G(S(x), phi(t_x))``, with the gradient through the frozen G into S."""
        gan = self.gan  # in eval mode always (see train()), as sample() runs it
        redrawn = gan.generate(
            gan.sampling_generator(), text_emb.float(), self.style_encoder(images)
        )
        return reconstruction_loss(images, redrawn)

    def _losses(self, batch: dict, stage: str) -> torch.Tensor:
        """The training loss (L_style, plus the weighted reconstruction term if it is on),
        with each term logged under ``stage``."""
        text, bs = batch["text_emb"], len(batch["text_emb"])
        loss = self.style_step(text)
        self.log(f"{stage}/style_loss", loss, prog_bar=True, batch_size=bs)
        if self.hparams.get("recon_weight", 0.0) > 0:
            recon = self.reconstruction_step(batch["images"], text)
            self.log(f"{stage}/recon_loss", recon, prog_bar=True, batch_size=bs)
            loss = loss + self.hparams.recon_weight * recon
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self._losses(batch, "train")
        require_finite(self, "train/style_loss", loss, batch_idx)
        return loss

    def evaluation_step(self, batch: dict, stage: str) -> None:
        was_training = self.style_encoder.training
        self.style_encoder.eval()
        self._losses(batch, stage)
        self.style_encoder.train(was_training)

    def on_train_epoch_end(self) -> None:
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])

    def configure_optimizers(self):
        return torch.optim.Adam(self.style_encoder.parameters(), lr=self.lr, betas=self.betas)
