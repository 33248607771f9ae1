"""Reed et al., "Learning Deep Representations of Fine-Grained Visual Descriptions" (CVPR 2016,
arXiv:1605.05395): the char-CNN-RNN / char-CNN-GRU text encoder, trained with the symmetric
structured joint embedding (DS-SJE, Eq. 1-4 of the paper as the authors' trainer computes it).

Every model of t2igan's papers conditions on this encoder: GAN-INT-CLS and GAWWN on the
char-CNN-GRU, StackGAN on char-CNN-RNN embeddings. This file holds

* the input encoding (:func:`encode_text`): 70-symbol alphabet, 201 characters, one-hot;
* the networks (:class:`CharCNNRNN`, :class:`CharCNNGRU`, the authors' GRU cell
  :class:`FixedGRUCell`) and a small image encoder for data without GoogLeNet features;
* the loss (:func:`sje_loss`) and the trainer (:class:`CharCNNRNNSJE`, a LightningModule);
* :class:`CharCNNEncoder`, the :class:`~t2igan.data.text.TextEncoder` that embeds captions with
  a trained (or converted, ``t2igan.models.char_cnn_rnn_t7``) encoder checkpoint.

Spec: ``shared/reference/architectures.md`` section 4; Lua: cvpr2016 ``modules/HybridCNN.lua``,
``modules/FixedRNN.lua``, ``train_sje_hybrid.lua``; icml2016 ``modules/FixedGRU.lua``.

Deviations (documented where the flags are):
* captions are lower-cased before encoding by default (``lowercase``): the alphabet has no
  capitals, and the ICML demo silently dropped them; ``lowercase=False`` is the ICML behaviour.
* the image side: without the authors' fixed GoogLeNet features (a batch key
  ``image_features``, (B, 10, 1024)) a small CNN learns the image embedding jointly
  (:class:`ImageEncoder`); the paper's image side is fixed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.retrieval import RetrievalMAP

from t2igan.atomic import file_digest, save_atomic
from t2igan.data.text import TextEncoder
from t2igan.models.base import TextToImageModel, read_checkpoint

#: The authors' alphabet (every Reed repo): '-' appears twice, so symbol 37 is never produced
#: and '-' encodes as 60 (the last occurrence wins, as in the Lua table they build).
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"/\\|_@#$%^&*~`+-=<>()[]{} "
#: Characters read per caption (longer captions are truncated).
DOC_LENGTH = 201
_INDEX = {ch: i for i, ch in enumerate(ALPHABET)}  # 0-based; '-' -> 59 (Lua 60)
ARCHITECTURES = ("cnn_rnn", "cnn_gru")


def encode_text(
    captions: list[str], length: int = DOC_LENGTH, lowercase: bool = True
) -> torch.Tensor:
    """One-hot character encoding (N, 70, length) of ``captions``, as the authors' loader.

    Characters past ``length`` are dropped, characters outside :data:`ALPHABET` give an
    all-zero column, and so do the padding columns after the caption's end
    (MultimodalMinibatchLoaderCaption.lua#L13-18, L83-100).

    Args:
        captions: the captions.
        length: characters kept (201 in the papers).
        lowercase: lower-case first (the alphabet has no capitals; off: capitals are dropped).
    """
    out = torch.zeros(len(captions), len(ALPHABET), length)
    for n, text in enumerate(captions):
        text = text.lower() if lowercase else text
        cols = [(_INDEX[c], t) for t, c in enumerate(text[:length]) if c in _INDEX]
        if cols:
            rows, ts = zip(*cols)
            out[n, list(rows), list(ts)] = 1.0
    return out


def check_encodable(captions: list[str], lowercase: bool = True, where: str = "") -> None:
    """A ValueError naming the first caption with no character of the alphabet (it would
    encode as all zeros: every such caption gets the same embedding)."""
    for i, text in enumerate(captions, 1):
        text = text.lower() if lowercase else text
        if not any(c in _INDEX for c in text[:DOC_LENGTH]):
            raise ValueError(
                f"{where}caption {i} ({text[:60]!r}) has no character of the char-CNN alphabet "
                "(lower-case a-z, 0-9, punctuation, space): it cannot be embedded"
            )


class CharCNN(nn.Module):
    """The three temporal convolutions of HybridCNN.lua (``nn.Threshold`` is ReLU):
    (B, 70, 201) -> (B, cnn_dim, 18), or (B, cnn_dim, 8) with the last max-pool.

    Args:
        cnn_dim: channels of the last convolution (the RNN's width).
        last_pool: the char-CNN-RNN's MaxPool(3, 2) after the third convolution.
        widths: channels of the first two convolutions (the paper's: 384, 512).
    """

    def __init__(
        self, cnn_dim: int = 256, last_pool: bool = True, widths: tuple[int, int] = (384, 512)
    ) -> None:
        super().__init__()
        c1, c2 = widths
        layers = [
            nn.Conv1d(len(ALPHABET), c1, 4), nn.ReLU(), nn.MaxPool1d(3, 3),  # (B,384,66)
            nn.Conv1d(c1, c2, 4), nn.ReLU(), nn.MaxPool1d(3, 3),  # (B,512,21)
            nn.Conv1d(c2, cnn_dim, 4), nn.ReLU(),  # (B,cnn_dim,18)
        ]  # fmt: skip
        if last_pool:
            layers.append(nn.MaxPool1d(3, 2))  # (B,cnn_dim,8)
        self.net = nn.Sequential(*layers)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        return self.net(chars)


class FixedRNN(nn.Module):
    """FixedRNN.lua: h_1 = ReLU(W_i x_1 + b_i); h_t = ReLU(W_i x_t + b_i + W_h h_{t-1} + b_h);
    output = mean_t h_t.

    Args:
        dim: width of the inputs and of the hidden state.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.i2h = nn.Linear(dim, dim)
        self.h2h = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, dim) -> (B, dim)
        h = F.relu(self.i2h(x[:, 0]))
        total = h
        for t in range(1, x.shape[1]):
            h = F.relu(self.i2h(x[:, t]) + self.h2h(h))
            total = total + h
        return total / x.shape[1]


class FixedGRUCell(nn.Module):
    """The GRU step of icml2016 FixedGRU.lua (not ``torch.nn.GRU``: the reset gate multiplies
    h before U, and the first step has no gates):

    u = sigmoid(W_u x + U_u h), r = sigmoid(W_r x + U_r h), h~ = tanh(W x + U (r * h)),
    h' = u * h~ + (1 - u) * h; every W and U a Linear with a bias.

    Args:
        dim: width of the inputs and of the hidden state.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.i2h_update, self.h2h_update = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.i2h_reset, self.h2h_reset = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.i2h, self.h2h = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def first(self, x: torch.Tensor) -> torch.Tensor:
        """h_1 = tanh(W x_1 + b)."""
        return torch.tanh(self.i2h(x))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        u = torch.sigmoid(self.i2h_update(x) + self.h2h_update(h))
        r = torch.sigmoid(self.i2h_reset(x) + self.h2h_reset(h))
        cand = torch.tanh(self.i2h(x) + self.h2h(r * h))
        return u * cand + (1 - u) * h


class FixedGRU(nn.Module):
    """FixedGRU.lua with ``avg=1``: the mean of the hidden states over time.

    Args:
        dim: width of the inputs and of the hidden state.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.cell = FixedGRUCell(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, dim) -> (B, dim)
        h = self.cell.first(x[:, 0])
        total = h
        for t in range(1, x.shape[1]):
            h = self.cell(x[:, t], h)
            total = total + h
        return total / x.shape[1]


class CharCNNRNN(nn.Module):
    """char-CNN-RNN (CVPR 2016 default, HybridCNN.lua): CharCNN with the last max-pool (8 steps),
    a vanilla ReLU RNN averaged over time, Dropout(0) and Linear(cnn_dim -> emb_dim).
    (B, 70, 201) one-hot -> (B, emb_dim).

    Args:
        cnn_dim: width of the last convolution and of the RNN (256 in the paper).
        emb_dim: size of the embedding (1024: the GoogLeNet feature size).
        rnn: ``rnn`` (FixedRNN, 8 steps) or ``gru`` (FixedGRU, 18 steps, no last max-pool).
        widths: channels of the first two convolutions (the paper's: 384, 512).
    """

    def __init__(
        self,
        cnn_dim: int = 256,
        emb_dim: int = 1024,
        rnn: str = "rnn",
        widths: tuple[int, int] = (384, 512),
    ) -> None:
        super().__init__()
        if rnn not in ("rnn", "gru"):
            raise ValueError(f"rnn must be 'rnn' or 'gru', got {rnn!r}")
        self.cnn = CharCNN(cnn_dim, last_pool=rnn == "rnn", widths=widths)
        self.rnn = FixedRNN(cnn_dim) if rnn == "rnn" else FixedGRU(cnn_dim)
        self.proj = nn.Linear(cnn_dim, emb_dim)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        feats = self.cnn(chars).transpose(1, 2)  # (B, T, cnn_dim)
        return self.proj(self.rnn(feats))  # (B, emb_dim)


class CharCNNGRU(CharCNNRNN):
    """char-CNN-GRU (ICML 2016 CUB and GAWWN encoders: HybridCNNLong.lua + FixedGRU.lua):
    no last max-pool (18 steps), the authors' GRU, width 512.

    Args:
        cnn_dim: width of the last convolution and of the GRU (512 in the released encoders).
        emb_dim: size of the embedding.
        widths: channels of the first two convolutions (the paper's: 384, 512).
    """

    def __init__(
        self, cnn_dim: int = 512, emb_dim: int = 1024, widths: tuple[int, int] = (384, 512)
    ) -> None:
        super().__init__(cnn_dim, emb_dim, rnn="gru", widths=widths)


def build_text_encoder(
    architecture: str, cnn_dim: int | None, emb_dim: int, widths=(384, 512)
) -> CharCNNRNN:
    widths = tuple(widths)
    if architecture == "cnn_rnn":
        return CharCNNRNN(cnn_dim or 256, emb_dim, widths=widths)
    if architecture == "cnn_gru":
        return CharCNNGRU(cnn_dim or 512, emb_dim, widths=widths)
    raise ValueError(f"unknown architecture {architecture!r}; choose one of {ARCHITECTURES}")


class ImageEncoder(nn.Module):
    """The trainable image side for data without the authors' GoogLeNet features: a small CNN
    from scratch (default) or a torchvision backbone whose weights come from a local file
    (never downloaded), then Linear(-> emb_dim). (B, 3, H, W) in [-1, 1] -> (B, emb_dim).

    Args:
        emb_dim: size of the embedding.
        width: channels of the small CNN's first convolution (doubled at each of 3 more).
        backbone: a ``torchvision.models`` constructor name (``resnet18``, ...) instead of the
            small CNN; its classifier is replaced.
        backbone_weights: file of the backbone's ``state_dict`` (required with ``backbone``).
    """

    def __init__(
        self,
        emb_dim: int = 1024,
        width: int = 32,
        backbone: str | None = None,
        backbone_weights: str | None = None,
    ) -> None:
        super().__init__()
        if backbone is None:
            layers, c = [], 3
            for k in range(4):  # each halves the side
                layers += [nn.Conv2d(c, width << k, 3, 2, 1), nn.BatchNorm2d(width << k),
                           nn.LeakyReLU(0.2)]  # fmt: skip
                c = width << k
            self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
            out = c
        else:
            import torchvision

            if backbone_weights is None or not Path(backbone_weights).is_file():
                raise FileNotFoundError(
                    f"backbone {backbone!r} needs backbone_weights, a local state_dict file "
                    f"(got {backbone_weights}); nothing is downloaded"
                )
            net = getattr(torchvision.models, backbone)(weights=None)
            state = torch.load(backbone_weights, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
            out = net.fc.in_features
            net.fc = nn.Identity()
            self.features = net
        self.proj = nn.Linear(out, emb_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(images))


# ----------------------------------------------------------------------------- the loss
def sje_loss(
    image_emb: torch.Tensor, text_emb: torch.Tensor, symmetric: bool = True
) -> torch.Tensor:
    """The structured joint embedding loss of train_sje_hybrid.lua#L117-155 on a minibatch of B
    distinct classes, row i of both inputs of class i. S = I T^T (B, B);

    image-anchored: sum_i sum_{j != i} max(0, 1 + S_ij - S_ii),
    text-anchored:  sum_i sum_{j != i} max(0, 1 + S_ji - S_ii),

    each divided by B * B; DS-SJE (``symmetric``) is their sum, DA-SJE the image-anchored term
    only (the code sums over every violating class, not the paper's max).

    Args:
        image_emb: (B, D) image embeddings.
        text_emb: (B, D) text embeddings.
        symmetric: DS-SJE (both terms) or DA-SJE (the image-anchored term).
    """
    scores = image_emb @ text_emb.T  # (B, B)
    b = scores.shape[0]
    diag = scores.diagonal()
    off = ~torch.eye(b, dtype=torch.bool, device=scores.device)
    img = F.relu(1 + scores - diag[:, None])[off].sum() / (b * b)
    if not symmetric:
        return img
    txt = F.relu(1 + scores - diag[None, :])[off].sum() / (b * b)
    return img + txt


def zero_shot_scores(image_emb, text_emb, text_labels):
    """(N_img, C) compatibilities of images with each class's embedding, the mean of its
    captions' embeddings (classify_sje_tcnn.lua#L124-160); and the C class ids."""
    classes = torch.unique(text_labels)
    class_emb = torch.stack([text_emb[text_labels == c].mean(0) for c in classes])  # (C, D)
    return image_emb @ class_emb.T, classes


# ----------------------------------------------------------------------------- the trainer
class CharCNNRNNSJE(TextToImageModel):
    """Trains the char-CNN-RNN / char-CNN-GRU with DS-SJE as the authors' trainer
    (train_sje_hybrid.lua): minibatches of distinct classes, one (image, caption) pair per
    class (``--data.sampler distinct_classes``), RMSprop at ``lr`` decayed by ``lr_decay`` every
    "epoch" of ``decay_every`` iterations (None: the number of training classes), parameters
    initialised U(-init_range, init_range).

    The image side is the authors' fixed 1024-d GoogLeNet features when batches carry them
    (``image_features``, (B, 10, 1024): a random view per sample in training, view 1 at test), else
    a trainable :class:`ImageEncoder` (not the paper's). Each validation logs, on
    ``eval_split`` (held-out classes), ``val/zsl_top1`` (zero-shot top-1, averaged over classes:
    each image to the nearest class embedding) and ``val/ap50`` (text -> image retrieval, mean AP
    over the top 50, a class embedding as the query), and ``val/loss`` on the val split.

    The checkpoint is a text encoder: ``--data.text_encoder`` takes it through
    :class:`CharCNNEncoder`. Subclasses :class:`TextToImageModel` to share its checkpoint
    record and CLI links (``text_dim`` and ``text_encoder`` are ignored: captions are read as
    characters); it draws no images.

    Args:
        text_dim: linked from the data module; unused.
        image_size: linked from the data module.
        architecture: ``cnn_rnn`` (CVPR default) or ``cnn_gru`` (ICML / GAWWN).
        cnn_dim: RNN width (None: 256 for cnn_rnn, 512 for cnn_gru).
        emb_dim: joint embedding size (1024).
        conv_widths: channels of the first two convolutions (the paper's: 384, 512; smaller
            only for quick tests).
        symmetric: DS-SJE (True) or DA-SJE (the image-anchored term only).
        lowercase: lower-case captions before encoding (not in the ICML code; see encode_text).
        lr: RMSprop learning rate (scripts/train_*_hybrid.sh: 7e-4).
        lr_decay: learning-rate factor per "epoch" of ``decay_every`` iterations (0.98).
        decay_every: iterations between decays (None: the number of training classes).
        init_range: parameters ~ U(-init_range, init_range) (0.08; the image CNN's BatchNorm keeps
            its default).
        image_width: channels of the small image CNN's first layer.
        image_backbone: torchvision backbone name instead of the small CNN.
        image_backbone_weights: its local weights file.
        eval_split: split of the held-out classes for zero-shot figures (``test``).
        text_encoder: linked from the data module; unused.
    """

    needs_images = False  # the authors' GoogLeNet features (reed-cvpr) will do

    def __init__(
        self,
        text_dim: int = 0,
        image_size: int = 64,
        architecture: str = "cnn_rnn",
        cnn_dim: int | None = None,
        emb_dim: int = 1024,
        conv_widths: tuple[int, int] = (384, 512),
        symmetric: bool = True,
        lowercase: bool = True,
        lr: float = 7e-4,
        lr_decay: float = 0.98,
        decay_every: int | None = None,
        init_range: float = 0.08,
        image_width: int = 32,
        image_backbone: str | None = None,
        image_backbone_weights: str | None = None,
        eval_split: str = "test",
        text_encoder: dict | None = None,
    ) -> None:
        super().__init__(text_dim=text_dim, image_size=image_size, z_dim=0,
                         text_encoder=text_encoder)  # fmt: skip
        self.save_hyperparameters()
        self.lr = lr
        self.automatic_optimization = False
        self.architecture = architecture
        self.symmetric = symmetric
        self.lowercase = lowercase
        self.lr_decay_factor = lr_decay
        self.decay_every = decay_every
        self.eval_split = eval_split
        self.image_side = "image_net"  # or "features": what trained the joint space
        self.text_net = build_text_encoder(architecture, cnn_dim, emb_dim, conv_widths)
        self.image_net = ImageEncoder(emb_dim, image_width, image_backbone, image_backbone_weights)
        for m in (*self.text_net.modules(), *self.image_net.modules()):
            if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d):
                for p in m.parameters(recurse=False):
                    nn.init.uniform_(p, -init_range, init_range)  # L111-113

    # ------------------------------------------------------------------ embeddings
    def embed_text(self, captions: list[str]) -> torch.Tensor:
        """(B,) captions -> (B, emb_dim)."""
        chars = encode_text(captions, lowercase=self.lowercase).to(self.device)
        return self.text_net(chars)

    def embed_images(self, batch: dict) -> torch.Tensor:
        feats = batch.get("image_features")
        if self.training:
            self.image_side = "image_net" if feats is None else "features"
        if feats is None:
            return self.image_net(batch["images"])
        if self.training:  # one of the 10 views at random (loader L77-80)
            views = torch.randint(feats.shape[1], (len(feats),), device=feats.device)
            return feats[torch.arange(len(feats)), views]
        return feats[:, 0]  # view 1 (classify_sje_tcnn.lua#L54-67)

    # --------------------------------------------------------------------- training
    def configure_optimizers(self):
        opt = torch.optim.RMSprop(self.parameters(), lr=self.lr)
        return opt

    def on_train_start(self) -> None:
        if self.decay_every is None:
            ds = self.trainer.datamodule.dataset_of("train")
            self.decay_every = len(torch.unique(ds.labels))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        labels = batch["labels"]
        if len(torch.unique(labels)) != len(labels):
            raise ValueError(
                "DS-SJE needs minibatches of distinct classes: use --data.sampler "
                "distinct_classes (a batch here repeats a class)"
            )
        opt = self.optimizers()
        loss = sje_loss(self.embed_images(batch), self.embed_text(batch["captions"]),
                        self.symmetric)  # fmt: skip
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()
        if (
            self.global_step % self.decay_every == 0
        ):  # global_step: iterations done  # train_sje_hybrid.lua#L243-249
            for group in opt.param_groups:
                group["lr"] *= self.lr_decay_factor
        self.log("train/loss", loss, prog_bar=True, batch_size=len(labels))
        self.log("train/lr", opt.param_groups[0]["lr"], batch_size=len(labels))
        return loss

    def render(self, text_emb, noise, **conditioning):
        raise ValueError("CharCNNRNNSJE is a text encoder and draws no images: give its "
                         "checkpoint to --data.text_encoder t2igan.models.CharCNNEncoder")  # fmt: skip

    # ------------------------------------------------------------------- evaluation
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss = sje_loss(self.embed_images(batch), self.embed_text(batch["captions"]),
                        self.symmetric)  # fmt: skip
        self.log("val/loss", loss, batch_size=len(batch["captions"]))

    def on_validation_epoch_end(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or self.trainer.sanity_checking:
            return
        top1, ap50 = self.zero_shot(dm.dataset_of(self.eval_split))
        self.log_dict({"val/zsl_top1": top1, "val/ap50": ap50})

    @torch.no_grad()
    def zero_shot(self, ds, batch_size: int = 128) -> tuple[float, float]:
        """Zero-shot top-1 and text -> image AP@50 on every image and caption of ``ds``."""
        was = self.training
        self.eval()
        try:
            img, txt, txt_labels = [], [], []
            for a in range(0, len(ds), batch_size):
                idx = range(a, min(a + batch_size, len(ds)))
                if ds.features is not None:  # the authors' fixed features: view 1
                    view = {"image_features": torch.stack([ds.features[i] for i in idx])}
                else:
                    view = {"images": torch.stack([ds.centre_image(i) for i in idx])}
                img.append(self.embed_images({k: v.to(self.device) for k, v in view.items()}))
                caps = [(c, int(ds.labels[i])) for i in idx for c in ds.split.captions[i]]
                txt.append(self.embed_text([c for c, _ in caps]))
                txt_labels += [label for _, label in caps]
            img, txt = torch.cat(img), torch.cat(txt)
            img_labels = ds.labels.to(self.device)
            scores, classes = zero_shot_scores(img, txt, torch.tensor(txt_labels,
                                                                      device=self.device))  # fmt: skip
            target = torch.searchsorted(classes, img_labels)  # (N,) class index
            acc = MulticlassAccuracy(len(classes), average="macro").to(self.device)
            top1 = acc(scores.argmax(1), target)
            # retrieval: each class embedding queries the images
            ap = RetrievalMAP(top_k=50).to(self.device)
            query = torch.arange(len(classes), device=self.device)[:, None].expand_as(scores.T)
            relevant = target[None, :] == query
            ap50 = ap(scores.T.reshape(-1), relevant.reshape(-1), indexes=query.reshape(-1))
        finally:
            self.train(was)
        return float(top1), float(ap50)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["sje_image_side"] = self.image_side

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.image_side = checkpoint.get("sje_image_side", "image_net")


class SJEPair:
    """A trained :class:`CharCNNRNNSJE` as the ``EncoderPair`` of R-precision (``t2igan
    evaluate --sje-ckpt FILE``): its char-CNN-RNN reads the captions, its image CNN the
    generated images (resized to the size it was trained at). Its scores are **not** comparable
    with the papers' R-precision, which used AttnGAN's DAMSM encoders; the result says so.

    Args:
        checkpoint: a ``t2igan fit --config experiments/char_cnn_rnn.yaml`` checkpoint whose image
            side is the trainable CNN (one trained on fixed GoogLeNet features cannot read pixels).
        device: where the encoders run.
    """

    name = "t2igan DS-SJE (char-CNN-RNN + image CNN)"
    comparable = False

    def __init__(self, checkpoint: str | Path, device="cpu") -> None:
        from t2igan.models.loading import load_model

        model = load_model(checkpoint, device)
        if not isinstance(model, CharCNNRNNSJE):
            raise ValueError(f"--sje-ckpt {checkpoint} is a {type(model).__name__} checkpoint, "
                             "not a DS-SJE text encoder (CharCNNRNNSJE)")  # fmt: skip
        if model.image_side != "image_net":
            raise ValueError(f"--sje-ckpt {checkpoint} was trained on fixed GoogLeNet features: "
                             "its image side cannot read generated images")  # fmt: skip
        self.model = model.requires_grad_(False)
        self.size = model.hparams.image_size
        self.files = {"sje_checkpoint": Path(checkpoint)}

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.model.device)
        if images.shape[-1] != self.size:
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear",
                                   antialias=True, align_corners=False)  # fmt: skip
        return self.model.image_net(images)

    @torch.no_grad()
    def encode_texts(self, captions: list[str]) -> torch.Tensor:
        return self.model.embed_text(captions)


# ----------------------------------------------------------------- as a text encoder
#: Text encoders shipped in the package, named ``t2igan:<name>`` as a ``CharCNNEncoder``
#: checkpoint. ``synthetic_birds``: a char-CNN-RNN trained with DS-SJE on the built-in synthetic
#: birds (``python benchmarks/char_cnn_rnn.py --minutes 30 --threads 1 --ship``; docs/benchmarks.md).
SHIPPED_ENCODERS = {"synthetic_birds": "synthetic_birds_char_cnn_rnn.ckpt"}
ASSETS = Path(__file__).resolve().parents[1] / "assets"
#: What a shipped encoder keeps of its training run's hyper-parameters.
_NET_HPARAMS = ("architecture", "cnn_dim", "emb_dim", "conv_widths", "lowercase")


def encoder_file(checkpoint: str) -> Path:
    """The file of an encoder checkpoint: a path, or ``t2igan:<name>`` for one the package
    ships (:data:`SHIPPED_ENCODERS`)."""
    if not checkpoint.startswith("t2igan:"):
        return Path(checkpoint)
    name = checkpoint.removeprefix("t2igan:")
    if name not in SHIPPED_ENCODERS:
        raise ValueError(f"no text encoder {checkpoint!r} ships with t2igan; shipped: "
                         + ", ".join(f"t2igan:{n}" for n in SHIPPED_ENCODERS))  # fmt: skip
    return ASSETS / SHIPPED_ENCODERS[name]


def export_text_encoder(ckpt: str | Path, out: str | Path, half: bool = True,
                        centre_on: list[str] | None = None) -> Path:  # fmt: skip
    """Write the text network of encoder checkpoint ``ckpt`` alone (in float16 by default), as
    the package ships it: no image side, optimiser or trainer state; ``CharCNNEncoder`` loads
    it as it loads ``ckpt`` (``ckpt`` may itself be such an export).

    ``centre_on``: captions whose mean embedding is subtracted from the output layer's bias, so
    the exported encoder's embeddings are centred on them. DS-SJE leaves a direction shared by
    all captions nearly unconstrained, and it dominates the raw cosine of two captions; centring
    removes it without changing zero-shot rankings (each image's class scores all shift by the
    same amount) or anything a GAN can learn (every t2igan model first applies a Linear layer to
    the embedding, whose bias absorbs the shift). Text -> image retrieval scores do change.
    """
    src, class_path = read_checkpoint(ckpt, "text encoder checkpoint", "")
    state = {k: v.float().clone() if v.is_floating_point() else v.clone()
             for k, v in src["state_dict"].items() if k.startswith("text_net.")}  # fmt: skip
    hp = {k: v for k, v in src["hyper_parameters"].items() if k in _NET_HPARAMS}
    extra = {}
    if centre_on:
        net, _ = load_text_net(ckpt)
        net.float()
        with torch.no_grad():
            mean = torch.cat([net(encode_text(centre_on[a : a + 256],
                                              lowercase=hp.get("lowercase", True)))
                              for a in range(0, len(centre_on), 256)]).mean(0)  # fmt: skip
        state["text_net.proj.bias"] = state["text_net.proj.bias"] - mean
        extra["centred_on_captions"] = len(centre_on)
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    return save_atomic(
        {"state_dict": state, "hyper_parameters": hp, "t2igan": {"class_path": class_path},
         "exported_from": src.get("exported_from", str(ckpt)), "export": extra}, out,
    )  # fmt: skip


def load_text_net(path: str | Path) -> tuple[CharCNNRNN, dict]:
    """The text network of an encoder checkpoint (:class:`CharCNNRNNSJE`'s, or one the ``.t7``
    converter wrote) and its hyper-parameters."""
    how = ("train one with `t2igan fit --config experiments/char_cnn_rnn.yaml` or convert the "
           "authors' .t7 with `python -m t2igan.models.char_cnn_rnn_t7`")  # fmt: skip
    ckpt, class_path = read_checkpoint(path, "text encoder checkpoint", how)
    if not class_path.endswith("CharCNNRNNSJE"):
        raise ValueError(f"{path} is a {class_path} checkpoint, not a char-CNN-RNN text encoder "
                         f"(CharCNNRNNSJE): {how}")  # fmt: skip
    hp = ckpt["hyper_parameters"]
    net = build_text_encoder(hp.get("architecture", "cnn_rnn"), hp.get("cnn_dim"),
                             hp.get("emb_dim", 1024), hp.get("conv_widths", (384, 512)))  # fmt: skip
    prefix = "text_net."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    net.load_state_dict(state)
    return net.eval(), hp


class CharCNNEncoder(TextEncoder):
    """Captions embedded by a trained char-CNN-RNN / char-CNN-GRU: ``--data.text_encoder
    t2igan.models.CharCNNEncoder --data.text_encoder.checkpoint RUN/checkpoints/last.ckpt``.

    The spec (recorded in every GAN checkpoint trained on it, and in the embedding cache's key)
    holds the file's path and the SHA-256 of its content: the cache follows the weights, not the
    name, and ``t2igan generate`` reloads the same file, refusing (naming it) one that is missing
    or whose content changed. The GAN checkpoint does not carry the encoder's weights: keep the
    encoder file beside it.

    Args:
        checkpoint: the encoder checkpoint (``t2igan fit --config experiments/char_cnn_rnn.yaml``
            or the ``.t7`` converter), or ``t2igan:synthetic_birds``, the one the package ships
            for the built-in synthetic birds (the quickstart's).
        sha256: content hash the file must have (filled in; checked when given).
        batch_size: captions per forward pass.
        device: torch device for encoding.
    """

    def __init__(
        self,
        checkpoint: str,
        sha256: str | None = None,
        batch_size: int = 256,
        device: str = "cpu",
    ) -> None:
        path = encoder_file(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(
                f"text encoder checkpoint {checkpoint} not found"
                + (
                    " (this model was trained with it: put the file back at that path)"
                    if sha256
                    else ""
                )  # fmt: skip
            )
        actual = file_digest(path, "sha256")
        if sha256 is not None and sha256 != actual:
            raise ValueError(f"text encoder checkpoint {checkpoint} has changed since this model "
                             f"was trained (sha256 {actual[:12]}, expected {sha256[:12]})")  # fmt: skip
        self.init_args = {"checkpoint": str(checkpoint), "sha256": actual,
                          "batch_size": batch_size, "device": device}  # fmt: skip
        self.batch_size = batch_size
        self.device = device
        self.net, hp = load_text_net(path)
        self.net.to(device)
        self.lowercase = hp.get("lowercase", True)
        self._dim = self.net.proj.out_features

    def __getstate__(self):  # never pickle the network into a checkpoint
        return {k: v for k, v in self.__dict__.items() if k != "net"}

    def spec(self) -> dict:  # batch size and device do not change the embeddings
        return {"class_path": "t2igan.models.CharCNNEncoder",
                "init_args": {"checkpoint": self.init_args["checkpoint"],
                              "sha256": self.init_args["sha256"]}}  # fmt: skip

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return DOC_LENGTH

    def truncate(self, caption: str) -> str:
        return caption[:DOC_LENGTH]

    @torch.no_grad()
    def encode(self, captions: list[str]) -> np.ndarray:
        check_encodable(captions, self.lowercase)
        out = []
        for a in range(0, len(captions), self.batch_size):
            chars = encode_text(captions[a : a + self.batch_size], lowercase=self.lowercase)
            out.append(self.net(chars.to(self.device)).cpu())
        return torch.cat(out).numpy().astype(np.float32)
