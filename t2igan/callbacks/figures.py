"""Shared plumbing for figure callbacks: where a run's figures go and how they reach loggers."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid


def run_dir(trainer: L.Trainer) -> Path:
    """The run directory: ``trainer.default_root_dir`` (the experiment configs set it)."""
    return Path(trainer.default_root_dir)


def labelled_grid(images: torch.Tensor, nrow: int, labels: list[str] | None = None) -> Image.Image:
    """A grid of images in [-1, 1] with ``nrow`` images per row and an optional text label at
    the right of each row (the row's caption)."""
    grid = make_grid(
        images.float().cpu(), nrow=nrow, padding=2, normalize=True, value_range=(-1, 1)
    )
    img = Image.fromarray(grid.mul(255).round().byte().permute(1, 2, 0).numpy())
    if not labels:
        return img
    font = ImageFont.load_default()
    row_h = (img.height - 2) / len(labels)
    width = max(int(ImageDraw.Draw(img).textlength(t, font=font)) for t in labels) + 12
    canvas = Image.new("RGB", (img.width + width, img.height), "white")
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for r, text in enumerate(labels):
        draw.text((img.width + 6, int(2 + (r + 0.5) * row_h) - 5), text, fill="black", font=font)
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
