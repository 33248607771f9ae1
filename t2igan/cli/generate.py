"""``t2igan generate``: draw images for your own captions (and boxes, keypoints, style images)
from a checkpoint, in batches, to a grid and one file per image.

t2igan generate --ckpt RUN/checkpoints/last.ckpt --caption "a bird with a red body" --out out/
t2igan generate --ckpt STYLE_RUN/checkpoints/last.ckpt --style-image bird.png --caption "..."
t2igan generate --ckpt GAWWN_RUN/checkpoints/last.ckpt --caption "..." --box 0.1,0.2,0.5,0.4
t2igan generate --ckpt GAWWN_KP_RUN/checkpoints/last.ckpt --caption "..." --keypoints parts.json
t2igan generate --ckpt GAWWN_KP_RUN/... --keypoint-generator KG_RUN/... --caption "..." [--keypoints]
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from t2igan.command import (
    CommandParser,
    warn,
)
from t2igan.data.contract import CUB_PARTS
from t2igan.models.base import TextToImageModel
from t2igan.pipeline import Pipeline, box_tensor, keypoints_tensor

#: Images smaller than this many pixels a side are written upscaled (nearest neighbour, by a
#: whole factor, so pixels stay square) by ``generate``: a 32 px sample is not a thumbnail.
READABLE_SIDE = 128


#: Images ``generate`` draws and writes at a time: its memory does not grow with ``--num``.
GENERATE_BATCH = 64


#: The most columns (images per caption) and rows (captions, or caption and location pairs) that
#: ``generate``'s ``grid.png`` shows: the first ones; every image is also written on its own.
GRID_COLUMNS = 16


GRID_ROWS = 16


#: The files ``generate`` writes: the grid, and image II of caption CC.
GENERATED_FILE = re.compile(r"(grid|c\d{2,}_i\d{2,})((_location)?\.png|\.json)")


def keypoints_json(keypoints: torch.Tensor, names: tuple[str, ...]) -> str:
    """(K, 3) keypoints as ``--keypoints``' JSON: visible part name -> [x, y] (4 decimals)."""
    parts = {n: [round(float(x), 4), round(float(y), 4)]
             for n, (x, y, v) in zip(names, keypoints.tolist()) if v > 0}  # fmt: skip
    return json.dumps(parts, indent=1) + "\n"


def open_image(path: str | Path):
    """The image file ``path`` as an RGB PIL image (a clear error when it is not one)."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise FileNotFoundError(f"style image {path} does not exist")
    try:
        return Image.open(path).convert("RGB")
    except (UnidentifiedImageError, OSError):
        raise ValueError(f"style image {path} is not an image file (PNG, JPEG, ...)") from None


def square_tensor(img, size: int) -> torch.Tensor:
    """A PIL image as a (3, size, size) tensor in [-1, 1]: centre-cropped to a square, then
    resized (how a query image for style transfer reaches the style encoder)."""
    from PIL import Image

    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 127.5 - 1


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """An image file as a (3, size, size) tensor in [-1, 1] (see :func:`square_tensor`)."""
    return square_tensor(open_image(path), size)


def readable(images: torch.Tensor) -> torch.Tensor:
    """``images`` (N, 3, H, W) upscaled by the smallest whole factor that makes them at least
    :data:`READABLE_SIDE` pixels a side, with nearest neighbour (no invented detail)."""
    scale = math.ceil(READABLE_SIDE / min(images.shape[-2:]))
    return F.interpolate(images, scale_factor=scale, mode="nearest") if scale > 1 else images


def parse_box(text: str) -> torch.Tensor:
    """``--box x,y,w,h`` (normalised, top-left origin) as a (4,) tensor; a ValueError says what
    is wrong with it (not four numbers, not finite, zero area, outside the image)."""
    values = text.split(",")
    try:
        values = [float(v) for v in values]
    except ValueError:
        values = None  # box_tensor says what to give
    return box_tensor(values, f"--box {text}")


def read_keypoints(path: str, part_names: tuple[str, ...] = CUB_PARTS) -> torch.Tensor:
    """``--keypoints parts.json``: a JSON object of part name -> [x, y] (normalised) as a
    (K, 3) tensor (x, y, visible) in ``part_names``' order; parts it leaves out are invisible."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--keypoints {path} does not exist")
    try:
        parts = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"--keypoints {path} is not JSON ({err})") from None
    return keypoints_tensor(parts, part_names, f"--keypoints {path}")


def generate(
    ckpt: str, captions: list[str], num: int = 8, seed: int = 0, out: str = "out",
    device: str = "cpu", style_images: list[str] | None = None, style_steps: int = 0,
    style_rescale: bool | None = None, text_encoder: str | None = None,
    boxes: list[str] | None = None, keypoint_files: list[str] | None = None,
    keypoint_generator: str | None = None,
) -> list[Path]:  # fmt: skip
    """Write images for ``captions`` (``out/grid.png`` and ``out/cCC_iII.png``, one grid row per
    caption); returns the paths written, the grid first. Captions are embedded with the encoder
    recorded in the checkpoint (and cut, with a warning, to the length it reads). Images under
    :data:`READABLE_SIDE` pixels are written upscaled. They are drawn and written
    :data:`GENERATE_BATCH` at a time, so memory does not grow with ``num`` (only the noise, one
    vector per column); the grid shows the first :data:`GRID_ROWS` rows and
    :data:`GRID_COLUMNS` columns (every image is also its own file). Files of an earlier
    ``generate`` in ``out`` that this one does not overwrite are removed (and named in a
    warning), so ``out`` holds this run's images only.

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
        text_encoder: a char-CNN-RNN encoder checkpoint to embed the captions with instead of
            the recorded encoder: for a model trained on the papers' precomputed embeddings, the
            matching authors' encoder converted by ``python -m t2igan.models.char_cnn_rnn_t7``.
        boxes: for a box-conditional model (GAWWN): normalised ``x,y,w,h`` boxes; one grid row
            per (caption, box). The images are also written with the box drawn on a copy
            (``grid_location.png``, ``cCC_iII_location.png``).
        keypoint_files: for a keypoint-conditional model: JSON files of part -> [x, y]
            (:func:`read_keypoints`); one grid row per (caption, file), copies as for boxes.
            The keypoints of each image are written beside it (``cCC_iII.json``, the same
            format, so a file can be passed back).
        keypoint_generator: a ``GAWWNKeypointGenerator`` checkpoint for a keypoint model: the
            keypoints are drawn from the caption (and the noise, the image's own), all of them,
            or with ``keypoint_files`` the parts each file gives are kept and the rest drawn.
    """
    from t2igan.callbacks.figures import labelled_grid
    from t2igan.callbacks.interpolation import lerp
    from t2igan.callbacks.location import draw_location

    if num < 1:
        raise ValueError(f"--num is the number of images per caption: at least 1, got {num}")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out} is a file: pass a folder (it is made if missing)")
    pictures = [open_image(p) for p in style_images or []]  # bad files fail before the model loads
    for f in keypoint_files or []:  # read once the model says which parts it has
        if not Path(f).is_file():
            raise FileNotFoundError(f"--keypoints {f} does not exist")
    boxes_asked = [parse_box(b) for b in boxes or []]
    pipe = Pipeline.from_checkpoint(ckpt, device, text_encoder, keypoint_generator)
    model, kg, names = pipe.model, pipe.keypoint_generator, pipe.part_names
    asked = {"boxes": boxes_asked,
             "keypoints": [read_keypoints(f, names) for f in keypoint_files or []]}  # fmt: skip
    if kg is None:  # with G_k, a file that names no part has them all drawn from the caption
        for f, kp in zip(keypoint_files or [], asked["keypoints"]):
            if not kp[:, 2].any():
                warn("generate", f"--keypoints {f} names no part: its images are drawn with "
                     'no part placed (give part -> [x, y], e.g. {"beak": [0.7, 0.3]})')  # fmt: skip
    if kg is not None and not asked["keypoints"]:  # text only: nothing given, all drawn
        asked["keypoints"] = [torch.zeros(model.num_parts, 3)]
    key, where = check_location(ckpt, model, asked)
    per_row = pipe.embed(captions)  # one row per caption: its text (and word ids)
    top, labels = None, [pipe.encoder.truncate(c) for c in captions]
    if style_images:
        if not hasattr(model, "encode_style"):
            raise ValueError(
                f"{ckpt} has no style encoder: train one on this GAN with "
                "`t2igan fit --config experiments/style_encoder.yaml "
                f"--model.init_args.generator_ckpt {ckpt}` and pass its checkpoint"
            )
        queries = torch.stack([square_tensor(p, model.image_size) for p in pictures])
        styles = model.encode_style(queries, style_rescale)  # (Q, z_dim)
        top = queries[:GRID_COLUMNS]
        if style_steps:
            if len(style_images) != 2 or style_steps < 2:
                raise ValueError(
                    "style interpolation takes two --style-image and --style-steps >= 2"
                )
            styles = lerp(styles[:1], styles[1:], style_steps)  # (K, z_dim)
            # the two images at the ends of the row, white between (as far as the grid shows)
            top = torch.ones(min(style_steps, GRID_COLUMNS), *queries.shape[1:])
            top[0] = queries[0]
            if style_steps <= GRID_COLUMNS:
                top[-1] = queries[1]
        noise = styles
    else:
        noise = pipe.noise(num, seed)
    cols = len(noise)
    # one row per caption, or per (caption, location): the row's text, word ids and location
    if key:
        flag = {"boxes": boxes, "keypoints": keypoint_files}[key]
        word = {"boxes": "box", "keypoints": "keypoints"}[key]
        if kg is not None:
            flag = [f"{f} completed by G_k" for f in flag] if flag else ["drawn by G_k"]
            word = "keypoints"
        labels = [f"{c} | {word} {f}" for c in labels for f in flag]
        per_row = {k: v.repeat_interleave(len(where), 0) for k, v in per_row.items()}
        per_row[key] = where.repeat(len(captions), *[1] * (where.dim() - 1))
    rows = len(per_row["text"])
    # The images are drawn and written GENERATE_BATCH at a time (memory stays flat whatever
    # --num); the grid keeps the first GRID_ROWS x GRID_COLUMNS of them.
    shown_rows, shown_cols = min(rows, GRID_ROWS), min(cols, GRID_COLUMNS)
    grids = {}  # suffix -> the images the grid shows, filled as they are drawn
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"grid{suffix}.png" for suffix in ("", "_location")[: 1 + bool(key)]]
    kg_noise = torch.Generator().manual_seed(seed + 1)
    for first in range(0, rows * cols, GENERATE_BATCH):
        k = torch.arange(first, min(first + GENERATE_BATCH, rows * cols))
        r, c = k // cols, k % cols  # image k: row k // cols, column k % cols
        cond = {name: v[r] for name, v in per_row.items() if name != "text"}
        z = noise[c.to(noise.device)]  # the same noise (style) in every row
        # with G_k, the given parts kept and the rest drawn from the caption and noise
        drawn, cond = pipe.draw(per_row["text"][r], z, kg_noise, **cond)
        images = {"": readable(drawn)}
        if key:  # the same images with the location drawn on a copy
            images["_location"] = draw_location(images[""], key, cond[key])
        for j, (row, col) in enumerate(zip(r.tolist(), c.tolist())):
            stem = f"c{row:02d}_i{col:02d}"
            for suffix, batch in images.items():
                paths.append(out_dir / f"{stem}{suffix}.png")
                labelled_grid(batch[j : j + 1], 1).save(paths[-1])
                if row < shown_rows and col < shown_cols:
                    grid = grids.setdefault(suffix, batch.new_zeros(shown_rows * shown_cols,
                                                                    *batch.shape[1:]))  # fmt: skip
                    grid[row * shown_cols + col] = batch[j]
            if key == "keypoints":  # the keypoints it was drawn from, as --keypoints reads them
                paths.append(out_dir / f"{stem}.json")
                paths[-1].write_text(keypoints_json(cond[key][j], names))
    shown_labels = labels[:shown_rows]
    for suffix, grid in grids.items():
        if top is not None:
            grid = torch.cat([readable(top), grid])
        row_labels = shown_labels if top is None else ["query images", *shown_labels]
        if style_steps and top is not None:
            row_labels[0] = "style images (left to right)"
        labelled_grid(grid, shown_cols, row_labels).save(out_dir / f"grid{suffix}.png")
    remove_earlier_files(out_dir, paths)
    return paths


def check_location(
    ckpt: str, model: TextToImageModel, asked: dict
) -> tuple[str | None, torch.Tensor]:
    """The location conditioning ``model`` takes and the stacked ``asked`` values of it, or a
    ValueError when it is missing or when a location the model does not take is given."""
    flags = {"boxes": "--box x,y,w,h", "keypoints": "--keypoints parts.json"}
    name = f"{ckpt} ({type(model).__name__})"
    for k, values in asked.items():
        if values and k not in model.takes:
            raise ValueError(f"{name} takes {' and '.join(model.takes)} only, not {k}: leave "
                             f"out {flags[k].split()[0]}")  # fmt: skip
    key = next((k for k in model.takes[1:] if k in flags), None)
    if key is None:
        return None, torch.empty(0)
    if not asked[key]:
        raise ValueError(f"{name} draws where it is told: pass {flags[key]} (repeat for rows)")
    where = torch.stack(asked[key])
    if key == "keypoints" and where.shape[1] != getattr(model, "num_parts", where.shape[1]):
        raise ValueError(f"{name} has {model.num_parts} parts, not {where.shape[1]}")
    return key, where


def remove_earlier_files(out_dir: Path, paths: list[Path]) -> None:
    """Remove the files an earlier ``generate`` wrote to ``out_dir`` beside ``paths`` (more
    captions or images than now), naming them in a warning."""
    written = {p.name for p in paths}
    earlier = sorted(p.name for p in out_dir.iterdir()
                     if GENERATED_FILE.fullmatch(p.name) and p.name not in written)  # fmt: skip
    for name in earlier:
        (out_dir / name).unlink()
    if earlier:
        shown = ", ".join(earlier[:4]) + (", ..." if len(earlier) > 4 else "")
        warn("generate", f"removed {files_said(earlier)} of an earlier run from {out_dir}/ "
             f"({shown}), so it holds this run's only")  # fmt: skip


def files_said(names: list[str]) -> str:
    """``N images`` (the drawn images, ``cCC_iII.png``; not the grids or the copies with the
    location drawn on), and ``and M keypoint files`` (JSON) when there are any."""
    images = sum(bool(re.fullmatch(r"c\d+_i\d+\.png", name)) for name in names)
    others = sum(name.endswith(".json") for name in names)
    return f"{images} images" + (f" and {others} keypoint files (JSON)" if others else "")


def generate_summary(out: str | Path, paths: list[Path]) -> str:
    """What ``t2igan generate`` says it wrote: how many images and other files, where, and
    what the grid shows when it holds only the first :data:`GRID_ROWS` x :data:`GRID_COLUMNS`."""
    cells = [m for p in paths if (m := re.fullmatch(r"c(\d+)_i(\d+)\.png", p.name))]
    rows = 1 + max(int(m[1]) for m in cells)
    cols = 1 + max(int(m[2]) for m in cells)
    line = f"wrote {files_said([p.name for p in paths])} to {Path(out)}/ (grid: {paths[0]}"
    cut = [f"the first {limit} of {n} {what}" for n, limit, what in
           ((cols, GRID_COLUMNS, "images per row"), (rows, GRID_ROWS, "rows")) if n > limit]  # fmt: skip
    if cut:
        line += f" shows {' and '.join(cut)}; every image is its own cCC_iII.png file"
    return line + ")"


def generate_main(argv: list[str]) -> None:
    parser = CommandParser(
        prog="t2igan generate", description="Draw images for captions from a trained checkpoint."
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint of a t2igan run")
    parser.add_argument("--caption", action="append", required=True,
                        help="a caption (repeat for several); one grid row each")  # fmt: skip
    parser.add_argument("--num", type=int, default=8, help="images per caption")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--out", default="out", help="output folder (earlier generated images "
                        "in it are replaced)")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--text-encoder", default=None,
                        help="char-CNN-RNN encoder checkpoint to embed the captions with instead "
                             "of the recorded one (e.g. the authors' converted encoder for a "
                             "model trained on their precomputed embeddings)")  # fmt: skip
    parser.add_argument("--style-image", action="append", default=None,
                        help="style transfer (style-encoder checkpoint): draw each caption in "
                        "this image's style; repeat for several (one column each)")  # fmt: skip
    parser.add_argument("--style-steps", type=int, default=0,
                        help="with two --style-image: interpolate between their styles in this "
                        "many steps")  # fmt: skip
    parser.add_argument("--style-rescale", action=argparse.BooleanOptionalAction, default=None,
                        help="scale each style vector S(x) to the noise's mean length (not in "
                        "the paper; default: the checkpoint's style_rescale)")  # fmt: skip
    parser.add_argument("--box", action="append", default=None,
                        help="box-conditional models (GAWWN): where to draw, normalised x,y,w,h "
                        "(e.g. 0.1,0.2,0.5,0.4); repeat for one row per box")  # fmt: skip
    parser.add_argument("--keypoints", action="append", default=None,
                        help="keypoint-conditional models (GAWWN): a JSON file of CUB part name "
                        '-> normalised [x, y], e.g. {"beak": [0.7, 0.3]}; parts left out are '
                        "invisible; repeat for one row per file")  # fmt: skip
    parser.add_argument("--keypoint-generator", default=None,
                        help="a GAWWNKeypointGenerator checkpoint for a keypoint model: draw the "
                        "keypoints from the caption, or with --keypoints keep the parts given "
                        "and draw the rest")  # fmt: skip
    a = parser.parse_args(argv)
    paths = generate(a.ckpt, a.caption, a.num, a.seed, a.out, a.device, a.style_image,
                     a.style_steps, a.style_rescale, a.text_encoder, a.box,
                     a.keypoints, a.keypoint_generator)  # fmt: skip
    print(generate_summary(a.out, paths))
