"""AttnGAN's DAMSM encoders (Xu et al., CVPR 2018, arXiv:1711.10485, Sec. 3.3), read from the
published ``.pth`` files, as the :class:`~t2igan.metrics.evaluation.EncoderPair` of the
papers' R-precision.

Ported from ``code/model.py`` of taoxugit/AttnGAN (``RNN_ENCODER``, ``CNN_ENCODER``): the text
encoder is a word embedding (300) and a bidirectional LSTM (2 x 128) whose last hidden states are
the sentence feature; the image encoder is Inception-v3 up to ``Mixed_7c`` (torchvision's
layers, the weights in the file), average-pooled and projected to 256 (``emb_cnn_code``). The
parameter names are AttnGAN's, so its ``text_encoder*.pth`` / ``image_encoder*.pth`` load as
they are. Captions are tokenised as AttnGAN does (lower case, ``\\w+`` words, words outside its
vocabulary dropped), with the vocabulary of its ``captions.pickle`` (``wordtoix``).

Deviations: AttnGAN keeps a random 18 of the words of a longer caption; this keeps the first
18, so the score does not depend on a draw. The resize to 299 x 299 is bilinear with
``align_corners=False`` (AttnGAN's PyTorch 0.4 ``nn.Upsample``). Not checked against the
published files: they are not on the development machine (only a round trip of the same
layout is tested).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from t2igan.metrics.evaluation import require

WORDS_NUM = 18  # AttnGAN's cfg.TEXT.WORDS_NUM


class DAMSMTextEncoder(nn.Module):
    """AttnGAN's ``RNN_ENCODER`` (LSTM); returns the (B, nhidden) sentence features.

    Args:
        ntoken: vocabulary size.
        ninput: word embedding size.
        nhidden: sentence feature size (both directions together).
    """

    def __init__(self, ntoken: int, ninput: int = 300, nhidden: int = 256) -> None:
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninput)
        self.rnn = nn.LSTM(ninput, nhidden // 2, 1, batch_first=True, bidirectional=True)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        emb = self.encoder(tokens)  # (B, T, ninput)
        packed = nn.utils.rnn.pack_padded_sequence(emb, lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)  # fmt: skip
        _, (hidden, _) = self.rnn(packed)  # hidden: (2, B, nhidden / 2)
        return hidden.transpose(0, 1).reshape(len(tokens), -1)  # (B, nhidden)


class DAMSMImageEncoder(nn.Module):
    """AttnGAN's ``CNN_ENCODER``: the global (B, nef) feature ``cnn_code`` of images in [-1, 1].

    Args:
        nef: feature size.
    """

    LAYERS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
              "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
              "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")  # fmt: skip

    def __init__(self, nef: int = 256) -> None:
        super().__init__()
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=False, init_weights=False)
        for name in self.LAYERS:
            setattr(self, name, getattr(net, name))
        self.emb_features = nn.Conv2d(768, nef, 1, bias=False)  # region features (unused here)
        self.emb_cnn_code = nn.Linear(2048, nef)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float(), size=(299, 299), mode="bilinear", align_corners=False)
        for name in self.LAYERS:
            x = getattr(self, name)(x)
            if name in ("Conv2d_2b_3x3", "Conv2d_4a_3x3"):
                x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = F.avg_pool2d(x, kernel_size=8).flatten(1)  # (B, 2048)
        return self.emb_cnn_code(x)  # (B, nef)


def tokenize(caption: str, wordtoix: dict[str, int]) -> list[int]:
    """AttnGAN's tokens of a caption: lower-case ``\\w+`` words in the vocabulary, the first
    :data:`WORDS_NUM`; ``[0]`` (``<end>``) for a caption with none."""
    ids = [wordtoix[w] for w in re.findall(r"\w+", caption.lower()) if w in wordtoix]
    return ids[:WORDS_NUM] or [0]


def _state(path: Path, flag: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same answer
        raise ValueError(f"{flag} {path} is not a PyTorch state dict ({err})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{flag} {path} is not a state dict of AttnGAN's DAMSM encoders")
    return state


class DAMSMPair:
    """AttnGAN's DAMSM text and image encoders as an ``EncoderPair`` (comparable with the
    papers' R-precision).

    Args:
        text_encoder: AttnGAN's ``text_encoder*.pth``.
        image_encoder: AttnGAN's ``image_encoder*.pth``.
        captions: AttnGAN's ``captions.pickle`` of the dataset (its vocabulary).
        device: where the encoders run.
    """

    name = "AttnGAN DAMSM"
    comparable = True

    def __init__(self, text_encoder, image_encoder, captions, device="cpu") -> None:
        from t2igan.data.paper_files import read_pickle

        text_path = require(text_encoder, "--damsm-text-encoder", "damsm")
        image_path = require(image_encoder, "--damsm-image-encoder", "damsm")
        captions_path = require(captions, "--damsm-captions", "damsm")
        data = read_pickle(captions_path)
        if not (isinstance(data, (list, tuple)) and len(data) == 4 and isinstance(data[3], dict)):
            raise ValueError(f"--damsm-captions {captions_path} is not AttnGAN's captions.pickle "
                             "([train, test, ixtoword, wordtoix])")  # fmt: skip
        self.wordtoix = {str(k): int(v) for k, v in data[3].items()}
        text_state = _state(text_path, "--damsm-text-encoder")
        if "encoder.weight" not in text_state:
            raise ValueError(f"--damsm-text-encoder {text_path} is not AttnGAN's RNN_ENCODER")
        ntoken, ninput = text_state["encoder.weight"].shape
        nhidden = 2 * text_state["rnn.weight_hh_l0"].shape[1]
        self.text = DAMSMTextEncoder(ntoken, ninput, nhidden)
        self.image = DAMSMImageEncoder(nhidden)
        for net, state, path in ((self.text, text_state, text_path),
                                 (self.image, _state(image_path, "--damsm-image-encoder"),
                                  image_path)):  # fmt: skip
            try:
                net.load_state_dict(state)
            except RuntimeError as err:
                raise ValueError(f"{path} does not fit AttnGAN's DAMSM encoder: "
                                 f"{str(err).splitlines()[1].strip()}") from None  # fmt: skip
            net.to(device).eval().requires_grad_(False)
        self.device = device
        self.files = {"damsm_text_encoder": text_path, "damsm_image_encoder": image_path,
                      "damsm_captions": captions_path}  # fmt: skip

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.image(images.to(self.device))

    @torch.no_grad()
    def encode_texts(self, captions: list[str]) -> torch.Tensor:
        ids = [tokenize(c, self.wordtoix) for c in captions]
        tokens = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
        for i, row in enumerate(ids):
            tokens[i, : len(row)] = torch.tensor(row)
        lengths = torch.tensor([len(r) for r in ids])
        return self.text(tokens.to(self.device), lengths)
