"""The ``t2igan`` command: LightningCLI (fit, validate, test, predict) plus ``generate``.

t2igan fit --config experiments/quickstart.yaml
t2igan fit --config experiments/quickstart.yaml --ckpt_path last      # resume exactly
t2igan generate --ckpt RUN/checkpoints/last.ckpt --caption "a bird with a red body" --out out/
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import torch
from lightning.pytorch.cli import LightningCLI

from t2igan.data import T2IDataModule
from t2igan.data.text import encoder_from_spec
from t2igan.models.base import TextToImageGAN


class T2IGANCLI(LightningCLI):
    """LightningCLI with the data module's text size, image size and text encoder linked to the
    model, so a config states them once."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.image_size", "model.init_args.image_size")
        parser.link_arguments("data.text_dim", "model.init_args.text_dim", apply_on="instantiate")
        parser.link_arguments(
            "data.text_encoder_spec", "model.init_args.text_encoder", apply_on="instantiate"
        )


def cli(args: list[str] | None = None) -> T2IGANCLI:
    return T2IGANCLI(
        TextToImageGAN,
        T2IDataModule,
        subclass_mode_model=True,
        # GANs own two optimisers: a --optimizer would silently replace them, so there is none.
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


def load_model(ckpt: str | Path, device: str = "cpu") -> TextToImageGAN:
    """Load any t2igan model from a checkpoint (the class is recorded in it)."""
    meta = torch.load(ckpt, map_location="cpu", weights_only=False).get("t2igan")
    if meta is None:
        raise ValueError(f"{ckpt} is not a t2igan checkpoint (no 't2igan' entry)")
    module, _, name = meta["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls.load_from_checkpoint(ckpt, map_location=device).eval()


def generate(
    ckpt: str, captions: list[str], num: int = 8, seed: int = 0, out: str = "out",
    device: str = "cpu",
) -> list[Path]:  # fmt: skip
    """Write ``num`` images per caption (``out/grid.png`` and ``out/cCC_iII.png``); returns the
    paths written. Captions are embedded with the encoder recorded in the checkpoint."""
    from t2igan.callbacks.figures import labelled_grid

    model = load_model(ckpt, device)
    spec = model.hparams.get("text_encoder")
    if spec is None:
        raise ValueError(f"{ckpt} does not record its text encoder; cannot embed new captions")
    text = torch.from_numpy(encoder_from_spec(spec).encode(captions))
    g = torch.Generator().manual_seed(seed)
    noise = model.sample_noise(num, generator=g).repeat(len(captions), 1)  # same noise per row
    images = model.sample(text.repeat_interleave(num, 0), noise)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "grid.png"]
    labelled_grid(images, num, captions).save(paths[0])
    for k, img in enumerate(images):
        path = out_dir / f"c{k // num:02d}_i{k % num:02d}.png"
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
    a = parser.parse_args(argv)
    paths = generate(a.ckpt, a.caption, a.num, a.seed, a.out, a.device)
    print(f"wrote {len(paths)} images to {Path(a.out)}/ (grid: {paths[0]})")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "generate":
        generate_main(sys.argv[2:])
    else:
        cli()


if __name__ == "__main__":
    main()
