"""Shared plumbing for figure callbacks: the base class of every figure drawn from fixed inputs,
where a run's figures go, and how they reach loggers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid


def run_dir(trainer: L.Trainer) -> Path:
    """The run directory: ``trainer.default_root_dir`` (the experiment configs set it)."""
    return Path(trainer.default_root_dir)


#: Narrowest label column, in pixels (about 85 characters of the default font).
MIN_LABEL_WIDTH = 480


def labelled_grid(images: torch.Tensor, nrow: int, labels: list[str] | None = None) -> Image.Image:
    """A grid of images in [-1, 1] with ``nrow`` images per row and an optional text label at
    the right of each row (the row's caption). Labels wrap to a column as wide as the grid (at
    least :data:`MIN_LABEL_WIDTH`): a long caption makes its row taller, never the figure
    wider."""
    grid = make_grid(
        images.float().cpu(), nrow=nrow, padding=2, normalize=True, value_range=(-1, 1)
    )
    img = Image.fromarray(grid.mul(255).round().byte().permute(1, 2, 0).numpy())
    if not labels:
        return img
    font = ImageFont.load_default()
    pad, margin = 2, 6
    cell = (img.height - pad) // len(labels)  # one row of images with the padding above it
    width = max(img.width, MIN_LABEL_WIDTH)
    char_width = font.getlength("abcdefghijklmnopqrstuvwxyz") / 26
    line_height = font.getbbox("Ag")[3] + 3
    wrapped = [textwrap.wrap(t, max(1, int((width - 2 * margin) / char_width))) for t in labels]
    heights = [max(cell, len(lines) * line_height + 2 * pad) for lines in wrapped]
    canvas = Image.new("RGB", (img.width + width, sum(heights) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    top = 0
    for r, (lines, height) in enumerate(zip(wrapped, heights)):
        row = img.crop((0, r * cell, img.width, (r + 1) * cell + pad))
        canvas.paste(row, (0, top + (height - cell) // 2))
        y = top + pad + (height - len(lines) * line_height) // 2
        for line in lines:
            draw.text((img.width + margin, y), line, fill="black", font=font)
            y += line_height
        top += height
    return canvas


def save_and_log(trainer: L.Trainer, key: str, image: Image.Image, caption: str, name: str) -> Path:
    """Save ``image`` as ``<run>/<key>/<name>.png`` and send it to every logger that takes images
    (TensorBoard, W&B); loggers without images (CSV) get the PNG on disk only."""
    path = run_dir(trainer) / key / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, tensor, trainer.current_epoch)
            logger.experiment.add_text(f"{key}/captions", caption, trainer.current_epoch)
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[image], caption=[caption])
    return path


class FixedInputFigure(L.Callback):
    """Base class: every ``every_n_epochs`` epochs, draw a figure from inputs chosen once.

    The inputs (captions, noise, query images) are chosen on the first epoch the figure is drawn
    and kept in the callback's checkpoint state, so a resumed run continues the same figure. It
    draws on rank 0 only, saves ``<run>/<key>/epoch_XXXX.png`` and logs it to every logger that
    takes images, with the captions written at the right of each row and in the logged caption.

    Subclasses set ``key`` and implement :meth:`choose` (the fixed inputs, a dict of tensors and
    strings) and :meth:`draw` (images, images per row, row labels). A figure that needs a model
    method beyond ``sample_noise`` and ``sample`` names it in ``needs``; on a model without it,
    the figure warns once and draws nothing. A ``layout`` note, if set, starts the logged caption
    (for grids whose columns need explaining).

    Args:
        every_n_epochs: epochs between figures.
        seed: seed of the fixed noise.
    """

    key = "figure"
    needs: str | None = None
    layout = ""

    def __init__(self, every_n_epochs: int = 1, seed: int = 0) -> None:
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.fixed: dict | None = None
        self._warned = False

    def choose(self, trainer: L.Trainer, pl_module) -> dict:
        raise NotImplementedError

    def draw(self, pl_module) -> tuple[torch.Tensor, int, list[str]]:
        raise NotImplementedError

    def supports(self, pl_module) -> bool:
        """Whether the model has what this figure needs (warns once when it does not)."""
        if self.needs is None or hasattr(pl_module, self.needs):
            return True
        if not self._warned:
            rank_zero_warn(
                f"{type(self).__name__}: {type(pl_module).__name__} has no `{self.needs}`; "
                f"no {self.key} figure is drawn"
            )
            self._warned = True
        return False

    def noise(self, pl_module, n: int) -> torch.Tensor:
        """``n`` fixed noise vectors drawn by the model from this callback's seed (independent
        of the global RNG), kept on the CPU with the other fixed inputs."""
        g = torch.Generator().manual_seed(self.seed)
        return pl_module.sample_noise(n, generator=g).cpu()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs or not trainer.is_global_zero:
            return
        if not self.supports(pl_module):
            return
        if self.fixed is None:
            self.fixed = self.choose(trainer, pl_module)
        figure, caption = self.figure(pl_module)
        save_and_log(trainer, self.key, figure, caption, f"epoch_{trainer.current_epoch:04d}")

    def figure(self, pl_module) -> tuple[Image.Image, str]:
        """The figure and its logged caption: :meth:`draw`'s images as a labelled grid (a
        figure that is not a grid of images overrides this)."""
        images, nrow, labels = self.draw(pl_module)
        caption = " | ".join(labels)
        if self.layout:
            caption = f"{self.layout}: {caption}"
        return labelled_grid(images, nrow, labels), caption

    def state_dict(self) -> dict:
        return {"fixed": self.fixed}

    def load_state_dict(self, state_dict: dict) -> None:
        self.fixed = state_dict["fixed"]
