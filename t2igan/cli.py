"""The ``t2igan`` command: LightningCLI (fit, validate, test, predict) plus ``generate``,
``prepare``, ``download`` and ``embed``. Errors are one line (``t2igan <command>: ...``);
``--debug`` or ``T2IGAN_DEBUG=1`` shows the traceback.

t2igan fit --config experiments/quickstart.yaml
t2igan fit --config experiments/quickstart.yaml --ckpt_path last      # resume exactly
t2igan generate --ckpt RUN/checkpoints/last.ckpt --caption "a bird with a red body" --out out/
t2igan generate --ckpt STYLE_RUN/checkpoints/last.ckpt --style-image bird.png --caption "..."
t2igan generate --ckpt GAWWN_RUN/checkpoints/last.ckpt --caption "..." --box 0.1,0.2,0.5,0.4
t2igan generate --ckpt GAWWN_KP_RUN/checkpoints/last.ckpt --caption "..." --keypoints parts.json
t2igan generate --ckpt GAWWN_KP_RUN/... --keypoint-generator KG_RUN/... --caption "..." [--keypoints]
t2igan app --ckpt GAWWN_KP_RUN/checkpoints/last.ckpt --keypoint-generator KG_RUN/...
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import re
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from jsonargparse import Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from t2igan.callbacks.checkpoint import (
    check_ckpt_path,
    checkpoint_dir,
    resume_path,
    use_atomic_checkpoints,
)
from t2igan.callbacks.location import drawable, part_names
from t2igan.callbacks.run_config import SaveRunConfig
from t2igan.classpath import check_class_path, check_class_paths, import_class, imported_class
from t2igan.command import (
    USER_ERRORS,
    CommandParser,
    closest,
    command_of,
    debug_requested,
    run_command,
    warn,
)
from t2igan.data import T2IDataModule
from t2igan.data.contract import CUB_PARTS
from t2igan.data.download import download_main
from t2igan.data.embed import embed_main
from t2igan.data.prepare import prepare_main
from t2igan.data.text import encoder_from_spec
from t2igan.evaluate import evaluate_main
from t2igan.models.base import TextToImageModel, read_checkpoint
from t2igan.models.gawwn_keypoints import DRAW_VISIBLE
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
        try:
            parser.validate(self.config)
        except (TypeError, KeyError, ValueError) as err:  # as jsonargparse's own parse_args
            parser.error(str(err), err)

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoints(trainer)
        return trainer

    def _parse_ckpt_path(self) -> None:
        """LightningCLI reads an explicit ``--ckpt_path``'s hyper-parameters here, before
        ``before_fit``. The file is checked first: one line for a file that is not a checkpoint,
        and its class paths are refused before jsonargparse would import them unless they are
        t2igan's. ``fit`` then builds the model from its config and command line, as
        ``--ckpt_path last`` does, so a resumed run takes changed arguments (a new learning rate
        applies to the restored optimisers); validate, test and predict take the checkpoint's."""
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path is None or path == "last":  # `last` is resolved in before_fit
            return
        ckpt = check_ckpt_path(path)
        check_class_paths(ckpt.get("hyper_parameters"), source=f"--ckpt_path {path}")
        if subcommand != "fit":
            super()._parse_ckpt_path()

    def _check_ckpt_path(self) -> None:
        config = self.config_init[self.subcommand]
        config["ckpt_path"] = resume_path(checkpoint_dir(self.trainer), config.get("ckpt_path"))

    before_fit = before_validate = before_test = before_predict = _check_ckpt_path


def cli(args: list[str] | None = None) -> T2IGANCLI:
    return T2IGANCLI(
        TextToImageModel,
        T2IDataModule,
        subclass_mode_model=True,
        # GANs own two optimisers: a --optimizer would silently replace them, so there is none.
        auto_configure_optimizers=False,
        save_config_callback=SaveRunConfig,  # also sends the whole config to W&B loggers
        save_config_kwargs={"overwrite": True},
        parser_class=T2IGANArgumentParser,  # leads usage errors with the option at fault
        args=args,
    )


class T2IGANArgumentParser(LightningArgumentParser):
    """jsonargparse's usage errors led by one line that names the option at fault (and the
    closest valid one), in place of the usage block of every option; its message follows."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("prog", "t2igan")  # not the script's name (cli.py under python -m)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error or os.environ.get("JSONARGPARSE_DEBUG"):
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"{prog}: {lead_line(parser, message)}\n")
        sys.stderr.write(f"error: {message}\n(see {prog} --help)\n")
        self.exit(2)


def lead_line(parser: LightningArgumentParser, message: str) -> str:
    """The one useful line of a jsonargparse error ``message``: an unknown option and the
    closest valid one, or the key whose value is invalid."""
    options = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    if m := re.search(r"unrecognized arguments: (--\S+)", message):
        return f"unknown option {m[1]}{closest(m[1].split('=')[0], options)}"
    if m := re.search(r"does not accept option '(\S+)'", message):
        return f"unknown option --{m[1]}{closest('--' + m[1], options)}"
    key = re.search(r'Parser key "([^"]+)"', message)
    m = re.search(r"class_path '([\w.]+)':\s*Option '(\w+)' is not accepted", message)
    if key and m:  # jsonargparse imported the class already: looked up, never imported here
        cls = imported_class(m[1])
        near = closest(m[2], inspect.signature(cls).parameters) if cls is not None else ""
        return (f"unknown option --{key[1]}.init_args.{m[2]}: {m[1].rpartition('.')[2]} takes "
                f"no argument '{m[2]}'{near}")  # fmt: skip
    given = re.search(r"Given value: (.*)", message)
    if key and given:
        return f"invalid value for --{key[1]}: {given[1]}"
    return message.strip().splitlines()[0]


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


def load_model(ckpt: str | Path, device: str | torch.device = "cpu") -> TextToImageModel:
    """Load any t2igan model from a checkpoint (the class is recorded in it)."""
    how = "pass a checkpoint that `t2igan fit` wrote, e.g. runs/quickstart/checkpoints/last.ckpt"
    checkpoint, class_path = read_checkpoint(ckpt, "checkpoint", how)
    check_classes(checkpoint, class_path, f"checkpoint {ckpt}")
    if class_path.endswith(".GAWWNKeypointGenerator"):
        raise ValueError(f"{ckpt} is a GAWWN keypoint generator (it draws keypoints, not images): "
                         "pass it as --keypoint-generator, with a GAWWNKeypoints checkpoint as "
                         "--ckpt")  # fmt: skip
    cls = import_class(class_path, TextToImageModel, source=f"checkpoint {ckpt}")
    return cls.load_from_checkpoint(ckpt, map_location=device, weights_only=True).eval()


def check_classes(checkpoint: dict, class_path: str, source: str) -> None:
    """Every class a checkpoint names (its model, and in its hyper-parameters its text
    encoder, a style encoder's GAN, LightningCLI's record of the model) checked before any is
    imported: t2igan's own, or already imported (:mod:`t2igan.classpath`)."""
    check_class_path(class_path, source=source)
    check_class_paths(checkpoint.get("hyper_parameters"), source=source)


def load_keypoint_generator(ckpt: str | Path, device: str | torch.device = "cpu"):
    """Load a ``GAWWNKeypointGenerator`` checkpoint (``--keypoint-generator``)."""
    from t2igan.models.gawwn_keypoints import GAWWNKeypointGenerator

    how = ("train one with `t2igan fit --config experiments/gawwn_keypoint_generator.yaml` and "
           "pass runs/gawwn_keypoint_generator/checkpoints/last.ckpt")  # fmt: skip
    checkpoint, class_path = read_checkpoint(ckpt, "--keypoint-generator", how)
    check_classes(checkpoint, class_path, f"--keypoint-generator {ckpt}")
    cls = import_class(class_path, source=f"--keypoint-generator {ckpt}")
    if not issubclass(cls, GAWWNKeypointGenerator):
        raise ValueError(f"--keypoint-generator {ckpt} holds a {class_path.rpartition('.')[2]}, "
                         f"not a GAWWNKeypointGenerator: {how}")  # fmt: skip
    return cls.load_from_checkpoint(ckpt, map_location=device, weights_only=True).eval()


def check_keypoint_generator(ckpt: str, model, kg_ckpt: str, kg) -> None:
    """A ValueError when the keypoint generator ``kg`` cannot feed the image ``model``: a model
    that takes no keypoints, another number of parts or another text encoder."""
    name = f"{ckpt} ({type(model).__name__})"
    if "keypoints" not in model.takes:
        raise ValueError(f"--keypoint-generator draws keypoints for a keypoint model "
                         f"(GAWWNKeypoints); {name} takes {' and '.join(model.takes)}")  # fmt: skip
    if kg.num_parts != model.num_parts:
        raise ValueError(f"--keypoint-generator {kg_ckpt} draws {kg.num_parts} parts, {name} "
                         f"takes {model.num_parts}")  # fmt: skip
    mine, theirs = kg.hparams.get("text_encoder"), model.hparams.get("text_encoder")
    if mine != theirs:
        raise ValueError(f"--keypoint-generator {kg_ckpt} and {ckpt} embed captions with "
                         f"different text encoders ({(mine or {}).get('class_path')} vs "
                         f"{(theirs or {}).get('class_path')}): train both on the same data "
                         "settings")  # fmt: skip


def keypoints_json(keypoints: torch.Tensor, names: tuple[str, ...]) -> str:
    """(K, 3) keypoints as ``--keypoints``' JSON: visible part name -> [x, y] (4 decimals)."""
    parts = {n: [round(float(x), 4), round(float(y), 4)]
             for n, (x, y, v) in zip(names, keypoints.tolist()) if v > 0}  # fmt: skip
    return json.dumps(parts, indent=1) + "\n"


def torch_device(device: str) -> torch.device:
    """``device`` as a torch device this machine has (a ValueError says why it is not)."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"--device {device} is not a torch device (cpu, cuda, cuda:1, mps, ...)"
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {device}: CUDA is not available here; use --device cpu")
        if (dev.index or 0) >= count:
            raise ValueError(f"--device {device}: this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}")  # fmt: skip
    return dev


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


def fit_to_encoder(encoder, captions: list[str]) -> list[str]:
    """``captions`` checked (none empty) and cut to what ``encoder`` reads, with a warning for
    each caption that is cut (the encoder would ignore the rest silently)."""
    cut = []
    for i, caption in enumerate(captions, 1):
        if not caption.strip():
            raise ValueError(f"caption {i} is empty: give every --caption some text")
        short = encoder.truncate(caption)
        if short != caption:
            warn("generate", f"caption {i} is longer than the {encoder.max_tokens} tokens the "
                 f"text encoder reads: it is cut after ...{short[-40:]!r}")  # fmt: skip
        cut.append(short)
    return cut


def parse_box(text: str) -> torch.Tensor:
    """``--box x,y,w,h`` (normalised, top-left origin) as a (4,) tensor; a ValueError says what
    is wrong with it (not four numbers, zero area, outside the image)."""
    try:
        x, y, w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(
            f"--box {text}: give four numbers x,y,w,h (normalised, e.g. 0.1,0.2,0.5,0.4)"
        ) from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"--box {text}: x, y, w and h must be finite numbers (normalised, e.g. "
                         "0.1,0.2,0.5,0.4)")  # fmt: skip
    if w <= 0 or h <= 0:
        raise ValueError(f"--box {text} has zero area (width {w}, height {h}): w and h must be > 0")
    if x < 0 or y < 0 or x + w > 1 or y + h > 1:
        raise ValueError(f"--box {text} reaches outside the image: need 0 <= x, y and x + w, "
                         f"y + h <= 1 (here x + w = {x + w:g}, y + h = {y + h:g})")  # fmt: skip
    return torch.tensor([x, y, w, h])


def read_keypoints(path: str, part_names: tuple[str, ...] = CUB_PARTS) -> torch.Tensor:
    """``--keypoints parts.json``: a JSON object of part name -> [x, y] (normalised) as a
    (K, 3) tensor (x, y, visible) in ``part_names``' order; parts it leaves out are invisible."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--keypoints {path} does not exist")
    try:
        parts = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"--keypoints {path} is not JSON ({err})") from None
    if not isinstance(parts, dict):
        raise ValueError(f'--keypoints {path}: give an object of part -> [x, y], e.g. '
                         f'{{"beak": [0.7, 0.3], "tail": [0.2, 0.6]}}')  # fmt: skip
    kp = torch.zeros(len(part_names), 3)
    for name, xy in parts.items():
        if name not in part_names:
            raise ValueError(
                f"--keypoints {path}: unknown part {name!r}; the parts are " + ", ".join(part_names)
            )
        ok = isinstance(xy, list) and len(xy) == 2 and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in xy)  # fmt: skip
        if not ok:
            raise ValueError(f"--keypoints {path}: part {name!r} must be [x, y], got {xy!r}")
        if not all(math.isfinite(v) for v in xy):  # JSON as Python reads it allows NaN, Infinity
            raise ValueError(f"--keypoints {path}: part {name!r} at {xy} is not a finite point "
                             "(x and y are numbers in [0, 1])")  # fmt: skip
        if not all(0 <= v <= 1 for v in xy):
            raise ValueError(f"--keypoints {path}: part {name!r} at {xy} is outside the image "
                             "(x and y are normalised to [0, 1])")  # fmt: skip
        kp[part_names.index(name)] = torch.tensor([*xy, 1.0])
    return kp


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
    model = load_model(ckpt, torch_device(device))
    kg = None
    if keypoint_generator is not None:
        kg = load_keypoint_generator(keypoint_generator, torch_device(device))
        check_keypoint_generator(ckpt, model, keypoint_generator, kg)
    names = part_names(model.num_parts) if "keypoints" in model.takes else CUB_PARTS
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
    spec, source = model.hparams.get("text_encoder"), f"checkpoint {ckpt} (its text encoder)"
    if text_encoder is not None:
        from t2igan.models.char_cnn_rnn import CharCNNEncoder

        spec, source = CharCNNEncoder(text_encoder).spec(), f"--text-encoder {text_encoder}"
    if spec is None:
        raise ValueError(f"{ckpt} does not record its text encoder; cannot embed new captions")
    encoder = encoder_from_spec(spec, source)
    if encoder.dim != model.text_dim:
        raise ValueError(f"{ckpt} takes {model.text_dim}-d text embeddings but its text encoder "
                         f"({spec['class_path']}) gives {encoder.dim}-d ones")  # fmt: skip
    fitted = fit_to_encoder(encoder, captions)
    words = {}
    if "tokens" in model.takes:  # the model reads word ids (its own vocabulary's), uncut
        words["tokens"], cut = model.encode_captions(captions)
        for i in cut:
            warn("generate", f"caption {i + 1} is longer than the {model.max_words} words "
                 f"{type(model).__name__} reads: it is cut")  # fmt: skip
    captions = fitted
    text = torch.from_numpy(encoder.encode(captions))
    top, labels = None, list(captions)
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
        g = torch.Generator().manual_seed(seed)
        noise = model.sample_noise(num, generator=g)
    cols = len(noise)
    # one row per caption, or per (caption, location): the row's text, word ids and location
    per_row = {"text": text, **words}
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
        if kg is not None:  # the given parts kept, the rest drawn from the caption and noise
            kz = z if kg.z_dim == model.z_dim else kg.sample_noise(len(k), generator=kg_noise)
            drawn = kg.complete(per_row["text"][r], kz, cond[key]).cpu()
            cond[key] = drawable(drawn, DRAW_VISIBLE)
        images = {"": readable(model.sample(per_row["text"][r], z, **cond).cpu())}
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
    """``N images`` (PNG files), and ``and M keypoint files`` (JSON) when there are any."""
    images = sum(name.endswith(".png") for name in names)
    others = len(names) - images
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


def app_main(argv: list[str]) -> None:
    from t2igan.app import app_main as run  # Gradio loads only for the page

    run(argv)


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


#: Subcommands beside LightningCLI's fit / validate / test / predict: name -> main(argv).
SUBCOMMANDS = {
    "generate": generate_main,
    "app": app_main,
    "prepare": prepare_main,
    "download": download_main,
    "embed": embed_main,
    "evaluate": evaluate_main,
}


def sets_ckpt_path(argv: list[str]) -> bool:
    """Whether a LightningCLI command line gives ``ckpt_path``, as a flag or in a config file."""
    import yaml

    for flag, value in zip(argv, [*argv[1:], None]):
        if flag.startswith("--ckpt_path"):
            return True
        if flag.startswith("--config="):
            flag, value = flag.split("=", 1)
        if flag in ("-c", "--config") and value and Path(value).is_file():
            config = yaml.safe_load(Path(value).read_text())
            if isinstance(config, dict) and config.get("ckpt_path") is not None:
                return True
    return False


def main(argv: list[str] | None = None) -> None:
    """``t2igan ARGV``: a LightningCLI subcommand or one of :data:`SUBCOMMANDS`, with errors of
    the expected kinds as one line (see :mod:`t2igan.command`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    command = command_of(argv)
    if command == "test" and not sets_ckpt_path(argv[1:]):
        warn("test", "no --ckpt_path, so this scores the model's untrained (initial) weights; "
             "pass --ckpt_path RUN/checkpoints/last.ckpt")  # fmt: skip
    if argv[0] in SUBCOMMANDS:
        run = partial(SUBCOMMANDS[command], argv[1:])
    else:
        run = partial(cli, argv)
    run_command(command, run, debug, (*USER_ERRORS, MisconfigurationException))


if __name__ == "__main__":
    main()
