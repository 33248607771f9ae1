"""DRAW and alignDRAW: recurrent variational autoencoders that paint a canvas over T steps.

DRAW: Gregor et al., "DRAW: A Recurrent Neural Network For Image Generation", ICML 2015
(arXiv:1502.04623): the encoder and decoder LSTMs, the latent z_t per step, the canvas
c_t = c_{t-1} + write(h^dec_t) (Eqs. 3-8), read and write with and without attention, the
separable N x N Gaussian filterbank (Eqs. 19-22, :func:`filterbank`), the loss L^x + L^z
(Eqs. 9-12) with a Bernoulli reconstruction. The paper's model is unconditional; :class:`DRAW`
here is conditioned on the caption embedding of the data module by concatenating it to the
decoder's input at every step, ``h^dec_t = LSTM^dec(h^dec_{t-1}, [z_t, text_emb])``.

alignDRAW: Mansimov et al., "Generating Images from Captions with Attention", ICLR 2016
(arXiv:1511.02793), after the authors' Theano code (emansim/text2image, ``coco/alignDraw.py``):
the caption's words through a bidirectional LSTM (Section 3.1), the alignment over words from
the generator's state at every step and the sentence representation s_t (Eq. 1-2), the learned
prior p(z_t | z_<t) (Eq. 3), the read attention on [x, x - sigma(c_{t-1})], the bound of Eq. 5
with the KL to that prior. :class:`AlignDRAW`'s defaults are the authors' COCO settings
(``coco/models/coco-captions-32x32.json``).

Where the older ports and the authors' code differ from the papers:

* The filterbank's grid is centred: mu_i = g + (i - (N + 1) / 2) delta for i = 1..N (Eq. 19).
  The alignDRAW code (and a widely copied DRAW port) computes ``arange(N) - N/2 - 0.5`` with a
  0-based ``arange``, which moves the grid off-centre (by delta for odd N in Python 2's integer
  division); that is not copied.
* The language LSTM is ``nn.LSTM(bidirectional=True)`` on packed sequences. The authors' code
  reverses the *batch* axis (``y[::-1]`` of a batch x words matrix) and does not flip the
  backward states back before concatenating them; that is not copied.
* PyTorch's LSTMs keep two biases per gate (``bias_ih`` and ``bias_hh``) where the Theano code
  has one: here ``bias_hh`` is frozen at zero (not a trained parameter), so ``bias_ih`` is the
  authors' ``b`` and the trained parameters are exactly theirs (:func:`frozen_second_bias`).
* The authors feed one-hot words to the language LSTM, whose input matrix W_y (vocabulary x 4
  x 128 per direction) is in effect a table of gate pre-activations per word. Here that table is
  an ``nn.Embedding`` (:attr:`AlignDRAWNetwork.words`, both directions' columns side by side) and
  the ``nn.LSTM`` reads it through a frozen 0/1 selector as its input matrix: the same function
  and the same trained parameters, without a one-hot matrix multiply.

The LAPGAN sharpening stage of alignDRAW's samples is out of scope: its weights came from an
unreleased Laplacian-pyramid GAN, and the released code has no training for it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from t2igan.data.tokens import Vocabulary
from t2igan.models.base import TextToImageModel, require_finite

# ----------------------------------------------------------------------------- attention


def attention_window(params: torch.Tensor, height: int, width: int, n: int) -> dict:
    """The window of Eqs. 21-22 from a linear map of the decoder state, ``params`` (B, 5) in
    the authors' order (g~_X, g~_Y, log delta~, log sigma^2, log gamma): centre ``gx``, ``gy``
    in 1-based pixel coordinates, ``delta`` (stride), ``sigma2`` (variance) and ``gamma``
    (intensity), each (B,)."""
    if n < 2:
        raise ValueError(f"an attention grid needs N >= 2 (the stride divides by N - 1), got {n}")
    gx_, gy_, log_delta, log_sigma2, log_gamma = params.unbind(-1)
    return {
        "gx": (width + 1) / 2 * (gx_ + 1),
        "gy": (height + 1) / 2 * (gy_ + 1),
        "delta": (max(height, width) - 1) / (n - 1) * log_delta.exp(),
        "sigma2": log_sigma2.exp(),
        "gamma": log_gamma.exp(),
    }


def filterbank(g: torch.Tensor, delta: torch.Tensor, sigma2: torch.Tensor, n: int, size: int,
               eps: float = 1e-8) -> torch.Tensor:  # fmt: skip
    """F (B, N, size): row i a Gaussian over pixels a = 1..size centred on
    mu_i = g + (i - (N + 1) / 2) delta (i = 1..N, Eq. 19: the grid is centred on g), with
    variance ``sigma2``, normalised to sum to 1 (Eqs. 25-26; ``eps`` guards a window that falls
    off the image)."""
    i = torch.arange(1, n + 1, device=g.device, dtype=g.dtype)
    mu = g[:, None] + (i - (n + 1) / 2) * delta[:, None]  # (B, N)
    a = torch.arange(1, size + 1, device=g.device, dtype=g.dtype)
    f = torch.exp(-((a - mu[..., None]) ** 2) / (2 * sigma2[:, None, None]))  # (B, N, size)
    return f / (f.sum(-1, keepdim=True) + eps)


def filterbanks(window: dict, n: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(F_Y (B, N, H), F_X (B, N, W)) of a window (:func:`attention_window`)."""
    fy = filterbank(window["gy"], window["delta"], window["sigma2"], n, height)
    fx = filterbank(window["gx"], window["delta"], window["sigma2"], n, width)
    return fy, fx


def read_glimpse(x: torch.Tensor, fy: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
    """F_Y x F_X^T per channel: (B, C, H, W) -> (B, C, N, N), the same filters per channel."""
    return torch.einsum("bnh,bchw,bmw->bcnm", fy, x, fx)


def write_patch(w: torch.Tensor, fy: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
    """F_Y^T w F_X per channel: (B, C, N, N) -> (B, C, H, W)."""
    return torch.einsum("bnh,bcnm,bmw->bchw", fy, w, fx)


def window_box(window: dict, n: int, height: int, width: int) -> torch.Tensor:
    """The grid's extent as a normalised (x, y, w, h) box (B, 4) (top-left origin, the batch
    contract's box form): from the first to the last filter centre, pixel i at [i - 1, i]."""
    half = (n - 1) / 2 * window["delta"]
    x0 = ((window["gx"] - half - 0.5) / width).clamp(0, 1)
    x1 = ((window["gx"] + half - 0.5) / width).clamp(0, 1)
    y0 = ((window["gy"] - half - 0.5) / height).clamp(0, 1)
    y1 = ((window["gy"] + half - 0.5) / height).clamp(0, 1)
    return torch.stack([x0, y0, x1 - x0, y1 - y0], -1)


# ---------------------------------------------------------------------------- objectives


def gaussian_kl(mu_q: torch.Tensor, log_sigma_q: torch.Tensor, mu_p: torch.Tensor | float = 0.0,
                log_sigma_p: torch.Tensor | float = 0.0) -> torch.Tensor:  # fmt: skip
    """KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)) summed over the last axis (nats): the
    alignDRAW code's form, 1/2 sum[-1 + ((mu_q - mu_p)^2 + sigma_q^2) / sigma_p^2
    - 2 log sigma_q + 2 log sigma_p]; with the standard normal prior it is DRAW's Eq. 11."""
    mu_p = torch.as_tensor(mu_p, dtype=mu_q.dtype, device=mu_q.device)
    log_sigma_p = torch.as_tensor(log_sigma_p, dtype=mu_q.dtype, device=mu_q.device)
    ratio = ((mu_q - mu_p) ** 2 + torch.exp(2 * log_sigma_q)) * torch.exp(-2 * log_sigma_p)
    return 0.5 * (ratio - 1 - 2 * log_sigma_q + 2 * log_sigma_p).sum(-1)


def bernoulli_nll(canvas: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """-log D(x | c_T) per image (B,): the binary cross-entropy of sigma(canvas) against the
    pixels of ``images`` (in [-1, 1], taken to [0, 1]) summed over pixels and channels, as the
    alignDRAW code does for RGB (on continuous pixels it is a cross-entropy, not a normalised
    likelihood: the bound includes the pixels' own entropy)."""
    target = (images + 1) / 2
    nll = F.binary_cross_entropy_with_logits(canvas, target, reduction="none")
    return nll.flatten(1).sum(1)


# ------------------------------------------------------------------------------ networks


def frozen_second_bias(lstm: nn.Module) -> nn.Module:
    """Zero and freeze every ``bias_hh`` of an ``nn.LSTM`` / ``nn.LSTMCell``: with one bias
    per gate (``bias_ih``) its trained parameters are the Theano LSTM's (W_x, W_h, b)."""
    for name, p in lstm.named_parameters():
        if name.startswith("bias_hh"):
            p.data.zero_()
            p.requires_grad_(False)
    return lstm


def clip_each(parts, clip: float) -> None:
    """Scale each gradient (view) in ``parts`` to norm <= ``clip``, in place, on its own."""
    for grad in parts:
        grad.mul_(torch.clamp(clip / (grad.norm() + 1e-12), max=1.0))


def merged_arrays(net: nn.Module) -> dict:
    """The parameters of ``net`` that hold two of the Theano code's arrays side by side, and
    how to split their gradients back into those arrays (``p.grad[index]`` is each one):
    ``q`` (W_henc_mu, W_henc_logsigma and their biases: rows), the generative LSTM's input
    weights (W_z_hdec, then W_s_hdec or the sentence vector's: columns) and, in alignDRAW, the
    word matrix (W_y, W_yRev: columns)."""
    z = net.z_dim
    out = {net.q.weight: [slice(None, z), slice(z, None)],
           net.q.bias: [slice(None, z), slice(z, None)]}  # fmt: skip
    if net.decoder.weight_ih.shape[1] > z:
        out[net.decoder.weight_ih] = [(slice(None), slice(None, z)), (slice(None), slice(z, None))]
    if hasattr(net, "words"):
        half = net.words.weight.shape[1] // 2
        out[net.words.weight] = [(slice(None), slice(None, half)),
                                 (slice(None), slice(half, None))]  # fmt: skip
    return out


def authors_init(module: nn.Module) -> None:
    """The alignDRAW code's initialisation (``coco/util.py``): every trained weight from
    N(0, 0.01^2), every bias and initial state 0. Frozen parameters keep their values."""
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if "bias" in name or name.endswith("_init"):
            nn.init.zeros_(p)
        else:
            nn.init.normal_(p, 0.0, 0.01)


class Reader(nn.Module):
    """read(x, x_hat, h^dec_{t-1}): without attention [x, x_hat] (Eq. 17); with an N x N
    window, gamma [F_Y x F_X^T, F_Y x_hat F_X^T] per channel (Eq. 27).

    Args:
        h_dim: decoder state size.
        channels: image channels.
        image_size: image side.
        n: grid side, or None for no attention.
    """

    def __init__(self, h_dim: int, channels: int, image_size: int, n: int | None) -> None:
        super().__init__()
        self.n, self.size = n, image_size
        self.params = nn.Linear(h_dim, 5) if n else None
        self.out_dim = 2 * channels * (n or image_size) ** 2

    def forward(self, x, x_hat, h_dec) -> torch.Tensor:
        if self.n is None:
            return torch.cat([x.flatten(1), x_hat.flatten(1)], 1)
        window = attention_window(self.params(h_dec), self.size, self.size, self.n)
        fy, fx = filterbanks(window, self.n, self.size, self.size)
        both = read_glimpse(torch.cat([x, x_hat], 1), fy, fx)  # (B, 2C, N, N)
        return window["gamma"][:, None] * both.flatten(1)


class Writer(nn.Module):
    """write(h^dec_t): without attention W(h^dec_t) reshaped to the image (Eq. 18); with an
    N x N window, (1 / gamma) F_Y^T w_t F_X with w_t = W(h^dec_t) per channel (Eq. 29).

    Args:
        h_dim: decoder state size.
        channels: image channels.
        image_size: image side.
        n: grid side, or None for no attention.
    """

    def __init__(self, h_dim: int, channels: int, image_size: int, n: int | None) -> None:
        super().__init__()
        self.n, self.size, self.channels = n, image_size, channels
        self.patch = nn.Linear(h_dim, channels * (n or image_size) ** 2)
        self.params = nn.Linear(h_dim, 5) if n else None

    def forward(self, h_dec) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the canvas update (B, C, H, W), the window as a normalised box (B, 4) or None)."""
        side = self.n or self.size
        w = self.patch(h_dec).view(-1, self.channels, side, side)
        if self.n is None:
            return w, None
        window = attention_window(self.params(h_dec), self.size, self.size, self.n)
        fy, fx = filterbanks(window, self.n, self.size, self.size)
        update = write_patch(w, fy, fx) / window["gamma"][:, None, None, None]
        return update, window_box(window, self.n, self.size, self.size)


def _steps(z_noise: torch.Tensor | None, steps: int, z_dim: int) -> list[torch.Tensor | None]:
    """The per-step noise (B, z_dim) of a (B, steps * z_dim) vector, or Nones."""
    if z_noise is None:
        return [None] * steps
    return list(z_noise.view(len(z_noise), steps, z_dim).unbind(1))


class DRAWNetwork(nn.Module):
    """DRAW's encoder, decoder, read and write (Eqs. 3-8), conditioned on a sentence vector
    concatenated to the decoder's input.

    Args:
        text_dim: sentence embedding size (0: unconditional, the paper's model).
        image_size: image side (square, 3 channels).
        steps: T.
        enc_dim: encoder LSTM size.
        dec_dim: decoder LSTM size.
        z_dim: latent size per step.
        read_n: read grid side, or None (no attention).
        write_n: write grid side, or None (no attention).
    """

    def __init__(self, text_dim: int, image_size: int, steps: int, enc_dim: int, dec_dim: int,
                 z_dim: int, read_n: int | None, write_n: int | None) -> None:  # fmt: skip
        super().__init__()
        self.steps, self.z_dim, self.image_size = steps, z_dim, image_size
        self.reader = Reader(dec_dim, 3, image_size, read_n)
        self.encoder = frozen_second_bias(nn.LSTMCell(self.reader.out_dim + dec_dim, enc_dim))
        self.q = nn.Linear(enc_dim, 2 * z_dim)  # mu_t, log sigma_t (Eqs. 1-2: sigma = exp(W h))
        self.decoder = frozen_second_bias(nn.LSTMCell(z_dim + text_dim, dec_dim))
        self.writer = Writer(dec_dim, 3, image_size, write_n)

    def forward(self, images, text_emb, eps=None, record: bool = False) -> dict:
        """Inference and reconstruction of ``images`` (B, 3, H, W) in [-1, 1]: ``recon`` (B,)
        and ``kl`` (B,) in nats; with ``record``, the canvases (T, B, 3, H, W) and windows."""
        b, dev = len(images), images.device
        x = (images + 1) / 2
        canvas = torch.zeros_like(x)
        h_dec = c_dec = images.new_zeros(b, self.decoder.hidden_size)
        h_enc = c_enc = images.new_zeros(b, self.encoder.hidden_size)
        kl = torch.zeros(b, device=dev)
        trace = {"canvases": [], "boxes": []}
        for eps_t in _steps(eps, self.steps, self.z_dim):
            r = self.reader(x, x - torch.sigmoid(canvas), h_dec)
            h_enc, c_enc = self.encoder(torch.cat([r, h_dec], 1), (h_enc, c_enc))
            mu, log_sigma = self.q(h_enc).chunk(2, 1)
            eps_t = torch.randn_like(mu) if eps_t is None else eps_t
            z = mu + log_sigma.exp() * eps_t
            kl = kl + gaussian_kl(mu, log_sigma)
            h_dec, c_dec = self.decoder(torch.cat([z, text_emb], 1), (h_dec, c_dec))
            update, box = self.writer(h_dec)
            canvas = canvas + update
            if record:
                trace["canvases"].append(canvas)
                trace["boxes"].append(box)
        return {"recon": bernoulli_nll(canvas, images), "kl": kl, "canvas": canvas, **trace}

    def generate(self, text_emb, noise, record: bool = False) -> dict:
        """Canvas from the prior: z_t = noise_t ~ N(0, I) (``noise`` (B, T * z_dim))."""
        b = len(text_emb)
        canvas = text_emb.new_zeros(b, 3, self.image_size, self.image_size)
        h_dec = c_dec = text_emb.new_zeros(b, self.decoder.hidden_size)
        trace = {"canvases": [], "boxes": []}
        for z in _steps(noise, self.steps, self.z_dim):
            h_dec, c_dec = self.decoder(torch.cat([z, text_emb], 1), (h_dec, c_dec))
            update, box = self.writer(h_dec)
            canvas = canvas + update
            if record:
                trace["canvases"].append(canvas)
                trace["boxes"].append(box)
        return {"canvas": canvas, **trace}


class AlignDRAWNetwork(nn.Module):
    """alignDRAW: the bidirectional language LSTM, the alignment, the learned prior, the
    inference and generative LSTMs, read and write attention (``coco/alignDraw.py``).

    Args:
        vocab_size: words, padding and unknown included (one-hot size ``dimY``).
        image_size: image side (square, 3 channels).
        steps: T.
        enc_dim: inference LSTM size.
        dec_dim: generative LSTM size.
        z_dim: latent size per step.
        read_n: read grid side.
        write_n: write grid side.
        lang_dim: language LSTM size per direction.
        align_dim: alignment layer size.
    """

    def __init__(self, vocab_size: int, image_size: int, steps: int, enc_dim: int, dec_dim: int,
                 z_dim: int, read_n: int, write_n: int, lang_dim: int,
                 align_dim: int) -> None:  # fmt: skip
        super().__init__()
        self.steps, self.z_dim, self.image_size = steps, z_dim, image_size
        gates = 4 * lang_dim
        # W_y and W_yRev of the code: the gate pre-activations of each word, both directions.
        self.words = nn.Embedding(vocab_size, 2 * gates)
        self.language = frozen_second_bias(
            nn.LSTM(2 * gates, lang_dim, batch_first=True, bidirectional=True)
        )
        # nn.LSTM multiplies its input by W_ih: a frozen selector of each direction's columns.
        eye = torch.eye(gates)
        with torch.no_grad():
            self.language.weight_ih_l0.copy_(torch.cat([eye, torch.zeros_like(eye)], 1))
            self.language.weight_ih_l0_reverse.copy_(torch.cat([torch.zeros_like(eye), eye], 1))
        self.language.weight_ih_l0.requires_grad_(False)
        self.language.weight_ih_l0_reverse.requires_grad_(False)
        self.h_lang_init = nn.Parameter(torch.zeros(lang_dim))  # h0_lang: both directions
        self.align_lang = nn.Linear(2 * lang_dim, align_dim, bias=False)  # W_lang_align
        self.align_dec = nn.Linear(dec_dim, align_dim)  # W_hdec_align, b_align
        self.align_v = nn.Linear(align_dim, 1, bias=False)  # v_align
        self.reader = Reader(dec_dim, 3, image_size, read_n)
        self.encoder = frozen_second_bias(nn.LSTMCell(self.reader.out_dim + dec_dim, enc_dim))
        self.q = nn.Linear(enc_dim, 2 * z_dim)
        # the generative LSTM's input [z_t, s_t]: W_z_hdec and W_s_hdec side by side
        self.decoder = frozen_second_bias(nn.LSTMCell(z_dim + 2 * lang_dim, dec_dim))
        self.prior = nn.Linear(dec_dim, 2 * z_dim)  # W_hdec_mu_and_logsigma_prior
        self.writer = Writer(dec_dim, 3, image_size, write_n)
        self.h_enc_init = nn.Parameter(torch.zeros(enc_dim))
        self.h_dec_init = nn.Parameter(torch.zeros(dec_dim))
        self.canvas_init = nn.Parameter(torch.zeros(3, image_size, image_size))  # c0

    def encode_words(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h^lang (B, L, 2 * lang_dim) of word ids (B, L) (padded with 0), and the mask of
        real words (B, L)."""
        mask = tokens != 0
        if not mask.any(1).all():
            raise ValueError("a caption has no word ids (a row of tokens is all padding): "
                             "encode captions with the model's vocabulary (encode_captions), "
                             "which maps unknown words to <unk>")  # fmt: skip
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.words(tokens), lengths, batch_first=True, enforce_sorted=False
        )
        h0 = self.h_lang_init.expand(2, len(tokens), -1).contiguous()
        out, _ = self.language(packed, (h0, torch.zeros_like(h0)))
        h_lang, _ = nn.utils.rnn.pad_packed_sequence(
            out, batch_first=True, total_length=tokens.shape[1]
        )
        return h_lang, mask

    def align(self, lang_proj, h_lang, mask, h_dec) -> tuple[torch.Tensor, torch.Tensor]:
        """(s_t (B, 2 lang_dim), alpha_t (B, L)): softmax over words of
        v^T tanh(U h^lang_k + W h^dec_{t-1} + b) (Eq. 1), and the weighted sum (Eq. 2)."""
        e = self.align_v(torch.tanh(lang_proj + self.align_dec(h_dec)[:, None])).squeeze(-1)
        alpha = e.masked_fill(~mask, float("-inf")).softmax(1)
        return torch.einsum("bl,bld->bd", alpha, h_lang), alpha

    def _start(self, b: int):
        h_dec = self.h_dec_init.expand(b, -1).contiguous()
        return self.canvas_init.expand(b, -1, -1, -1), h_dec, torch.zeros_like(h_dec)

    def forward(self, images, tokens, eps=None, record: bool = False) -> dict:
        """Inference and reconstruction: ``recon`` (B,), ``kl`` (B,) to the learned prior."""
        b = len(images)
        x = (images + 1) / 2
        h_lang, mask = self.encode_words(tokens)
        lang_proj = self.align_lang(h_lang)  # U h^lang, computed once (the code's hid_align)
        canvas, h_dec, c_dec = self._start(b)
        h_enc = self.h_enc_init.expand(b, -1).contiguous()
        c_enc = torch.zeros_like(h_enc)
        mu_p = log_sigma_p = images.new_zeros(b, self.z_dim)  # p(Z_1) = N(0, I)
        kl = images.new_zeros(b)
        trace = {"canvases": [], "boxes": [], "alignments": []}
        for eps_t in _steps(eps, self.steps, self.z_dim):
            r = self.reader(x, x - torch.sigmoid(canvas), h_dec)
            s, alpha = self.align(lang_proj, h_lang, mask, h_dec)
            h_enc, c_enc = self.encoder(torch.cat([r, h_dec], 1), (h_enc, c_enc))
            mu, log_sigma = self.q(h_enc).chunk(2, 1)
            log_sigma = 0.5 * log_sigma  # the code: log sigma = (W h + b) / 2
            eps_t = torch.randn_like(mu) if eps_t is None else eps_t
            z = mu + log_sigma.exp() * eps_t
            kl = kl + gaussian_kl(mu, log_sigma, mu_p, log_sigma_p)
            h_dec, c_dec = self.decoder(torch.cat([z, s], 1), (h_dec, c_dec))
            mu_p, log_sigma_p = torch.tanh(self.prior(h_dec)).chunk(2, 1)  # for step t + 1
            update, box = self.writer(h_dec)
            canvas = canvas + update
            if record:
                trace["canvases"].append(canvas)
                trace["boxes"].append(box)
                trace["alignments"].append(alpha)
        return {"recon": bernoulli_nll(canvas, images), "kl": kl, "canvas": canvas, **trace}

    def generate(self, tokens, noise, record: bool = False) -> dict:
        """Canvas from the learned prior: z_t = mu(h^gen_{t-1}) + sigma(h^gen_{t-1}) noise_t."""
        b = len(tokens)
        h_lang, mask = self.encode_words(tokens)
        lang_proj = self.align_lang(h_lang)
        canvas, h_dec, c_dec = self._start(b)
        mu_p = log_sigma_p = noise.new_zeros(b, self.z_dim)
        trace = {"canvases": [], "boxes": [], "alignments": []}
        for eps_t in _steps(noise, self.steps, self.z_dim):
            z = mu_p + log_sigma_p.exp() * eps_t
            s, alpha = self.align(lang_proj, h_lang, mask, h_dec)
            h_dec, c_dec = self.decoder(torch.cat([z, s], 1), (h_dec, c_dec))
            mu_p, log_sigma_p = torch.tanh(self.prior(h_dec)).chunk(2, 1)
            update, box = self.writer(h_dec)
            canvas = canvas + update
            if record:
                trace["canvases"].append(canvas)
                trace["boxes"].append(box)
                trace["alignments"].append(alpha)
        return {"canvas": canvas, **trace}


# ---------------------------------------------------------------------------- optimiser


class AuthorsRMSprop(torch.optim.Optimizer):
    """The alignDRAW code's update (``coco/alignDraw.py``, L405-425): h = decay h + (1 - decay)
    g^2, p -= lr g / sqrt(h + eps). (``torch.optim.RMSprop`` adds eps outside the square root.)
    The per-parameter gradient clipping that precedes it is the model's
    (:meth:`RecurrentVAE.on_before_optimizer_step`)."""

    def __init__(self, params, lr: float = 1e-3, decay: float = 0.9, eps: float = 1e-6) -> None:
        super().__init__(params, {"lr": lr, "decay": decay, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.zeros_like(p)
                h = state["square_avg"]
                h.mul_(group["decay"]).addcmul_(p.grad, p.grad, value=1 - group["decay"])
                p.addcdiv_(p.grad, (h + group["eps"]).sqrt(), value=-group["lr"])
        return loss


# ------------------------------------------------------------------------------ modules


class RecurrentVAE(TextToImageModel):
    """What DRAW and alignDRAW share as t2igan models: the bound as the loss (``train/bound``,
    ``train/recon``, ``train/kl``, and under ``val/`` and ``test/``: nats per image), the
    authors' optimiser with per-parameter gradient-norm clipping, the learning rate times
    ``lr_decay`` whenever the validation bound is worse than the last one that was not, and
    :meth:`sample_steps` for the figures. The sampling noise of one image is all T steps' noise,
    ``z_dim = steps * z_dim_per_step``.

    Args (keyword-only; the subclasses document them):
        text_dim, image_size, steps, z_dim, text_encoder, lr, optimizer, clip, lr_decay.
    """

    def __init__(self, *, text_dim: int, image_size: int, steps: int, z_dim: int,
                 text_encoder: dict | None, lr: float, optimizer: str, clip: float | None,
                 lr_decay: float) -> None:  # fmt: skip
        if optimizer not in ("rmsprop", "adam"):
            raise ValueError(f"optimizer must be 'rmsprop' (the authors') or 'adam', got "
                             f"{optimizer!r}")  # fmt: skip
        if steps < 1:
            raise ValueError(f"steps (T) must be at least 1, got {steps}")
        super().__init__(text_dim=text_dim, image_size=image_size, z_dim=steps * z_dim,
                         text_encoder=text_encoder)  # fmt: skip
        self.steps, self.z_dim_per_step = steps, z_dim
        self.lr, self.optimizer_name, self.clip, self.lr_decay = lr, optimizer, clip, lr_decay
        # the authors' "prev_val_results": the last validation bound that was not worse; the
        # largest float until the first validation (inf would read as a diverged weight)
        self.register_buffer("last_val_bound", torch.tensor(torch.finfo(torch.float32).max))
        self._val_sum: list[torch.Tensor] = []

    # --------------------------------------------------------------- the networks' inputs
    def condition(self, text_emb: torch.Tensor, conditioning: dict) -> torch.Tensor:
        """What the network reads of the caption: DRAW the embedding, alignDRAW the tokens."""
        raise NotImplementedError

    def losses(self, batch: dict) -> dict:
        """``bound`` (B,) = ``recon`` + ``kl``, nats per image, with q's noise drawn now."""
        cond = self.condition(batch["text_emb"], self.conditioning_of(batch))
        out = self.net(batch["images"], cond)
        return {"recon": out["recon"], "kl": out["kl"], "bound": out["recon"] + out["kl"]}

    def _log(self, stage: str, terms: dict, **kwargs) -> None:
        self.log_dict({f"{stage}/{k}": v.mean() for k, v in terms.items()},
                      batch_size=len(terms["bound"]), **kwargs)  # fmt: skip

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self.losses(batch)
        loss = terms["bound"].mean()
        require_finite(self, "train/bound", loss, batch_idx)
        self._log("train", terms, prog_bar=True)
        return loss

    def evaluation_step(self, batch: dict, stage: str) -> None:
        """The bound on held-out images (one draw of q's noise per image), in nats per image."""
        terms = self.losses(batch)
        self._log(stage, terms, sync_dist=True)
        if stage == "val":
            self._val_sum.append(torch.stack([terms["bound"].sum(), terms["bound"].new_tensor(
                len(terms["bound"]))]))  # fmt: skip

    def on_validation_epoch_end(self) -> None:
        sums, self._val_sum = self._val_sum, []
        # The lr rule is the training loop's (alignDraw.py L549-564): a sanity check or a
        # stand-alone `t2igan validate` (no optimiser) neither decays it nor moves its reference.
        if self.trainer.sanity_checking or not sums or not self.trainer.optimizers:
            return
        total = torch.stack(sums).sum(0)
        if self.trainer.world_size > 1:
            total = self.all_gather(total).sum(0)
        bound = total[0] / total[1]
        if bound > self.last_val_bound:  # the code: lr x 0.1 and keep the old reference
            for opt in self.trainer.optimizers:
                for group in opt.param_groups:
                    group["lr"] *= self.lr_decay
        else:
            self.last_val_bound.fill_(float(bound))
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_name == "adam":
            return torch.optim.Adam(params, lr=self.lr)
        return AuthorsRMSprop(params, lr=self.lr)

    def on_before_optimizer_step(self, optimizer) -> None:
        # The code scales each of its arrays' gradients to norm <= clip on its own (not the
        # global norm of Lightning's gradient_clip_val, alignDraw.py L417-420); a parameter
        # here that holds two of its arrays is clipped as those two.
        if not self.clip:
            return
        merged = merged_arrays(self.net)
        for p in self.parameters():
            if p.grad is not None:
                clip_each([p.grad[i] for i in merged.get(p, [...])], self.clip)

    # ------------------------------------------------------------------------- sampling
    def render(self, text_emb, noise, **conditioning):
        return self.sample_steps(text_emb, noise, **conditioning)["canvases"][-1]

    @torch.no_grad()
    def sample_steps(self, text_emb: torch.Tensor, noise: torch.Tensor | None = None,
                     **conditioning) -> dict:  # fmt: skip
        """The generation step by step: ``canvases`` (T, B, 3, H, W), sigma(c_t) in [-1, 1];
        ``boxes`` (T, B, 4), the write window as a normalised (x, y, w, h) box (None without
        write attention); alignDRAW adds ``alignments`` (T, B, L), the weights over the words."""
        cond = self.check_conditioning(conditioning)
        text_emb = text_emb.to(self.device, torch.float32)
        if noise is None:
            noise = self.sample_noise(len(text_emb))
        was_training = self.training
        self.eval()
        try:
            out = self.net.generate(self.condition(text_emb, cond),
                                    noise.to(self.device, torch.float32), record=True)  # fmt: skip
        finally:
            self.train(was_training)
        result = {"canvases": torch.stack([torch.sigmoid(c) * 2 - 1 for c in out["canvases"]])}
        boxes = out["boxes"]
        result["boxes"] = None if boxes[0] is None else torch.stack(boxes)
        if "alignments" in out:
            result["alignments"] = torch.stack(out["alignments"])
        return result


class DRAW(RecurrentVAE):
    """DRAW (Gregor et al., ICML 2015) conditioned on the caption embedding: the embedding is
    concatenated to the decoder's input at every step (the paper's model is unconditional;
    ``conditional=False`` gives it). Defaults: the paper's 32 x 32 colour generation setting
    (SVHN, Table 3: T = 32, LSTM 800, z 100, read and write 12 x 12), the alignDRAW code's
    initialisation and optimiser (the DRAW paper gives neither).

    Args:
        text_dim: caption embedding size (linked from the data).
        image_size: image side (linked from the data).
        steps: T, glimpses.
        enc_dim: encoder LSTM size.
        dec_dim: decoder LSTM size.
        z_dim: latent size per step.
        read_n: read grid side N; 0: no read attention (read = [x, x_hat]).
        write_n: write grid side N; 0: no write attention (write = W h^dec).
        conditional: concatenate the caption embedding to the decoder's input.
        lr: learning rate.
        optimizer: ``rmsprop`` (the alignDRAW code's) or ``adam``.
        clip: per-parameter gradient-norm limit (the alignDRAW code: 10); 0: none.
        lr_decay: learning-rate factor when the validation bound gets worse.
        text_encoder: how captions were embedded (linked from the data).
    """

    def __init__(self, text_dim: int, image_size: int = 32, steps: int = 32, enc_dim: int = 800,
                 dec_dim: int = 800, z_dim: int = 100, read_n: int = 12, write_n: int = 12,
                 conditional: bool = True, lr: float = 1e-3, optimizer: str = "rmsprop",
                 clip: float = 10.0, lr_decay: float = 0.1,
                 text_encoder: dict | None = None) -> None:  # fmt: skip
        super().__init__(text_dim=text_dim, image_size=image_size, steps=steps, z_dim=z_dim,
                         text_encoder=text_encoder, lr=lr, optimizer=optimizer, clip=clip,
                         lr_decay=lr_decay)  # fmt: skip
        self.save_hyperparameters()
        self.conditional = conditional
        self.net = DRAWNetwork(text_dim if conditional else 0, image_size, steps, enc_dim,
                               dec_dim, z_dim, read_n or None, write_n or None)  # fmt: skip
        authors_init(self.net)

    def condition(self, text_emb, conditioning):
        return text_emb if self.conditional else text_emb[:, :0]


class AlignDRAW(RecurrentVAE):
    """alignDRAW (Mansimov et al., ICLR 2016) on the caption's word ids (``tokens`` of the
    batch contract; ``text_emb`` is taken, as every model's first input, and not read).
    Defaults: the authors' COCO settings (32 x 32, T = 32, read and write 9 x 9, LSTMs 550,
    z 275, alignment 512, language LSTM 128 per direction, RMSprop lr 1e-3 with per-parameter
    clipping at 10, lr x 0.1 when the validation bound worsens).

    The vocabulary is the data module's (built from the training captions) when the model is
    set up for training, and is then kept in the checkpoint (``vocabulary``), so ``t2igan
    generate`` maps new captions to the same ids (unknown words to one id, long captions cut to
    ``max_words``).

    Args:
        text_dim: caption embedding size (linked from the data; not read).
        image_size: image side (linked from the data).
        steps: T.
        enc_dim: inference LSTM size.
        dec_dim: generative LSTM size.
        z_dim: latent size per step.
        read_n: read grid side N.
        write_n: write grid side N.
        lang_dim: language LSTM size per direction.
        align_dim: alignment layer size.
        vocabulary: the word of every id (from the data module when None).
        max_words: captions are cut to this many words (the data module's when None).
        lr: learning rate.
        optimizer: ``rmsprop`` (the authors') or ``adam``.
        clip: per-parameter gradient-norm limit; 0: none.
        lr_decay: learning-rate factor when the validation bound gets worse.
        text_encoder: how captions were embedded (linked from the data).
    """

    takes = ("text", "tokens")

    def __init__(self, text_dim: int, image_size: int = 32, steps: int = 32, enc_dim: int = 550,
                 dec_dim: int = 550, z_dim: int = 275, read_n: int = 9, write_n: int = 9,
                 lang_dim: int = 128, align_dim: int = 512, vocabulary: list[str] | None = None,
                 max_words: int | None = None, lr: float = 1e-3, optimizer: str = "rmsprop",
                 clip: float = 10.0, lr_decay: float = 0.1,
                 text_encoder: dict | None = None) -> None:  # fmt: skip
        super().__init__(text_dim=text_dim, image_size=image_size, steps=steps, z_dim=z_dim,
                         text_encoder=text_encoder, lr=lr, optimizer=optimizer, clip=clip,
                         lr_decay=lr_decay)  # fmt: skip
        self.save_hyperparameters()
        self._sizes = dict(image_size=image_size, steps=steps, enc_dim=enc_dim, dec_dim=dec_dim,
                           z_dim=z_dim, read_n=read_n, write_n=write_n, lang_dim=lang_dim,
                           align_dim=align_dim)  # fmt: skip
        self.vocabulary: Vocabulary | None = None
        self.max_words = max_words
        self.net: AlignDRAWNetwork | None = None
        if vocabulary is not None:
            self._build(Vocabulary(vocabulary))

    def _build(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self.net = AlignDRAWNetwork(len(vocabulary), **self._sizes)
        authors_init(self.net)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        dm = getattr(self.trainer, "datamodule", None)
        if self.net is None:
            vocab = getattr(dm, "vocabulary", None)
            if vocab is None:
                raise ValueError(
                    "AlignDRAW reads word ids and has no vocabulary: train it with a data "
                    "module that has a training split (its captions make the vocabulary), or "
                    "load it from a checkpoint"
                )
            self._build(vocab)
            self.hparams["vocabulary"] = vocab.itos
        if self.max_words is None:
            self.max_words = getattr(dm, "max_words", 30)
            self.hparams["max_words"] = self.max_words

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("hyper_parameters", {}).get("vocabulary")
        if saved is not None and self.vocabulary is not None and saved != self.vocabulary.itos:
            raise ValueError(
                f"the checkpoint's vocabulary ({len(saved)} words) is not this data's "
                f"({len(self.vocabulary)} words, from its training captions): resume on the "
                "data it was trained on"
            )

    def condition(self, text_emb, conditioning):
        return conditioning["tokens"]

    def prepare_captions(self, captions: list[str]) -> tuple[dict[str, torch.Tensor], list[int]]:
        """``{"tokens": word ids}`` of the captions with this model's vocabulary (it reads them
        uncut up to ``max_words``), and the indices of the captions that were cut."""
        ids, cut = self.encode_captions(captions)
        return {"tokens": ids}, cut

    def encode_captions(self, captions: list[str]) -> tuple[torch.Tensor, list[int]]:
        """(ids (N, max_words), the indices of the captions that were cut) with this model's
        vocabulary: what ``t2igan generate`` feeds it."""
        from t2igan.data.tokens import words

        n = self.max_words or 30
        ids = torch.stack([torch.from_numpy(self.vocabulary.encode(c, n)) for c in captions])
        return ids, [i for i, c in enumerate(captions) if len(words(c)) > n]


def parameter_count(module: nn.Module) -> int:
    """Trained parameters (``requires_grad``) of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
