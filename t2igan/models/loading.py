"""The one checkpoint loader: read a t2igan checkpoint, check the classes it names before any
is imported, build the model and move it to a device. Every command, the page, ``evaluate``,
the figure callbacks and the Python API load models through it."""

from __future__ import annotations

from pathlib import Path

import torch

from t2igan.classpath import check_class_path, check_class_paths, import_class
from t2igan.models.base import TextToImageModel, read_checkpoint


def load_model(ckpt: str | Path, device: str | torch.device = "cpu") -> TextToImageModel:
    """Load any t2igan model from a checkpoint (the class is recorded in it)."""
    how = "pass a checkpoint that `t2igan fit` wrote, e.g. runs/quickstart/checkpoints/last.ckpt"
    checkpoint, class_path = read_checkpoint(ckpt, "checkpoint", how)
    check_classes(checkpoint, f"checkpoint {ckpt}")
    if class_path.endswith(".GAWWNKeypointGenerator"):
        raise ValueError(f"{ckpt} is a GAWWN keypoint generator (it draws keypoints, not images): "
                         "pass it as --keypoint-generator, with a GAWWNKeypoints checkpoint as "
                         "--ckpt")  # fmt: skip
    cls = import_class(class_path, TextToImageModel, source=f"checkpoint {ckpt}")
    return cls.load_from_checkpoint(ckpt, map_location=device, weights_only=True).eval()


def check_classes(checkpoint: dict, source: str) -> None:
    """Every class a checkpoint names (its model in the ``t2igan`` entry, and in its
    hyper-parameters a text encoder, a style encoder's GAN, LightningCLI's record of the model)
    checked before any is imported: t2igan's own, or already imported (:mod:`t2igan.classpath`)."""
    meta = checkpoint.get("t2igan") if isinstance(checkpoint, dict) else None
    if isinstance(meta, dict) and "class_path" in meta:
        check_class_path(meta["class_path"], source=source)
    check_class_paths(checkpoint.get("hyper_parameters"), source=source)


def load_keypoint_generator(ckpt: str | Path, device: str | torch.device = "cpu"):
    """Load a ``GAWWNKeypointGenerator`` checkpoint (``--keypoint-generator``)."""
    from t2igan.models.gawwn_keypoints import GAWWNKeypointGenerator

    how = ("train one with `t2igan fit --config experiments/gawwn_keypoint_generator.yaml` and "
           "pass runs/gawwn_keypoint_generator/checkpoints/last.ckpt")  # fmt: skip
    checkpoint, class_path = read_checkpoint(ckpt, "--keypoint-generator", how)
    check_classes(checkpoint, f"--keypoint-generator {ckpt}")
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
