"""StackGAN's fine-tuned Inception-v3, the network of the birds and flowers Inception scores in
StackGAN's tables (and StackGAN++, AttnGAN, DM-GAN after it), converted from its TensorFlow
checkpoint to a torchvision ``Inception3``:

python -m t2igan.metrics.stackgan_inception \
    inception_finetuned_models/birds_valid299/model.ckpt birds_inception.pt

The checkpoint (``birds_valid299`` or ``flowers_valid299`` of StackGAN-inception-model) is read
with TensorFlow's own reader (``pip install tensorflow-cpu``, needed for this one conversion
only); ``t2igan evaluate --metrics is --is-inception birds_inception.pt`` then scores with it.

What the conversion follows (StackGAN-inception-model's ``inception_score.py`` and the TF-slim
``inception_v3`` it ships):

* the weights restored are the ``<variable>/ExponentialMovingAverage`` shadows, BatchNorm moving
  statistics included, as its ``ExponentialMovingAverage(0.9999).variables_to_restore()``;
* every convolution is conv (no bias) + BatchNorm (epsilon 0.001, no scale: gamma is 1) + ReLU,
  torchvision's ``BasicConv2d``; conv weights go HWIO -> OIHW, the two Linear layers transposed;
* slim's average pools in the mixed blocks pad ``SAME`` and average the unpadded cells only
  (torchvision's count the padding): a pre-hook on each ``branch_pool`` rescales by the number of
  cells, which makes the torchvision network give the TF graph's logits
  (``tests/test_stackgan_inception.py`` checks them against logits the TF graph computed);
* the last layer has the classes + 1 outputs of the inception trainer (51 for birds, 21 for
  flowers); output 0 is its unused background class, which the score drops *before* the softmax;
* images are resized to 299 x 299 with bilinear, antialiased filtering (``scipy.misc.imresize``,
  that is PIL's bilinear on uint8 images; here torch's antialiased bilinear, within one grey
  level of PIL's) and scaled to [-1, 1].

Deviation from the authors' ``inception_score.py``: the score itself is torchmetrics'
``InceptionScore`` (every image kept, sample standard deviation of the splits), where their
script drops the last partial batch of 64 and reports the population standard deviation.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from t2igan.atomic import save_atomic

EMA = "/ExponentialMovingAverage"
FORMAT = "t2igan-stackgan-inception-v1"
WHERE = (
    "StackGAN-inception-model's inception_finetuned_models/birds_valid299/model.ckpt (or "
    "flowers_valid299), linked from https://github.com/hanzhanggit/StackGAN-inception-model, "
    "converted once with `python -m t2igan.metrics.stackgan_inception MODEL.ckpt OUT.pt`"
)

# Each mixed block: (slim scope, torchvision module, {slim branch: torchvision convs in order}).
_A = {"branch1x1": ["branch1x1"], "branch5x5": ["branch5x5_1", "branch5x5_2"],
      "branch3x3dbl": ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"],
      "branch_pool": ["branch_pool"]}  # fmt: skip
_C = {"branch1x1": ["branch1x1"], "branch7x7": [f"branch7x7_{i}" for i in (1, 2, 3)],
      "branch7x7dbl": [f"branch7x7dbl_{i}" for i in (1, 2, 3, 4, 5)],
      "branch_pool": ["branch_pool"]}  # fmt: skip
_E = {"branch1x1": ["branch1x1"],
      "branch3x3": ["branch3x3_1", "branch3x3_2a", "branch3x3_2b"],
      "branch3x3dbl": ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3a", "branch3x3dbl_3b"],
      "branch_pool": ["branch_pool"]}  # fmt: skip
BLOCKS = [
    ("mixed_35x35x256a", "Mixed_5b", _A),
    ("mixed_35x35x288a", "Mixed_5c", _A),
    ("mixed_35x35x288b", "Mixed_5d", _A),
    ("mixed_17x17x768a", "Mixed_6a", {
        "branch3x3": ["branch3x3"],
        "branch3x3dbl": ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"]}),
    *[(f"mixed_17x17x768{s}", f"Mixed_6{s}", _C) for s in "bcde"],
    ("mixed_17x17x1280a", "Mixed_7a", {  # slim's name; its output is 8 x 8
        "branch3x3": ["branch3x3_1", "branch3x3_2"],
        "branch7x7x3": [f"branch7x7x3_{i}" for i in (1, 2, 3, 4)]}),
    ("mixed_8x8x2048a", "Mixed_7b", _E),
    ("mixed_8x8x2048b", "Mixed_7c", _E),
]  # fmt: skip
STEM = [("conv0", "Conv2d_1a_3x3"), ("conv1", "Conv2d_2a_3x3"), ("conv2", "Conv2d_2b_3x3"),
        ("conv3", "Conv2d_3b_1x1"), ("conv4", "Conv2d_4a_3x3"),
        ("aux_logits/proj", "AuxLogits.conv0"), ("aux_logits/Conv", "AuxLogits.conv1")]  # fmt: skip
LINEAR = [("aux_logits/FC", "AuxLogits.fc"), ("logits/logits", "fc")]
#: torchvision blocks whose ``branch_pool`` follows a 3 x 3 SAME average pool.
AVG_POOLED = [tv for _, tv, branches in BLOCKS if len(branches) == 4]


def conv_pairs() -> Iterator[tuple[str, str]]:
    """(slim scope, torchvision ``BasicConv2d``) of every convolution: an unnamed slim conv in a
    branch scope is ``Conv``, ``Conv_1``, ... in the order the branch calls them."""
    yield from STEM
    for scope, module, branches in BLOCKS:
        for branch, convs in branches.items():
            for i, conv in enumerate(convs):
                yield f"{scope}/{branch}/{'Conv' if i == 0 else f'Conv_{i}'}", f"{module}.{conv}"


def checkpoint_names(num_outputs: int, net: nn.Module | None = None) -> dict[str, tuple]:
    """Every variable name the conversion reads (without the EMA suffix) -> its TF shape."""
    net = net or build_network(num_outputs)
    params = dict(net.state_dict())
    names: dict[str, tuple] = {}
    for scope, module in conv_pairs():
        o, i, h, w = params[f"{module}.conv.weight"].shape
        names[f"{scope}/weights"] = (h, w, i, o)
        for stat in ("beta", "moving_mean", "moving_variance"):
            names[f"{scope}/BatchNorm/{stat}"] = (o,)
    for scope, module in LINEAR:
        o, i = params[f"{module}.weight"].shape
        names[f"{scope}/weights"], names[f"{scope}/biases"] = (i, o), (o,)
    return names


def _count_valid(module: nn.Module, args: tuple) -> tuple:
    """Pre-hook of ``branch_pool``: torchvision's ``avg_pool2d(x, 3, 1, 1)`` divides each sum by
    9; dividing by the same pool of ones turns that into the mean over the unpadded cells (TF's
    SAME average pool)."""
    (x,) = args
    ones = x.new_ones(1, 1, *x.shape[-2:])
    return (x / F.avg_pool2d(ones, 3, 1, 1),)


def build_network(num_outputs: int) -> nn.Module:
    """torchvision's Inception3 laid out as slim's ``inception_v3`` (``num_outputs`` logits, the
    background class included), eval mode."""
    from torchvision.models.inception import Inception3

    net = Inception3(num_classes=num_outputs, aux_logits=True, transform_input=False,
                     init_weights=False)  # fmt: skip
    for name in AVG_POOLED:
        net.get_submodule(f"{name}.branch_pool").register_forward_pre_hook(_count_valid)
    return net.eval()


def convert(tensors: Mapping[str, np.ndarray], source: str = "") -> dict:
    """The t2igan file (a dict of tensors and plain data) of slim checkpoint ``tensors`` (name ->
    array, as TF's reader gives them): the EMA shadow of every variable; a ValueError names the
    ones missing or of the wrong shape."""
    key = f"logits/logits/biases{EMA}"
    if key not in tensors:
        raise ValueError(f"{source or 'the checkpoint'} has no {key}: it is not StackGAN's "
                         "fine-tuned Inception (slim inception_v3 with moving averages)")  # fmt: skip
    num_outputs = int(np.asarray(tensors[key]).shape[0])
    net = build_network(num_outputs)
    want = checkpoint_names(num_outputs, net)
    missing = [n for n in want if n + EMA not in tensors]
    wrong = [f"{n} {tuple(np.shape(tensors[n + EMA]))} (expected {s})" for n, s in want.items()
             if n + EMA in tensors and tuple(np.shape(tensors[n + EMA])) != s]  # fmt: skip
    if missing or wrong:
        listed = (missing + wrong)[:3]
        raise ValueError(f"{source or 'the checkpoint'} is not slim's inception_v3 as StackGAN "
                         f"fine-tuned it: {len(missing)} variables missing, {len(wrong)} of "
                         f"another shape, e.g. {', '.join(listed)}")  # fmt: skip

    def get(name: str) -> torch.Tensor:
        return torch.from_numpy(np.asarray(tensors[name + EMA], dtype=np.float32))

    state = {}
    for scope, module in conv_pairs():
        state[f"{module}.conv.weight"] = get(f"{scope}/weights").permute(3, 2, 0, 1)
        state[f"{module}.bn.bias"] = get(f"{scope}/BatchNorm/beta")
        state[f"{module}.bn.weight"] = torch.ones_like(state[f"{module}.bn.bias"])  # no scale
        state[f"{module}.bn.running_mean"] = get(f"{scope}/BatchNorm/moving_mean")
        state[f"{module}.bn.running_var"] = get(f"{scope}/BatchNorm/moving_variance")
        state[f"{module}.bn.num_batches_tracked"] = torch.tensor(0)
    for scope, module in LINEAR:
        state[f"{module}.weight"] = get(f"{scope}/weights").T
        state[f"{module}.bias"] = get(f"{scope}/biases")
    net.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=True)
    return {"format": FORMAT, "num_outputs": num_outputs, "source": source,
            "state_dict": net.state_dict()}  # fmt: skip


def read_tf_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a TF checkpoint (V1 single file or V2 ``.index`` + ``.data``), read by
    TensorFlow itself (``tf.train.load_checkpoint``)."""
    prefix = Path(prefix)
    if not (prefix.is_file() or prefix.with_name(prefix.name + ".index").is_file()):
        raise FileNotFoundError(f"{prefix} is neither a TF checkpoint file nor the prefix of one "
                                f"(no {prefix.name}.index beside it): it needs {WHERE}")  # fmt: skip
    try:
        import tensorflow as tf
    except ImportError:
        raise ValueError("reading a TensorFlow checkpoint needs TensorFlow, for this conversion "
                         "only: pip install tensorflow-cpu") from None  # fmt: skip
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except Exception as err:  # noqa: BLE001 - TF raises DataLossError, NotFoundError, ...
        raise ValueError(f"{prefix} is not a readable TF checkpoint "
                         f"({' '.join(str(err).split())[:200]})") from None  # fmt: skip
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
            if n.endswith(EMA)}  # fmt: skip


class StackGANInception(nn.Module):
    """IS network of StackGAN's tables: uint8 images (N, 3, H, W) of any size -> (N, classes)
    logits of the fine-tuned Inception without its background output (what torchmetrics'
    ``InceptionScore`` takes as ``feature``; it applies the softmax).

    Args:
        path: a file :func:`convert` wrote (``python -m t2igan.metrics.stackgan_inception``).
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        from t2igan.metrics.evaluation import MissingWeightsError

        path = Path(path)
        if not path.is_file():
            raise MissingWeightsError(f"--is-inception {path} does not exist: it needs {WHERE}")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same answer
            raise ValueError(f"--is-inception {path} is not a file t2igan wrote "
                             f"({' '.join(str(err).split())[:200]})") from None  # fmt: skip
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"--is-inception {path} is not a converted StackGAN Inception: "
                             f"it needs {WHERE}")  # fmt: skip
        self.net = build_network(int(data["num_outputs"]))
        self.net.load_state_dict(data["state_dict"])
        self.num_features = int(data["num_outputs"]) - 1
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> StackGANInception:
        return super().train(False)  # torchmetrics calls .train(); this net stays in eval mode

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> float (N, 3, 299, 299) in [-1, 1], resized as PIL's bilinear."""
        x = images.float()
        if x.shape[-2:] != (299, 299):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False,
                              antialias=True).round().clamp(0, 255)  # fmt: skip
        return x / 127.5 - 1

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(images))[:, 1:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m t2igan.metrics.stackgan_inception",
        description="Convert StackGAN's fine-tuned Inception (TF checkpoint) for t2igan evaluate.",
    )
    parser.add_argument(
        "checkpoint", help="e.g. inception_finetuned_models/birds_valid299/model.ckpt"
    )
    parser.add_argument("out", help="file to write (then: t2igan evaluate --is-inception OUT)")
    a = parser.parse_args(argv)
    try:
        data = convert(read_tf_checkpoint(a.checkpoint), source=str(a.checkpoint))
        save_atomic(data, Path(a.out))
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"{parser.prog}: {err}")
    except KeyboardInterrupt:  # save_atomic leaves no half file
        sys.exit(f"{parser.prog}: interrupted, {a.out} not written")
    print(f"wrote {a.out} ({data['num_outputs'] - 1} classes + background)")


if __name__ == "__main__":
    main()
