"""``t2igan embed``: caption embeddings for any captions, with any t2igan text encoder.

t2igan embed --captions my_captions.txt --out emb.h5
t2igan embed --captions my_captions.txt --out emb.h5 --text-encoder t2igan.data.HashingEncoder \
    --init-args '{"dim": 512}'

t2igan embed --captions my_captions.txt --out val_captions.t7 --text-encoder \
    t2igan.models.CharCNNEncoder --init-args '{"checkpoint": "cub_gru.ckpt"}'

An ``.h5`` output holds ``captions`` (N strings, in the order of the input lines), ``lines``
(N,) int64, the line of the input file each caption is on (counted from 1: blank lines are
skipped, with a warning naming them, so caption k need not be line k), ``embeddings`` (N, D)
float32, and the encoder's spec as JSON in the ``encoder`` attribute (the same spec checkpoints
record, so ``encoder_from_spec`` rebuilds it). A ``.t7`` output is the
layout of the papers' own demo scripts (Reed's txt2img_demo.lua builds it, StackGAN's
``get_embedding.lua`` writes it, and StackGAN-PyTorch's ``--STAGE`` sampling reads
``test/val_captions.t7``): a Torch table with ``raw_txt`` (the N captions) and ``fea_txt`` (N
float tensors of shape (1, D)).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np

from t2igan.atomic import atomic_path
from t2igan.classpath import import_class
from t2igan.command import CommandParser, closest, warn
from t2igan.data.text import TextEncoder, encoder_from_spec


def _numbers(lines: list[int], shown: int = 6) -> str:
    """``line 3`` or ``lines 2, 5, 9, ... (12 in all)``."""
    if len(lines) == 1:
        return f"line {lines[0]}"
    more = f", ... ({len(lines)} in all)" if len(lines) > shown else ""
    return "lines " + ", ".join(map(str, lines[:shown])) + more


def read_captions(path: str | Path) -> tuple[list[str], list[int]]:
    """The captions of a text file, one per line (stripped; Windows line endings are fine),
    and the line each is on, counted from 1. Blank lines are skipped with a warning that names
    them (a caption's number in the output is then not its line's)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--captions {path} is a folder: pass a text file, one caption per line")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected a text file, one caption per line")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from None
    rows = text.split("\n")
    if rows[-1] == "":  # the newline that ends the last line starts no line of its own
        rows.pop()
    numbered = [(n, row.strip()) for n, row in enumerate(rows, 1)]
    captions = [(n, c) for n, c in numbered if c]
    if not captions:
        raise ValueError(f"{path}: no captions (every line is blank)")
    blank = [n for n, c in numbered if not c]
    if blank:
        verb = "is" if len(blank) == 1 else "are"
        if blank[0] > captions[-1][0]:  # only after the last caption: the numbering holds
            warn("embed", f"{path}: {_numbers(blank)} {verb} blank (after the last caption): "
                 "skipped")  # fmt: skip
        else:
            warn("embed", f"{path}: {_numbers(blank)} {verb} blank: skipped, so caption k of the "
                 "output is not always line k (an .h5 output records each caption's line in "
                 "`lines`)")  # fmt: skip
    return [c for _, c in captions], [n for n, _ in captions]


def embed_file(captions: str | Path, out: str | Path, encoder: TextEncoder) -> Path:
    """Embed every non-blank line of ``captions`` and write ``out`` (written to a temporary
    file, then renamed).

    Args:
        captions: a text file, one caption per line (Windows line endings are fine; blank lines
            are skipped, with a warning naming them).
        out: the file to write: ``.h5`` (t2igan's layout) or ``.t7`` (the papers' table).
        encoder: the text encoder.
    """
    import h5py

    out = Path(out)
    if out.suffix not in (".h5", ".hdf5", ".t7"):
        raise ValueError(f"--out {out}: name an .h5 file (t2igan's layout) or a .t7 file (the "
                         "papers' raw_txt / fea_txt table)")  # fmt: skip
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder: name the file to write")
    lines, numbers = read_captions(captions)
    emb = np.asarray(encoder.encode(lines), dtype=np.float32)
    if not np.isfinite(emb).all():  # what an encoder built with impossible arguments returns
        row = int(np.flatnonzero(~np.isfinite(emb).all(axis=1))[0])
        raise ValueError(f"{encoder.spec()['class_path']} gave a non-finite embedding for "
                         f"{captions}, line {numbers[row]}: check its --init-args")  # fmt: skip
    with atomic_path(out) as tmp:
        if out.suffix == ".t7":
            from t2igan.data.t7 import save_t7

            save_t7(tmp, {"raw_txt": lines, "fea_txt": [e[None] for e in emb]})
        else:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("captions", data=np.array(lines, dtype=object),
                                 dtype=h5py.string_dtype())  # fmt: skip
                f.create_dataset("lines", data=np.asarray(numbers, dtype=np.int64))
                f.create_dataset("embeddings", data=emb)
                f.attrs["encoder"] = json.dumps(encoder.spec())
    return out


def build_encoder(class_path: str, init_args: str) -> TextEncoder:
    """The text encoder ``--text-encoder`` and ``--init-args`` (JSON) name, its arguments
    checked against its constructor (a ValueError names the one that is wrong)."""
    try:
        args = json.loads(init_args)
    except json.JSONDecodeError as err:
        raise ValueError(f"--init-args {init_args!r} is not JSON ({err})") from None
    if not isinstance(args, dict):
        raise ValueError(f"--init-args {init_args!r}: give a JSON object of the encoder's "
                         """arguments, e.g. '{"dim": 512}'""")  # fmt: skip
    # the user's own class path, not one read from a file: any importable encoder
    cls = import_class(class_path, TextEncoder, allowed=None, source="--text-encoder")
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key in args:
            if key not in params:
                takes = ", ".join(params) or "no arguments"
                raise ValueError(f"--init-args: {cls.__name__} takes no argument {key!r}"
                                 f"{closest(key, params)}; it takes {takes}")  # fmt: skip
    encoder = encoder_from_spec({"class_path": class_path, "init_args": args}, "--text-encoder",
                                allowed=None)  # fmt: skip
    dim = encoder.dim
    if dim < 1:
        raise ValueError(f"--init-args: {cls.__name__} would give {dim}-d embeddings: its size "
                         "must be at least 1")  # fmt: skip
    return encoder


def embed_main(argv: list[str]) -> None:
    parser = CommandParser(
        prog="t2igan embed", description="Embed captions (one per line) into an HDF5 file."
    )
    parser.add_argument("--captions", required=True, help="text file, one caption per line")
    parser.add_argument("--out", required=True,
                        help="file to write: .h5, or .t7 for the papers' raw_txt / fea_txt table")  # fmt: skip
    parser.add_argument("--text-encoder", default="t2igan.data.SentenceTransformerEncoder",
                        help="class path of the text encoder")  # fmt: skip
    parser.add_argument("--init-args", default="{}", help="its arguments, as JSON")
    a = parser.parse_args(argv)
    encoder = build_encoder(a.text_encoder, a.init_args)
    out = embed_file(a.captions, a.out, encoder)
    print(f"wrote {out} ({encoder.dim}-d, {encoder.spec()['class_path']})")
