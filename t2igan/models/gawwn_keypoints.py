"""GAWWN's conditional keypoint generator G_k (Reed et al., "Learning What and Where to Draw",
NIPS 2016, arXiv:1610.02454, section 3.3 "Conditional keypoint generation").

A user need not give every keypoint: G_k draws the missing parts from the caption (or all of
them), and the keypoint GAWWN (:class:`~t2igan.models.gawwn.GAWWNKeypoints`) then draws the
image. The networks are those of the authors' ``main_gen_keypoints.lua`` (architectures.md 2.6):

``G_k(z, t, k, s) = s * k + (1 - s) * f(z, t, k)``: ``k`` (B, K, 3) are the given keypoints
(x, y, visible), zero rows for parts not given; the switch ``s`` is each given part's visibility
broadcast over its (x, y, v), so a given part is copied exactly; ``f`` encodes z, t and the
flattened k separately, then 4 fully connected layers and a sigmoid (the paper: "a 3-layer
fully-connected network"). D_k(k, t) encodes k and t separately, then 2 layers to one logit.

Training (plain conditional GAN, no matching-aware term): ``L_D = BCE(D(k, t), 1) +
BCE(D(G_k(z, t, k_s, s), t), 0)``, ``L_G = BCE(D(G_k(...), t), 1)``, where ``k_s`` keeps each
part of the real keypoints with probability ``keep_prob`` (the authors' ``drop_prob = 0.9``).
Batch 64, Adam 2e-4 / 0.5, learning rate halved at the start of epochs 100, 200, ... counted from
1, 200 epochs, one caption per image (``experiments/gawwn_keypoint_generator.yaml``).

Where this port differs from the Lua code:

* D returns a logit and the losses use BCE with logits (the Lua ``Sigmoid`` + ``BCECriterion``).
* The first Linear of D's keypoint encoder is ``ndf * 4`` wide (the Lua code writes ``ngf * 4``
  followed by a BatchNorm of ``ndf * 4``, which only runs with ngf = ndf, as the script sets).
* The Lua G step re-uses D's output of the D step's fake pass; here G takes a normal step on the
  same noise and switches (a fresh forward through the updated D).
* Invisible parts are (0, 0, 0) in t2igan's batch contract, in the conditioning copy too; the Lua
  loader gives a kept invisible part its (clamped) coordinates with v = 0. Either way s = 0 there.

At test time (``demo_cub_keypoints_gen.lua``) a generated part is drawn when its visibility is
above 0.5 (:data:`DRAW_VISIBLE`), and the same noise z is fed to G_k and to the image generator.
"""

from __future__ import annotations

import torch
from torch import nn

from t2igan.losses import bce
from t2igan.models.base import EpochDecay, TextToImageModel, part_names, require_finite
from t2igan.nn import init_dcgan_weights

#: A generated part is drawn (and its map set) when its visibility is above this (the demo's).
DRAW_VISIBLE = 0.5


def switch_units(keypoints: torch.Tensor, keep_prob: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """The conditioning copy of ``keypoints`` (B, K, 3): each part's row is kept with probability
    ``keep_prob`` and zeroed otherwise (``main_gen_keypoints.lua``'s ``drop_prob = 1 -
    keep_prob``)."""
    keep = torch.rand(keypoints.shape[:2], generator=generator) < keep_prob
    return keypoints * keep.to(keypoints)[..., None]


def given_parts(keypoints: torch.Tensor) -> torch.Tensor:
    """The switches s (B, K, 3): each part's visibility over its (x, y, v) (the Lua ``maskOn``)."""
    return keypoints[..., 2:3].expand_as(keypoints)


def _fc(c_in: int, c_out: int, act: nn.Module | None) -> list[nn.Module]:
    """Linear, then BatchNorm1d and ``act`` when given."""
    return [nn.Linear(c_in, c_out), *([nn.BatchNorm1d(c_out), act] if act else [])]


class KeypointGeneratorNet(nn.Module):
    """G_k(z, t, k) of ``main_gen_keypoints.lua``: (B, z_dim), (B, text_dim), (B, K, 3) given
    keypoints (zero rows where not given) -> (B, K, 3) keypoints in [0, 1], the given (visible)
    parts copied exactly.

    Args:
        z_dim: noise size.
        text_dim: text embedding size.
        ngf: width (authors': 128).
        num_parts: K (CUB: 15; MPII in GAWWN's form: 17).
    """

    def __init__(self, z_dim=100, text_dim=1024, ngf=128, num_parts=15) -> None:
        super().__init__()
        self.num_parts = num_parts
        self.noise = nn.Sequential(nn.Linear(z_dim, 4 * ngf), nn.ReLU())
        self.text = nn.Sequential(nn.Linear(text_dim, 4 * ngf), nn.ReLU())
        self.parts = nn.Sequential(*_fc(3 * num_parts, 4 * ngf, nn.ReLU()),
                                   *_fc(4 * ngf, 2 * ngf, nn.ReLU()))  # fmt: skip
        self.f = nn.Sequential(
            *_fc(10 * ngf, 8 * ngf, nn.ReLU()), *_fc(8 * ngf, 4 * ngf, nn.ReLU()),
            *_fc(4 * ngf, 2 * ngf, nn.ReLU()), nn.Linear(2 * ngf, 3 * num_parts),
        )  # fmt: skip

    def forward(self, z: torch.Tensor, text_emb: torch.Tensor, given: torch.Tensor):
        h = torch.cat([self.noise(z), self.text(text_emb), self.parts(given.flatten(1))], 1)
        drawn = torch.sigmoid(self.f(h).view(-1, self.num_parts, 3))  # (B, K, 3)
        s = given_parts(given)
        return s * given + (1 - s) * drawn


class KeypointDiscriminatorNet(nn.Module):
    """D_k(k, t) -> logits (B,) of ``main_gen_keypoints.lua``.

    Args:
        text_dim: text embedding size.
        ndf: width (authors' script: 128).
        num_parts: K.
    """

    def __init__(self, text_dim=1024, ndf=128, num_parts=15) -> None:
        super().__init__()
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.parts = nn.Sequential(
            *_fc(3 * num_parts, 4 * ndf, act()), *_fc(4 * ndf, 2 * ndf, act())
        )
        self.text = nn.Sequential(*_fc(text_dim, 4 * ndf, act()), *_fc(4 * ndf, 2 * ndf, act()))
        self.head = nn.Sequential(*_fc(4 * ndf, 2 * ndf, act()), nn.Linear(2 * ndf, 1))

    def forward(self, keypoints: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.parts(keypoints.flatten(1)), self.text(text_emb)], 1)
        return self.head(h).flatten()


class GAWWNKeypointGenerator(TextToImageModel):
    """The conditional keypoint generator G_k and its discriminator (Reed et al. 2016, section
    3.3; architectures.md 2.6), trained on the keypoints and captions of the data module's
    batches (their images are not used). It draws keypoints, not images, which
    ``t2igan generate --keypoint-generator`` and ``t2igan app`` pass to a
    :class:`~t2igan.models.gawwn.GAWWNKeypoints`; it subclasses :class:`TextToImageModel` for
    its checkpoint record, per-rank RNG states (exact resume) and the CLI, and its ``sample``
    (images) says so.

    Sampling: ``model.complete(text_emb, noise, keypoints=given)`` -> (B, K, 3) keypoints in
    [0, 1]; parts of ``given`` with visibility 1 are kept exactly, the others drawn (nothing
    given: all drawn). ``sample_noise(n)`` as the image models.

    Args:
        text_dim: text embedding size (linked from the data module).
        image_size: the data module's image side (linked; keypoints are normalised, so unused).
        z_dim: noise size.
        ngf: G_k width (authors': 128).
        ndf: D_k width (authors' script: 128).
        num_parts: K, the number of parts (CUB: 15; MPII in GAWWN's form: 17).
        keep_prob: probability that a real part is given to G_k in training (the paper's
            switch units, on with 0.1; the Lua ``drop_prob = 0.9``).
        lr: Adam learning rate of G_k and D_k.
        beta1: Adam beta1.
        beta2: Adam beta2.
        lr_decay_every: the learning rate decays at the start of epochs ``lr_decay_every``,
            ``2 lr_decay_every``, ... counted from 1 (authors' code: 100).
        lr_decay: learning-rate factor at each decay (authors' code: 0.5).
        d_noise: standard deviation of Gaussian noise added to every keypoint set D_k sees,
            real and drawn, in training (instance noise; not the paper's, which has 0). Real
            layouts lie on a low-dimensional set with exact values (visibility exactly 0 or 1,
            invisible parts exactly at 0) that sigmoid outputs never reach, so without noise D_k
            can separate them exactly and G_k learns nothing (docs/gawwn.md).
        text_encoder: set by the CLI from the data module (how captions were embedded).
    """

    needs_images = False  # keypoints and captions only (a dataset without keypoints: an error)

    @property
    def part_names(self) -> tuple[str, ...]:
        """The names of the K keypoints, in order (CUB's 15 or MPII's 17)."""
        return part_names(self.num_parts)

    def __init__(
        self,
        text_dim: int = 1024,
        image_size: int = 128,
        z_dim: int = 100,
        ngf: int = 128,
        ndf: int = 128,
        num_parts: int = 15,
        keep_prob: float = 0.1,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        lr_decay_every: int = 100,
        lr_decay: float = 0.5,
        d_noise: float = 0.0,
        text_encoder: dict | None = None,
    ) -> None:
        super().__init__(text_dim=text_dim, image_size=image_size, z_dim=z_dim,
                         text_encoder=text_encoder)  # fmt: skip
        if not 0 <= keep_prob <= 1:
            raise ValueError(f"keep_prob is a probability in [0, 1], got {keep_prob}")
        if d_noise < 0:
            raise ValueError(f"d_noise is a standard deviation (>= 0), got {d_noise}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.num_parts = num_parts
        self.keep_prob = keep_prob
        self.generator = KeypointGeneratorNet(z_dim, text_dim, ngf, num_parts)
        self.discriminator = KeypointDiscriminatorNet(text_dim, ndf, num_parts)
        init_dcgan_weights(self.generator)  # BatchNorm only: Linear keeps Torch's default
        init_dcgan_weights(self.discriminator)

    # ------------------------------------------------------------------ sampling
    def render(self, text_emb, noise, **conditioning):
        raise ValueError("GAWWNKeypointGenerator draws keypoints, not images: use complete(), or "
                         "pass its checkpoint as --keypoint-generator with a GAWWNKeypoints "
                         "--ckpt")  # fmt: skip

    def check_keypoints(self, keypoints: torch.Tensor, what: str = "keypoints") -> torch.Tensor:
        if keypoints.dim() != 3 or keypoints.shape[1:] != (self.num_parts, 3):
            raise ValueError(f"{what} must be (B, {self.num_parts}, 3) normalised (x, y, "
                             f"visible), got shape {tuple(keypoints.shape)}")  # fmt: skip
        return keypoints.to(self.device, torch.float32)

    @torch.no_grad()
    def complete(self, text_emb: torch.Tensor, noise: torch.Tensor | None = None,
                 keypoints: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Keypoints (B, K, 3) in [0, 1] for text (B, D): the parts of ``keypoints`` (B, K, 3)
        with visibility 1 kept, the rest drawn by G_k (eval mode); none given: all drawn."""
        text_emb = text_emb.to(self.device, torch.float32)
        n = len(text_emb)
        given = (torch.zeros(n, self.num_parts, 3, device=self.device) if keypoints is None
                 else self.check_keypoints(keypoints))  # fmt: skip
        noise = self.sample_noise(n) if noise is None else noise.to(self.device, torch.float32)
        was_training = self.generator.training
        self.generator.eval()
        try:
            return self.generator(noise, text_emb, given)
        finally:
            self.generator.train(was_training)

    # ------------------------------------------------------------------ training
    def _real(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if "keypoints" not in batch:
            raise ValueError("GAWWNKeypointGenerator trains on keypoints, which the batches "
                             "lack: use a dataset that has them (cub, mhp, synthetic)")  # fmt: skip
        kp = self.check_keypoints(batch["keypoints"], "the batch's keypoints")
        # Real keypoints for D: invisible rows zeroed (the contract has them so already).
        return kp * (kp[..., 2:3] > 0.01), batch["text_emb"].float()

    def _judge(self, keypoints: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """D_k's logits in training, through the opt-in instance noise ``d_noise``."""
        if self.hparams.d_noise > 0:
            keypoints = keypoints + self.hparams.d_noise * torch.randn_like(keypoints)
        return self.discriminator(keypoints, text)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_d, opt_g = self.optimizers()
        real, text = self._real(batch)
        noise = self.sample_noise(len(real))
        given = switch_units(real.cpu(), self.keep_prob).to(real)  # CPU RNG: same on any device
        with self.toggled_optimizer(opt_d):
            fake = self.generator(noise, text, given).detach()
            real_logits = self._judge(real, text)
            fake_logits = self._judge(fake, text)
            d_loss = bce(real_logits, 1.0) + bce(fake_logits, 0.0)
            require_finite(self, "train/d_loss", d_loss, batch_idx)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            opt_d.step()
        with self.toggled_optimizer(opt_g):
            g_loss = bce(self._judge(self.generator(noise, text, given), text), 1.0)
            require_finite(self, "train/g_loss", g_loss, batch_idx)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            opt_g.step()
        bs = len(real)
        self.log_dict({"train/d_loss": d_loss, "train/g_loss": g_loss}, prog_bar=True,
                      batch_size=bs)  # fmt: skip
        self.log_dict({"train/d_real": torch.sigmoid(real_logits.detach()).mean(),
                       "train/d_fake": torch.sigmoid(fake_logits.detach()).mean()},
                      batch_size=bs)  # fmt: skip

    def on_train_epoch_end(self) -> None:
        for sch in self.lr_schedulers():  # manual optimisation: stepped here
            sch.step()
        self.log("train/lr", self.optimizers()[0].param_groups[0]["lr"])

    def configure_optimizers(self):
        h = self.hparams
        opts = [torch.optim.Adam(net.parameters(), lr=h.lr, betas=(h.beta1, h.beta2))
                for net in (self.discriminator, self.generator)]  # fmt: skip
        # offset 1: `if epoch % decay_every == 0` at an epoch's start, counted from 1, as the Lua
        return opts, [EpochDecay(o, h.lr_decay_every, h.lr_decay, offset=1) for o in opts]

    # ---------------------------------------------------------------- evaluation
    def evaluation_step(self, batch: dict, stage: str) -> None:
        real, text = self._real(batch)
        drawn = self.complete(text)
        scores = {"real": self.discriminator(real, text), "fake": self.discriminator(drawn, text)}
        vis = real[..., 2] > 0
        # how far the drawn visible parts lie from the real ones (a coarse check, not the
        # benchmark's geometry score: one drawn layout per caption against its own image)
        err = (drawn[..., :2] - real[..., :2]).norm(dim=-1)[vis].mean()
        self.log_dict({f"{stage}/d_real": torch.sigmoid(scores["real"]).mean(),
                       f"{stage}/d_fake": torch.sigmoid(scores["fake"]).mean(),
                       f"{stage}/part_distance": err}, batch_size=len(real))  # fmt: skip

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Keypoints drawn from each caption alone: ``{"keypoints", "captions", "index"}``."""
        return {"keypoints": self.complete(batch["text_emb"]), "captions": batch["captions"],
                "index": batch["index"]}  # fmt: skip
