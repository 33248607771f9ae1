"""Convert the authors' Torch7 text encoders (``.t7``, read with t2igan's bounded reader
:func:`~t2igan.data.t7.load_t7`, which refuses tensors that claim more than the file holds) to
t2igan encoder checkpoints that :class:`~t2igan.models.char_cnn_rnn.CharCNNEncoder` loads:

python -m t2igan.models.char_cnn_rnn_t7 \
    lm_sje_nc4_cub_hybrid_gru18_a1_c512_0.00070_1_10_trainvalids.txt_iter30000.t7 cub_gru.ckpt

The file is a saved ``protos`` table (its ``enc_doc``, as icml2016's loader reads it) or the
``nn.gModule`` itself. The module mapping (HybridCNN.lua / HybridCNNLong.lua, FixedRNN.lua,
FixedGRU.lua):

* the three ``nn.TemporalConvolution`` in order -> ``cnn.net.{0,3,6}``; Torch's weight is
  (out, k * in) with the k-th frame's inputs contiguous, so ``view(out, k, in).permute(0, 2, 1)``
  gives Conv1d's (out, in, k);
* the ``nn.Linear`` modules, one per time step but sharing storage: the one whose output size
  differs from the RNN width is the projection; among the others, those used at every step are
  the input-to-hidden ones and those used at every step but one the hidden-to-hidden ones, each
  group in the order the Lua code creates them (GRU: update, reset, candidate). 8 of the first
  group and max-pool present: char-CNN-RNN; 3 input-to-hidden Linears: char-CNN-GRU.

Tested on ``.t7`` files t2igan's tests write themselves with this module structure; the
authors' released files could not be downloaded here (docs/char_cnn_rnn.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from t2igan.atomic import save_atomic
from t2igan.data.t7 import Obj, T7FormatError, load_t7


def _find_modules(obj, kind: str, seen: set, out: list) -> list:
    """Every Torch module of class ``kind`` under ``obj`` (depth first, ``modules`` in order)."""
    if id(obj) in seen:
        return out
    seen.add(id(obj))
    items = []
    if isinstance(obj, Obj):
        if obj.typename == kind:
            out.append(obj)
        items = [obj.fields]
    elif isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, list | tuple):
        items = list(obj)
    for item in items:
        _find_modules(item, kind, seen, out)
    return out


def _get(module, key: str):
    """Field ``key`` of a Torch object (or of a table); None when absent."""
    fields = module.fields if isinstance(module, Obj) else module
    return fields.get(key) if isinstance(fields, dict) else None


def _array(module: Obj, key: str, ndim: int, path: Path) -> np.ndarray:
    """The float parameter ``key`` (a ``ndim``-d tensor) of ``module``, as read (not copied)."""
    value = _get(module, key)
    if not (isinstance(value, np.ndarray) and value.ndim == ndim and value.size
            and np.issubdtype(value.dtype, np.floating)):  # fmt: skip
        got = f"of shape {value.shape} ({value.dtype})" if isinstance(value, np.ndarray) else (
            type(value).__name__)  # fmt: skip
        raise ValueError(f"{path}: the {key} of an {module.typename} is {got}, not a "
                         f"{ndim}-d float tensor")  # fmt: skip
    return value


def _param(module: Obj, key: str, ndim: int, path: Path) -> torch.Tensor:
    """The float parameter ``key`` (a ``ndim``-d tensor) of ``module``, as a float32 copy."""
    return torch.from_numpy(np.array(_array(module, key, ndim, path), dtype=np.float32))


def _root(obj, path: Path):
    protos = _get(obj, "protos") if isinstance(obj, dict) else None
    if protos is not None:
        enc = _get(protos, "enc_doc")
        if enc is None:
            raise ValueError(f"{path}: its protos table has no enc_doc (text encoder)")
        return enc
    return obj


def convert_t7(path: str | Path, out: str | Path, lowercase: bool = True) -> Path:
    """Write the t2igan encoder checkpoint ``out`` for the Torch7 encoder ``path``.

    Args:
        path: the authors' ``.t7`` text encoder.
        out: the checkpoint to write (loaded by ``CharCNNEncoder``).
        lowercase: record that captions are lower-cased before encoding.

    Raises:
        ValueError: (one line naming the file) ``path`` is not a readable Torch7 file, a tensor
            in it claims more than the file holds, or it is not a char-CNN-RNN/GRU encoder;
            nothing is written then.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass the authors' .t7 text encoder file")
    try:
        obj = load_t7(path)
    except T7FormatError as err:  # damaged, or claims more than the file holds
        raise ValueError(f"{path} is not a Torch7 file t2igan can read: {err.reason}") from None
    root = _root(obj, path)
    convs = _find_modules(root, "nn.TemporalConvolution", set(), [])
    linears = _find_modules(root, "nn.Linear", set(), [])
    pools = _find_modules(root, "nn.TemporalMaxPooling", set(), [])
    if len(convs) != 3 or not linears:
        raise ValueError(
            f"{path} is not a char-CNN-RNN/GRU text encoder: found {len(convs)} "
            "nn.TemporalConvolution (3 expected) and "
            f"{len(linears)} nn.Linear (HybridCNN.lua / HybridCNNLong.lua)"
        )
    state = {}
    for k, conv in zip((0, 3, 6), convs):
        w = _param(conv, "weight", 2, path)
        o, kin = w.shape
        i = _get(conv, "inputFrameSize")
        if not isinstance(i, int) or i <= 0 or kin % i:
            raise ValueError(f"{path}: an nn.TemporalConvolution with inputFrameSize {i!r} and "
                             f"a weight of {kin} columns (a multiple of it expected)")  # fmt: skip
        state[f"cnn.net.{k}.weight"] = w.view(o, kin // i, i).permute(0, 2, 1).contiguous()
        state[f"cnn.net.{k}.bias"] = _param(conv, "bias", 1, path)
    cnn_dim = state["cnn.net.6.weight"].shape[0]
    for lin in linears:  # checked before the grouping below reads their shapes
        _array(lin, "weight", 2, path), _array(lin, "bias", 1, path)
    groups: dict[int, list] = {}  # storage -> the Linears sharing it, in order of appearance
    for lin in linears:
        w = _get(lin, "weight")
        key = next((g for g in groups if np.shares_memory(_get(groups[g][0], "weight"), w)),
                   len(groups))  # fmt: skip
        groups.setdefault(key, []).append(lin)
    proj = [g[0] for g in groups.values() if _get(g[0], "weight").shape[1] == cnn_dim
            and _get(g[0], "weight").shape[0] != cnn_dim]  # fmt: skip
    steps = max(len(g) for g in groups.values())
    i2h = [g[0] for g in groups.values() if len(g) == steps and g[0] not in proj]
    h2h = [g[0] for g in groups.values() if len(g) == steps - 1 and g[0] not in proj]
    nets = {1: ("cnn_rnn", ["rnn.i2h"], ["rnn.h2h"]),
            3: ("cnn_gru", ["rnn.cell.i2h_update", "rnn.cell.i2h_reset", "rnn.cell.i2h"],
                ["rnn.cell.h2h_update", "rnn.cell.h2h_reset", "rnn.cell.h2h"])}  # fmt: skip
    known = len(proj) == 1 and len(i2h) == len(h2h) and len(i2h) in nets
    arch = nets[len(i2h)][0] if known else None
    if arch is not None and (len(pools) == 3) != (arch == "cnn_rnn"):
        arch = None
    if arch is None:
        raise ValueError(
            f"{path}: an architecture the converter does not know ({len(groups)} distinct "
            f"nn.Linear, {len(pools)} max-pools, {steps} steps): expected the char-CNN-RNN "
            "(HybridCNN.lua + FixedRNN.lua) or char-CNN-GRU (HybridCNNLong.lua + FixedGRU.lua)"
        )
    _, i_names, h_names = nets[len(i2h)]
    for name, lin in [*zip(i_names, i2h), *zip(h_names, h2h), ("proj", proj[0])]:
        state[f"{name}.weight"] = _param(lin, "weight", 2, path)
        state[f"{name}.bias"] = _param(lin, "bias", 1, path)
    emb_dim = state["proj.weight"].shape[0]
    from t2igan.models.char_cnn_rnn import build_text_encoder

    net = build_text_encoder(arch, cnn_dim, emb_dim)
    try:
        net.load_state_dict(state)  # checks every name and shape
    except RuntimeError as err:
        raise ValueError(f"{path}: its weights do not fit a {arch} with cnn_dim {cnn_dim} and "
                         f"emb_dim {emb_dim}: {' '.join(str(err).split())}") from None  # fmt: skip
    ckpt = {
        "state_dict": {f"text_net.{k}": v for k, v in state.items()},
        "hyper_parameters": {"architecture": arch, "cnn_dim": cnn_dim, "emb_dim": emb_dim,
                             "lowercase": lowercase, "converted_from": str(path)},
        "t2igan": {"class_path": "t2igan.models.char_cnn_rnn.CharCNNRNNSJE"},
    }  # fmt: skip
    return save_atomic(ckpt, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m t2igan.models.char_cnn_rnn_t7",
        description="Convert an authors' .t7 text encoder.",
    )
    parser.add_argument("t7", help="the authors' .t7 file")
    parser.add_argument("out", help="t2igan encoder checkpoint to write")
    a = parser.parse_args(argv)
    try:
        out = convert_t7(a.t7, a.out)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"python -m t2igan.models.char_cnn_rnn_t7: {err}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
