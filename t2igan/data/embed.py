"""``t2igan embed``: caption embeddings for any captions, with any t2igan text encoder.

t2igan embed --captions my_captions.txt --out emb.h5
t2igan embed --captions my_captions.txt --out emb.h5 --text-encoder t2igan.data.HashingEncoder \
    --init-args '{"dim": 512}'

t2igan embed --captions my_captions.txt --out val_captions.t7 --text-encoder \
    t2igan.models.CharCNNEncoder --init-args '{"checkpoint": "cub_gru.ckpt"}'

An ``.h5`` output holds ``captions`` (N strings, in the order of the input lines),
``embeddings`` (N, D) float32, and the encoder's spec as JSON in the ``encoder`` attribute (the
same spec checkpoints record, so ``encoder_from_spec`` rebuilds it). A ``.t7`` output is the
layout of the papers' own demo scripts (Reed's txt2img_demo.lua builds it, StackGAN's
``get_embedding.lua`` writes it, and StackGAN-PyTorch's ``--STAGE`` sampling reads
``test/val_captions.t7``): a Torch table with ``raw_txt`` (the N captions) and ``fea_txt`` (N
float tensors of shape (1, D)).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from t2igan.command import CommandParser
from t2igan.data.files import read_lines
from t2igan.data.text import TextEncoder, encoder_from_spec


def embed_file(captions: str | Path, out: str | Path, encoder: TextEncoder) -> Path:
    """Embed every non-empty line of ``captions`` and write ``out`` (written to a temporary file,
    then renamed).

    Args:
        captions: a text file, one caption per line (Windows line endings are fine).
        out: the file to write: ``.h5`` (t2igan's layout) or ``.t7`` (the papers' table).
        encoder: the text encoder.
    """
    import h5py

    path = Path(captions)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected a text file, one caption per line")
    lines = [line.strip() for line in read_lines(path)]
    if not lines:
        raise ValueError(f"{path}: no captions")
    out = Path(out)
    if out.suffix not in (".h5", ".hdf5", ".t7"):
        raise ValueError(f"--out {out}: name an .h5 file (t2igan's layout) or a .t7 file (the "
                         "papers' raw_txt / fea_txt table)")  # fmt: skip
    emb = np.asarray(encoder.encode(lines), dtype=np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        if out.suffix == ".t7":
            from t2igan.data.t7 import save_t7

            save_t7(tmp, {"raw_txt": lines, "fea_txt": [e[None] for e in emb]})
        else:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("captions", data=np.array(lines, dtype=object),
                                 dtype=h5py.string_dtype())  # fmt: skip
                f.create_dataset("embeddings", data=emb)
                f.attrs["encoder"] = json.dumps(encoder.spec())
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


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
    try:
        init_args = json.loads(a.init_args)
    except json.JSONDecodeError as err:
        raise ValueError(f"--init-args {a.init_args!r} is not JSON ({err})") from None
    encoder = encoder_from_spec({"class_path": a.text_encoder, "init_args": init_args})
    out = embed_file(a.captions, a.out, encoder)
    print(f"wrote {out} ({encoder.dim}-d, {encoder.spec()['class_path']})")
