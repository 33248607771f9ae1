"""``t2igan download cub|flowers``: fetch the official archives, check md5, resume, extract.

Reed et al.'s captions (``cvpr2016_cub.tar.gz``, ``cvpr2016_flowers.tar.gz``) are on Google Drive
links from the authors' README that are often dead or gated, so they are not fetched here: the
command prints where to put them.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError

from t2igan.atomic import file_digest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Remote:
    """One file to fetch.

    Args:
        url: its address.
        md5: expected md5 of the whole file.
        into: folder under the data root it goes to (archives are extracted there).
        extract: whether it is a tar archive to unpack.
    """

    url: str
    md5: str
    into: str
    extract: bool = True

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1].split("?", 1)[0]


FLOWERS = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
#: The official files of each dataset (addresses and md5 from docs/data.md).
FILES = {
    "cub": (
        Remote(
            "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
            "97eceeb196236b17998738112f37df78",
            ".",
        ),  # fmt: skip
    ),
    "flowers": (
        Remote(FLOWERS + "102flowers.tgz", "52808999861908f626f3c1f4e79d11fa", "flowers"),
        Remote(FLOWERS + "imagelabels.mat", "e0620be6f572b9609742df49c70aed4d", "flowers", False),
        Remote(FLOWERS + "setid.mat", "a5357ecc9cb78c4bef273ce3793fc85c", "flowers", False),
    ),
}
CAPTIONS = {
    "cub": "Reed et al.'s cvpr2016_cub.tar.gz (from github.com/reedscot/cvpr2016): put its "
    "text_c10/ in {root}/CUB_200_2011/",
    "flowers": "Reed et al.'s cvpr2016_flowers.tar.gz (from github.com/reedscot/cvpr2016): put "
    "its text_c10/ in {root}/flowers/",
}


def md5sum(path: Path) -> str:
    return file_digest(path, "md5")


def fetch(url: str, dest: Path, md5: str, timeout: float = 60) -> Path:
    """Download ``url`` to ``dest`` and check its md5.

    A partial download is kept as ``dest.part`` and resumed with an HTTP Range request (from the
    start when the server ignores the range). A file with the wrong md5 is deleted and reported.
    """
    if dest.exists() and md5sum(dest) == md5:
        log.info("%s is already there (md5 ok)", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = response.status == 206
            if have and not resumed:
                log.info("%s: the server ignored the range, downloading from the start", url)
            log.info("downloading %s%s", url, f" (resuming at {have} bytes)" if resumed else "")
            with open(part, "ab" if resumed else "wb") as f:
                shutil.copyfileobj(response, f, 1 << 20)
    except HTTPError as err:
        if err.code == 416 and have:  # the range starts at the end: the file is complete
            pass
        else:
            raise RuntimeError(f"downloading {url} failed: HTTP {err.code} {err.reason}") from err
    except (URLError, OSError) as err:
        raise RuntimeError(f"downloading {url} failed ({err}); run the command again to resume "
                           f"from {part}") from err  # fmt: skip
    got = md5sum(part)
    if got != md5:
        part.unlink()
        raise RuntimeError(f"{url}: md5 {got}, expected {md5}; the download was deleted, run the "
                           "command again")  # fmt: skip
    part.replace(dest)
    return dest


def extract(archive: Path, into: Path) -> None:
    """Unpack a tar archive into ``into`` (refusing paths that leave it)."""
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:  # Python without extraction filters: check member paths ourselves
            root = into.resolve()
            for m in tar.getmembers():
                if not (into / m.name).resolve().is_relative_to(root):
                    raise RuntimeError(f"{archive}: member {m.name!r} leaves {into}")
            tar.extractall(into)


def download(dataset: str, root: str | Path = "data", mirror: str | None = None,
             files: tuple[Remote, ...] | None = None) -> list[Path]:  # fmt: skip
    """Fetch, check and extract the official files of ``dataset``; returns the files fetched.

    Args:
        dataset: ``cub`` or ``flowers``.
        root: the data root (CUB goes to ``root/CUB_200_2011``, flowers to ``root/flowers``).
        mirror: fetch every file from this base address instead (same file names).
        files: the files to fetch (default :data:`FILES` of ``dataset``).
    """
    if files is None:
        if dataset not in FILES:
            raise ValueError(f"cannot download {dataset!r}; choose one of {sorted(FILES)}")
        files = FILES[dataset]
    root = Path(root)
    out = []
    for remote in files:
        url = f"{mirror.rstrip('/')}/{remote.name}" if mirror else remote.url
        into = root / remote.into
        path = fetch(url, root / "downloads" / remote.name if remote.extract else into /
                     remote.name, remote.md5)  # fmt: skip
        if remote.extract:
            marker = into / f".{remote.name}.extracted"
            if not marker.exists():
                log.info("extracting %s into %s", path, into)
                into.mkdir(parents=True, exist_ok=True)
                extract(path, into)
                marker.write_text(remote.md5)
        out.append(path)
    return out
