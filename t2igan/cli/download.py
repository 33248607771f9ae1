"""``t2igan download``: fetch a dataset's official archives (:func:`t2igan.data.download.download`)."""

from __future__ import annotations

import logging

from t2igan.command import CommandParser
from t2igan.data.download import CAPTIONS, FILES, download


def download_main(argv: list[str]) -> None:
    parser = CommandParser(
        prog="t2igan download",
        description="Fetch a dataset's official archives, check their md5, resume partial "
        "downloads and extract them under ROOT.",
    )
    parser.add_argument("dataset", choices=sorted(FILES))
    parser.add_argument("--root", default="data", help="data root")
    parser.add_argument("--mirror", default=None, help="base address to fetch the same files "
                        "from instead of the official one")  # fmt: skip
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = download(a.dataset, a.root, a.mirror)
    print(f"fetched {len(paths)} files into {a.root}. Captions: " +
          CAPTIONS[a.dataset].format(root=a.root))  # fmt: skip
