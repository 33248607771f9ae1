"""GAN-CLS, GAN-INT and GAN-INT-CLS: Reed et al., "Generative Adversarial Text to Image
Synthesis", ICML 2016 (arXiv:1605.05396).

Implements Algorithm 1 (the matching-aware discriminator, GAN-CLS) and the manifold-interpolation
term of Section 4.3 (GAN-INT), with the networks of the authors' Torch code
(reedscot/icml2016 ``main_cls_int.lua``), which differ from the paper's text in places
(architectures.md section 1.10): residual bottleneck blocks in G (at 4x4 and 8x8) and D (at 4x4),
BatchNorm on D's text projection, no activation after D's 8x8 convolution, bias-free convolutions,
"wrong" pairs made of a real image of another class with the right text, and the learning rate
halved every 100 epochs. The defaults follow the code; ``ngf=128, ndf=64, text_dim=1024`` gives
the authors' CUB network exactly.

One class covers the four variants by flags: GAN (``cls_weight=0, interp_weight=0``), GAN-CLS
(``interp_weight=0``), GAN-INT (``cls_weight=0``) and GAN-INT-CLS (the defaults); GAN-INT can also
extrapolate beyond the two captions (the authors' ``interp_type=2``).

Section 4.4's style encoder, which the authors did not release, is :class:`StyleEncoder` (the
network S) and :class:`StyleEncoderGAN` (S trained with a frozen, trained GAN on
``L_style = E ||z - S(G(z, phi(t)))||^2``; style transfer ``G(S(x), phi(t))``).
"""

from __future__ import annotations

import contextvars

import torch
from torch import nn

from t2igan.classpath import import_class
from t2igan.losses import d_loss_matching_aware, g_loss_nonsaturating
from t2igan.models.base import TextToImageGAN, read_checkpoint, require_finite
from t2igan.nn import doublings_from_4x4, init_dcgan_weights


def _levels(image_size: int) -> int:
    """Number of stride-2 (de)convolutions between 4x4 and ``image_size`` (>= 32)."""
    return doublings_from_4x4(image_size, smallest=32)


class ResidualBottleneck(nn.Module):
    """``act(x + [1x1 C->C/4, BN, act, 3x3, BN, act, 3x3 C/4->C, BN](x))`` (icml2016 code)."""

    def __init__(self, channels: int, act: nn.Module) -> None:
        super().__init__()
        mid = channels // 4
        self.branch = nn.Sequential(
            nn.Conv2d(channels, mid, 1, bias=False), nn.BatchNorm2d(mid), act,
            nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), act,
            nn.Conv2d(mid, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
        )  # fmt: skip
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.branch(x))


class Generator(nn.Module):
    """G(z, phi(t)): text projected to ``proj_dim`` (Linear + LeakyReLU 0.2), joined to z at 1x1,
    then a DCGAN deconvolution stack with residual blocks at 4x4 and 8x8 (table 1.3).

    Args:
        z_dim: noise size.
        text_dim: text embedding size.
        proj_dim: size the text is compressed to.
        ngf: width; 4x4 features have ``ngf * image_size / 8`` channels (1024 at 64 x 64).
        image_size: output side (a power of two >= 32).
    """

    def __init__(self, z_dim=100, text_dim=1024, proj_dim=128, ngf=128, image_size=64) -> None:
        super().__init__()
        n = _levels(image_size)
        self.project = nn.Sequential(nn.Linear(text_dim, proj_dim), nn.LeakyReLU(0.2))
        c = ngf * 2 ** (n - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim + proj_dim, c, 4, 1, 0, bias=False), nn.BatchNorm2d(c),
            ResidualBottleneck(c, nn.ReLU()),
        ]  # fmt: skip
        for level in range(1, n):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2)]
            c //= 2
            layers.append(ResidualBottleneck(c, nn.ReLU()) if level == 1 else nn.ReLU())
        layers += [nn.ConvTranspose2d(c, 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.project(text_emb)], 1)[:, :, None, None]  # (B, z + proj, 1, 1)
        return self.net(h)


def image_trunk(image_size: int = 64, ndf: int = 64) -> nn.Sequential:
    """D's image encoder down to 4x4 (table 1.4 rows 1-4 and R): (B, 3, S, S) -> (B, C, 4, 4).

    As in ``main_cls_int.lua`` the convolution that outputs 8x8 has BatchNorm but no activation.
    """
    n = _levels(image_size)
    layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
    c, side = ndf, image_size // 2
    for _ in range(1, n):
        layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c)]
        c, side = 2 * c, side // 2
        if side > 8:
            layers.append(nn.LeakyReLU(0.2))
    layers.append(ResidualBottleneck(c, nn.LeakyReLU(0.2)))
    return nn.Sequential(*layers)


class Discriminator(nn.Module):
    """D(x, phi(t)) -> logit: image trunk to 4x4, text projected (Linear + BN + LeakyReLU) and
    replicated 4x4, depth concatenation, 1x1 conv + BN + LeakyReLU, 4x4 conv (table 1.4).

    Args:
        text_dim: text embedding size.
        proj_dim: size the text is compressed to.
        ndf: width of the first convolution.
        image_size: input side (a power of two >= 32).
    """

    def __init__(self, text_dim=1024, proj_dim=128, ndf=64, image_size=64) -> None:
        super().__init__()
        self.trunk = image_trunk(image_size, ndf)
        c = ndf * 2 ** (_levels(image_size) - 1)
        self.project = nn.Sequential(
            nn.Linear(text_dim, proj_dim), nn.BatchNorm1d(proj_dim), nn.LeakyReLU(0.2)
        )
        self.head = nn.Sequential(
            nn.Conv2d(c + proj_dim, c, 1, bias=False), nn.BatchNorm2d(c), nn.LeakyReLU(0.2),
            nn.Conv2d(c, 1, 4, 1, 0, bias=False),
        )  # fmt: skip

    def forward(self, images: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        feat = self.trunk(images)  # (B, C, 4, 4)
        text = self.project(text_emb)[:, :, None, None].expand(-1, -1, *feat.shape[2:])
        return self.head(torch.cat([feat, text], 1)).flatten()  # (B,)


def interpolate_text(
    text_emb: torch.Tensor,
    beta: float,
    extrapolate: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """GAN-INT text: ``beta * t1 + (1 - beta) * t2`` pairing the first half of the batch with
    the second half, as the authors' code does (B -> B // 2 embeddings).

    Args:
        text_emb: (B, D) text embeddings of one batch.
        beta: weight of the first half (paper: 0.5).
        extrapolate: the authors' ``interp_type=2``: also add ``alpha * (t2 - t1)`` with
            ``alpha ~ U(-1, 1)`` drawn per pair, so the effective beta ranges over
            ``[beta - 1, beta + 1]`` and leaves the segment between the two captions.
        generator: random-number generator for ``alpha`` (None: the global one).
    """
    h = len(text_emb) // 2
    t1, t2 = text_emb[:h], text_emb[h : 2 * h]
    out = beta * t1 + (1 - beta) * t2
    if extrapolate:
        alpha = torch.rand(h, 1, generator=generator).to(text_emb) * 2 - 1  # (B/2, 1)
        out = out + alpha * (t2 - t1)
    return out


class GANINTCLS(TextToImageGAN):
    """GAN-INT-CLS of Reed et al. 2016 (GAN, GAN-CLS and GAN-INT by flags).

    Args:
        text_dim: text embedding size (linked from the data module).
        image_size: image side (linked from the data module).
        z_dim: noise size.
        proj_dim: text projection size in G and D.
        ngf: generator width (authors' CUB/Flowers: 128).
        ndf: discriminator width (authors': 64).
        cls_weight: weight of the wrong-pair term in D's loss; the fake term gets
            ``1 - cls_weight``. 0.5 = GAN-CLS; 0 = no matching-aware term.
        interp_weight: weight of the GAN-INT term in G's loss (authors' scripts: 1.0); 0 = off.
        interp_beta: beta of the interpolated text ``beta * t1 + (1 - beta) * t2`` (paper: 0.5).
        interp_extrapolate: also add ``alpha * (t2 - t1)``, ``alpha ~ U(-1, 1)`` per pair (the
            authors' ``interp_type=2``, unused by their scripts), so GAN-INT also trains on
            texts beyond the two captions (effective beta in ``[beta - 1, beta + 1]``).
        lr: Adam learning rate for G and D.
        beta1: Adam beta1.
        beta2: Adam beta2.
        lr_decay_every: epochs between learning-rate decays (authors' code: 100).
        lr_decay: learning-rate factor at each decay (authors' code: 0.5).
        ema_decay: if set, keep an EMA of G with this decay and sample from it (not in the paper).
        text_encoder: set by the CLI from the data module: how captions were embedded, so
            ``t2igan generate`` embeds new captions the same way.
    """

    def __init__(
        self,
        text_dim: int = 1024,
        image_size: int = 64,
        z_dim: int = 100,
        proj_dim: int = 128,
        ngf: int = 128,
        ndf: int = 64,
        cls_weight: float = 0.5,
        interp_weight: float = 1.0,
        interp_beta: float = 0.5,
        interp_extrapolate: bool = False,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        lr_decay_every: int = 100,
        lr_decay: float = 0.5,
        ema_decay: float | None = None,
        text_encoder: dict | None = None,
    ) -> None:
        super().__init__(
            text_dim=text_dim, image_size=image_size, z_dim=z_dim, lr=lr, beta1=beta1,
            beta2=beta2, lr_decay_every=lr_decay_every, lr_decay=lr_decay, ema_decay=ema_decay,
            text_encoder=text_encoder,
        )  # fmt: skip
        self.save_hyperparameters()
        self.set_networks(
            Generator(z_dim, text_dim, proj_dim, ngf, image_size),
            Discriminator(text_dim, proj_dim, ndf, image_size),
        )

    def discriminator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        text = batch["text_emb"]
        fake = self.generator(self.sample_noise(len(text)), text).detach()
        # Three separate D passes, as the authors' code: each normalises with its own batch stats.
        real_logits = self.discriminator(batch["images"], text)
        wrong_logits = None
        if self.hparams.cls_weight > 0:
            wrong_logits = self.discriminator(batch["wrong_images"], text)
        fake_logits = self.discriminator(fake, text)
        loss = d_loss_matching_aware(
            real_logits, wrong_logits, fake_logits, self.hparams.cls_weight
        )
        logs = {"train/d_real": torch.sigmoid(real_logits.float()).mean(),
                "train/d_fake": torch.sigmoid(fake_logits.float()).mean()}  # fmt: skip
        if wrong_logits is not None:
            logs["train/d_wrong"] = torch.sigmoid(wrong_logits.float()).mean()
        return loss, logs

    def generator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        text = batch["text_emb"]
        weight = torch.ones(len(text), device=text.device)
        if self.hparams.interp_weight > 0:
            # GAN-INT: fresh noise for B real + B/2 interpolated texts; D never sees the latter.
            interp = interpolate_text(
                text, self.hparams.interp_beta, self.hparams.interp_extrapolate
            )
            text = torch.cat([text, interp])
            weight = torch.cat(
                [weight, weight.new_full((len(interp),), self.hparams.interp_weight)]
            )
        fake_logits = self.discriminator(self.generator(self.sample_noise(len(text)), text), text)
        return g_loss_nonsaturating(fake_logits, weight), {}


# ----------------------------------------------------------------------------- style encoder
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


def _build_gan(class_path: str, init_args: dict) -> TextToImageGAN:
    cls = import_class(class_path, TextToImageGAN)
    # Built in an empty context: under LightningCLI, Lightning hands the *outer* model's config
    # to every save_hyperparameters() call made while it is constructed (through a context
    # variable), which would give the inner GAN the wrong hparams (and drop its EMA).
    return contextvars.Context().run(cls, **init_args)


def _read_gan_checkpoint(path: str) -> tuple[dict, dict]:
    """``({"class_path", "init_args"}, state_dict)`` of a t2igan GAN checkpoint."""
    how = ("pass the checkpoint of a trained GAN, e.g. "
           "--model.init_args.generator_ckpt runs/quickstart/checkpoints/last.ckpt")  # fmt: skip
    ckpt, class_path = read_checkpoint(path, "generator_ckpt", how)
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
            raises background retention from 44-48% to 66-84% (docs/reed2016.md).
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
        gan_model = _build_gan(gan["class_path"], gan["init_args"])
        hp = gan_model.hparams
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

    def _eval_step(self, batch: dict, stage: str) -> None:
        was_training = self.style_encoder.training
        self.style_encoder.eval()
        self._losses(batch, stage)
        self.style_encoder.train(was_training)

    def on_train_epoch_end(self) -> None:
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])

    def configure_optimizers(self):
        hp = self.hparams
        return torch.optim.Adam(
            self.style_encoder.parameters(), lr=hp.lr, betas=(hp.beta1, hp.beta2)
        )
