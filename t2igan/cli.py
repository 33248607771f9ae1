"""The ``t2igan`` command: LightningCLI (fit, validate, test, predict) plus ``generate``.

t2igan fit --config experiments/quickstart.yaml
t2igan fit --config experiments/quickstart.yaml --ckpt_path last      # resume exactly
t2igan generate --ckpt RUN/checkpoints/last.ckpt --caption "a bird with a red body" --out out/
t2igan generate --ckpt STYLE_RUN/checkpoints/last.ckpt --style-image bird.png --caption "..."
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI

from t2igan.callbacks.checkpoint import checkpoint_dir, resume_path, use_atomic_checkpoints
from t2igan.callbacks.run_config import SaveRunConfig
from t2igan.classpath import import_class
from t2igan.data import T2IDataModule
from t2igan.data.download import download_main
from t2igan.data.embed import embed_main
from t2igan.data.prepare import prepare_main
from t2igan.data.text import encoder_from_spec
from t2igan.models.base import TextToImageGAN, read_checkpoint
from t2igan.run import follow_run_dir


class T2IGANCLI(LightningCLI):
    """LightningCLI with the data module's text size, image size and text encoder linked to the
    model, so a config states them once. Every output follows the run directory
    (``--trainer.default_root_dir``): loggers without a ``save_dir`` write under it, all loggers
    of one fit share one ``logs/version_N``, checkpoints are written atomically, and
    ``--ckpt_path last`` resumes ``<run>/checkpoints/last.ckpt`` or stops with a clear error."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.image_size", "model.init_args.image_size")
        parser.link_arguments("data.text_dim", "model.init_args.text_dim", apply_on="instantiate")
        parser.link_arguments(
            "data.text_encoder_spec", "model.init_args.text_encoder", apply_on="instantiate"
        )

    def parse_arguments(self, parser, args) -> None:
        if isinstance(args, (dict, Namespace)):
            return super().parse_arguments(parser, args)
        # Loggers may leave out save_dir (it is the run directory): filled in before validation.
        self.config = parser.parse_args(args, _skip_validation=True)
        if self.config.get("subcommand") is not None:
            follow_run_dir(self.config[self.config.subcommand].trainer)
        parser.validate(self.config)

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoints(trainer)
        return trainer

    def _check_ckpt_path(self) -> None:
        config = self.config_init[self.subcommand]
        config["ckpt_path"] = resume_path(checkpoint_dir(self.trainer), config.get("ckpt_path"))

    before_fit = before_validate = before_test = before_predict = _check_ckpt_path


def cli(args: list[str] | None = None) -> T2IGANCLI:
    return T2IGANCLI(
        TextToImageGAN,
        T2IDataModule,
        subclass_mode_model=True,
        # GANs own two optimisers: a --optimizer would silently replace them, so there is none.
        auto_configure_optimizers=False,
        save_config_callback=SaveRunConfig,  # also sends the whole config to W&B loggers
        save_config_kwargs={"overwrite": True},
        args=args,
    )


def load_model(ckpt: str | Path, device: str = "cpu") -> TextToImageGAN:
    """Load any t2igan model from a checkpoint (the class is recorded in it)."""
    how = "pass a checkpoint that `t2igan fit` wrote, e.g. runs/quickstart/checkpoints/last.ckpt"
    _, class_path = read_checkpoint(ckpt, "checkpoint", how)
    cls = import_class(class_path, TextToImageGAN)
    return cls.load_from_checkpoint(ckpt, map_location=device, weights_only=True).eval()


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """An image file as a (3, size, size) tensor in [-1, 1]: centre-cropped to a square, then
    resized (how a query image for style transfer reaches the style encoder)."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 127.5 - 1


def generate(
    ckpt: str, captions: list[str], num: int = 8, seed: int = 0, out: str = "out",
    device: str = "cpu", style_images: list[str] | None = None, style_steps: int = 0,
    style_rescale: bool | None = None,
) -> list[Path]:  # fmt: skip
    """Write images for ``captions`` (``out/grid.png`` and ``out/cCC_iII.png``, one grid row per
    caption); returns the paths written, the grid first. Captions are embedded with the encoder
    recorded in the checkpoint.

    Args:
        ckpt: checkpoint of a t2igan run.
        captions: one grid row each.
        num: images per caption (random styles: the same noise in every row).
        seed: seed of the noise.
        out: output folder.
        device: torch device.
        style_images: style transfer (Reed et al. 2016, Section 4.4; needs a style-encoder
            checkpoint): s = S(x) for each image x, then x_hat = G(s, phi(t)). The grid's first
            row shows the query images, then one row per caption (the paper's Figure 6).
        style_steps: with two ``style_images``, interpolate their styles in this many steps
            along each row instead, ``G((1 - a) S(x1) + a S(x2), phi(t))``.
        style_rescale: give each style vector the noise's mean length (not in the paper; see
            ``StyleEncoderGAN``); None: as the checkpoint's ``style_rescale``.
    """
    from t2igan.callbacks.figures import labelled_grid
    from t2igan.callbacks.interpolation import lerp

    model = load_model(ckpt, device)
    spec = model.hparams.get("text_encoder")
    if spec is None:
        raise ValueError(f"{ckpt} does not record its text encoder; cannot embed new captions")
    text = torch.from_numpy(encoder_from_spec(spec).encode(captions))
    top, labels = None, list(captions)
    if style_images:
        if not hasattr(model, "encode_style"):
            raise ValueError(
                f"{ckpt} has no style encoder: train one on this GAN with "
                "`t2igan fit --config experiments/style_encoder.yaml "
                f"--model.init_args.generator_ckpt {ckpt}` and pass its checkpoint"
            )
        queries = torch.stack([load_image(p, model.image_size) for p in style_images])
        styles = model.encode_style(queries, style_rescale)  # (Q, z_dim)
        top = queries
        labels.insert(0, "query images")
        if style_steps:
            if len(style_images) != 2 or style_steps < 2:
                raise ValueError(
                    "style interpolation takes two --style-image and --style-steps >= 2"
                )
            styles = lerp(styles[:1], styles[1:], style_steps)  # (K, z_dim)
            blank = torch.ones(style_steps - 2, *queries.shape[1:])  # white between the two
            top = torch.cat([queries[:1], blank, queries[1:]])
            labels[0] = "style images (left to right)"
        noise = styles
    else:
        g = torch.Generator().manual_seed(seed)
        noise = model.sample_noise(num, generator=g)
    cols = len(noise)
    # (rows * cols) images: the same noise (style) in every row, one caption per row
    images = model.sample(text.repeat_interleave(cols, 0), noise.repeat(len(captions), 1))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "grid.png"]
    grid = images if top is None else torch.cat([top.to(images), images])
    labelled_grid(grid, cols, labels).save(paths[0])
    for k, img in enumerate(images):
        path = out_dir / f"c{k // cols:02d}_i{k % cols:02d}.png"
        labelled_grid(img[None], 1).save(path)
        paths.append(path)
    return paths


def generate_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="t2igan generate", description="Draw images for captions from a trained checkpoint."
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint of a t2igan run")
    parser.add_argument("--caption", action="append", required=True,
                        help="a caption (repeat for several); one grid row each")  # fmt: skip
    parser.add_argument("--num", type=int, default=8, help="images per caption")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--out", default="out", help="output folder")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--style-image", action="append", default=None,
                        help="style transfer (style-encoder checkpoint): draw each caption in "
                        "this image's style; repeat for several (one column each)")  # fmt: skip
    parser.add_argument("--style-steps", type=int, default=0,
                        help="with two --style-image: interpolate between their styles in this "
                        "many steps")  # fmt: skip
    parser.add_argument("--style-rescale", action=argparse.BooleanOptionalAction, default=None,
                        help="scale each style vector S(x) to the noise's mean length (not in "
                        "the paper; default: the checkpoint's style_rescale)")  # fmt: skip
    a = parser.parse_args(argv)
    paths = generate(a.ckpt, a.caption, a.num, a.seed, a.out, a.device, a.style_image,
                     a.style_steps, a.style_rescale)  # fmt: skip
    print(f"wrote {len(paths)} images to {Path(a.out)}/ (grid: {paths[0]})")


#: Subcommands beside LightningCLI's fit / validate / test / predict: name -> main(argv).
SUBCOMMANDS = {
    "generate": generate_main,
    "prepare": prepare_main,
    "download": download_main,
    "embed": embed_main,
}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        SUBCOMMANDS[sys.argv[1]](sys.argv[2:])
    else:
        cli()


if __name__ == "__main__":
    main()
