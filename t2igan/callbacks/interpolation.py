"""The figures of Reed et al. 2016 as callbacks: caption interpolation (Figure 8, left), noise
interpolation at a fixed caption, and style transfer from real query images (Figure 6).

Each is a :class:`~t2igan.callbacks.figures.FixedInputFigure` and reaches models only through
their public interface (``sample_noise``, ``sample``, and for style transfer ``encode_style``).
For a model that takes a location (GAWWN's boxes or keypoints) each row keeps the location of
its (first) caption's image, so only the text or the noise changes along it.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from t2igan.callbacks.figures import FixedInputFigure
from t2igan.callbacks.location import fixed_location, location_kwargs


def lerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """(N, D), (N, D) -> (N * steps, D): ``steps`` points from a to b for each row, row-major."""
    w = torch.linspace(0, 1, steps, device=a.device)[None, :, None]  # (1, steps, 1)
    return ((1 - w) * a[:, None] + w * b[:, None]).flatten(0, 1)


class SentenceVectorFigure(FixedInputFigure):
    """A figure that moves through sentence embeddings: a model that reads the caption as word
    ids (alignDRAW, ``"tokens"`` in :attr:`takes`) gets none, with one warning."""

    def supports(self, pl_module) -> bool:
        if "tokens" not in getattr(pl_module, "takes", ()):
            return super().supports(pl_module)
        if not self._warned:
            rank_zero_warn(f"{type(self).__name__}: {type(pl_module).__name__} reads word ids, "
                           f"not sentence embeddings; no {self.key} figure is drawn")  # fmt: skip
            self._warned = True
        return False


class CaptionInterpolation(SentenceVectorFigure):
    """Caption interpolation: one row per caption pair, columns going from the first caption's
    embedding to the second's, ``(1 - a) phi(t1) + a phi(t2)``, with one noise vector fixed
    along each row (Reed et al. 2016, Figure 8 left). Smooth rows show that G learnt the
    text manifold between captions, which GAN-INT trains on.

    Args:
        every_n_epochs: epochs between figures.
        num_pairs: rows (caption pairs).
        num_steps: columns, both ends included.
        split: split the captions come from (``2 * num_pairs`` examples spread over it).
        seed: seed of the fixed noise.
    """

    key = "caption_interpolation"

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_pairs: int = 4,
        num_steps: int = 8,
        split: str = "val",
        seed: int = 0,
    ) -> None:
        super().__init__(every_n_epochs, seed)
        self.num_pairs = num_pairs
        self.num_steps = num_steps
        self.split = split

    def choose(self, trainer: L.Trainer, pl_module) -> dict:
        ex = trainer.datamodule.caption_examples(self.split, 2 * self.num_pairs)
        n = self.num_pairs
        # Pair the i-th example with the (i + n)-th: far apart in the split, so usually unlike.
        return {
            "captions": list(zip(ex["captions"][:n], ex["captions"][n:])),
            "text_a": ex["text_emb"][:n],
            "text_b": ex["text_emb"][n:],
            "noise": self.noise(pl_module, n),
            **fixed_location(pl_module, ex, n),
        }

    def draw(self, pl_module) -> tuple[torch.Tensor, int, list[str]]:
        f = self.fixed
        text = lerp(f["text_a"], f["text_b"], self.num_steps)  # (pairs * steps, D)
        noise = f["noise"].repeat_interleave(self.num_steps, 0)  # one noise per row
        labels = [f"{a}  ->  {b}" for a, b in f["captions"]]
        where = location_kwargs(f, self.num_steps)
        return pl_module.sample(text, noise, **where), self.num_steps, labels


class NoiseInterpolation(SentenceVectorFigure):
    """Noise interpolation: one fixed caption per row, the noise going linearly from one fixed
    vector to another along the row (the same two vectors in every row), so a column shows one
    "style" under every caption.

    Args:
        every_n_epochs: epochs between figures.
        num_captions: rows.
        num_steps: columns, both ends included.
        split: split the captions come from.
        seed: seed of the two fixed noise vectors.
    """

    key = "noise_interpolation"

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_captions: int = 4,
        num_steps: int = 8,
        split: str = "val",
        seed: int = 0,
    ) -> None:
        super().__init__(every_n_epochs, seed)
        self.num_captions = num_captions
        self.num_steps = num_steps
        self.split = split

    def choose(self, trainer: L.Trainer, pl_module) -> dict:
        ex = trainer.datamodule.caption_examples(self.split, self.num_captions)
        z = self.noise(pl_module, 2)
        return {"captions": ex["captions"], "text_emb": ex["text_emb"], "z_a": z[:1], "z_b": z[1:],
                **fixed_location(pl_module, ex)}  # fmt: skip

    def draw(self, pl_module) -> tuple[torch.Tensor, int, list[str]]:
        f = self.fixed
        rows = len(f["captions"])
        noise = lerp(f["z_a"], f["z_b"], self.num_steps).repeat(rows, 1)  # (rows * steps, z)
        text = f["text_emb"].repeat_interleave(self.num_steps, 0)
        where = location_kwargs(f, self.num_steps)
        return pl_module.sample(text, noise, **where), self.num_steps, list(f["captions"])


class StyleTransferGrid(FixedInputFigure):
    """Style transfer, the layout of Reed et al. 2016 Figure 6: a first row of real query
    images x, then one row per caption t showing ``G(S(x), phi(t))`` for each query, so a column
    keeps one image's style (pose, background) while the rows change what the text says.

    Needs a model with a style encoder (``encode_style``, e.g.
    :class:`t2igan.models.style_encoder.StyleEncoderGAN`); on other models it warns once and
    draws nothing.

    Args:
        every_n_epochs: epochs between figures.
        num_queries: columns (real query images).
        num_captions: rows of generated images.
        query_split: split the query images come from (default: held-out test classes).
        caption_split: split the captions come from.
    """

    key = "style_transfer"
    needs = "encode_style"

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_queries: int = 6,
        num_captions: int = 4,
        query_split: str = "test",
        caption_split: str = "val",
    ) -> None:
        super().__init__(every_n_epochs)  # no noise: the styles come from the query images
        self.num_queries = num_queries
        self.num_captions = num_captions
        self.query_split = query_split
        self.caption_split = caption_split

    def choose(self, trainer: L.Trainer, pl_module) -> dict:
        dm = trainer.datamodule
        queries = dm.caption_examples(self.query_split, self.num_queries)["images"]
        ex = dm.caption_examples(self.caption_split, self.num_captions)
        return {"images": queries, "captions": ex["captions"], "text_emb": ex["text_emb"]}

    def draw(self, pl_module) -> tuple[torch.Tensor, int, list[str]]:
        f = self.fixed
        cols, rows = len(f["images"]), len(f["captions"])
        styles = pl_module.encode_style(f["images"])  # (cols, z)
        text = f["text_emb"].repeat_interleave(cols, 0)
        fake = pl_module.sample(text, styles.repeat(rows, 1))  # (rows * cols, 3, H, W)
        images = torch.cat([f["images"].to(fake), fake])
        return images, cols, ["query images", *f["captions"]]
