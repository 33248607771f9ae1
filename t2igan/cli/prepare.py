"""``t2igan prepare``: check a dataset's raw files and write the HDF5 cache training reads
(:func:`t2igan.data.prepare.prepare`)."""

from __future__ import annotations

import logging

from t2igan.command import CommandParser
from t2igan.data.prepare import (
    DEFAULT_SOURCES,
    parse_splits,
    prepare,
    reader_class,
    reader_options,
    summary,
)


def prepare_main(argv: list[str]) -> None:
    from t2igan.data.text import encoder_from_spec

    parser = CommandParser(
        prog="t2igan prepare",
        description="Validate a dataset's raw files and write one HDF5 cache that the data module "
        "reads instead of the JPEGs (written to a temporary file, then renamed).",
    )
    parser.add_argument(
        "--dataset",
        required=True,
        choices=[
            "synthetic",
            *sorted(d for d in DEFAULT_SOURCES if getattr(reader_class(d), "cacheable", True)),
        ],
    )
    parser.add_argument("--root", default="data", help="data root; the cache goes to "
                        "ROOT/<dataset>/")  # fmt: skip
    parser.add_argument("--source", default=None, help="the dataset's folder or file (default: "
                        "looked up under ROOT, e.g. ROOT/CUB_200_2011)")  # fmt: skip
    parser.add_argument("--load-size", type=int, default=76, help="side of the stored images "
                        "(the data module's load_size, or image_size without one)")  # fmt: skip
    parser.add_argument("--split", default=None, help="class or official (cub, flowers)")
    parser.add_argument("--bbox-crop", action="store_true", help="cub: StackGAN's box crop")
    parser.add_argument("--captions-per-image", type=int, default=None,
                        help="captions required per image (default: the reader's, 10)")  # fmt: skip
    parser.add_argument("--captions", default=None, help="caption folder (text_c10) or, for "
                        "mhp, the JSON-lines caption file")  # fmt: skip
    parser.add_argument("--embeddings", default=None, help="the papers' embedding files")
    parser.add_argument("--skip-missing", action="store_true",
                        help="leave out (and log) images whose files are missing")  # fmt: skip
    parser.add_argument("--text-encoder", default=None, help="also store caption embeddings of "
                        "this encoder class, e.g. t2igan.data.HashingEncoder")  # fmt: skip
    parser.add_argument("--splits", nargs="+", default=None, metavar="SPLIT",
                        help="store only these splits (train val test, or train,test; "
                        "default: all), e.g. --splits test for test classes only")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="rebuild an up-to-date cache")
    a = parser.parse_args(argv)
    if a.dataset == "synthetic":
        print("t2igan prepare: the built-in synthetic data needs no preparation (it is drawn "
              "in memory); train on it: t2igan fit --config experiments/quickstart.yaml")  # fmt: skip
        return
    try:
        splits = parse_splits(a.splits)
    except ValueError as err:
        parser.error(str(err))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    encoder = None
    if a.text_encoder:  # the user's own class path, not one read from a file
        encoder = encoder_from_spec({"class_path": a.text_encoder}, "--text-encoder", allowed=None)
    options = reader_options(a.dataset, a.split, a.bbox_crop, a.captions_per_image, a.captions,
                             a.embeddings, a.skip_missing)  # fmt: skip
    path = prepare(a.dataset, a.root, a.source, a.load_size, encoder, a.force, splits,
                   **options)  # fmt: skip
    print("\n".join(summary(path)))
