"""Images per second the data module delivers, from the raw JPEGs and from the prepared cache.

Both are measured side by side in one run, with the training loader (random crop, flip, a
"wrong" image per item, caption sampling) in the main process (num_workers=0: one core), at 64
(load size 76, Reed et al.) and 256 (load size 304, StackGAN) pixels. Targets (issue 3): the cache
is at least 5x faster than the raw JPEGs, and at least 2,000 images/s at 64 x 64 on one core.

python benchmarks/data_throughput.py                      # the real CUB subset in ../shared/data
python benchmarks/data_throughput.py --source data/CUB_200_2011 --split class
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

from t2igan.data import HashingEncoder, T2IDataModule
from t2igan.data import prepare as cache

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "birds" / "CUB_200_2011"


def throughput(dm: T2IDataModule, images: int) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU second of this process) over at least
    ``images`` training images, after one warm-up batch. On a shared machine the second is the
    fairer "one core" figure: it does not count time the process waited for a core."""
    loader = dm.train_dataloader()
    next(iter(loader))
    done, wall, cpu = 0, time.perf_counter(), time.process_time()
    while done < images:
        for batch in loader:
            done += len(batch["images"])
            if done >= images:
                break
    return done / (time.perf_counter() - wall), done / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=str(SHARED), help="CUB_200_2011 folder")
    parser.add_argument("--split", default="official", help="class or official (the shared "
                        "subset has test classes only, so official is the default)")  # fmt: skip
    parser.add_argument("--images", type=int, default=1000, help="images timed per setting")
    parser.add_argument("--batch-size", type=int, default=16, help="16: the shared subset has "
                        "33 training images")  # fmt: skip
    a = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="t2igan-bench-") as tmp:
        run(a, Path(tmp))


def run(a: argparse.Namespace, root: Path) -> None:
    """Prepare caches under ``root`` and print the table."""
    options = {"split": a.split, "skip_missing": True}
    print(f"source {a.source}, split {a.split}, {a.images} images per setting, batch "
          f"{a.batch_size}, one process, torch threads 1")  # fmt: skip
    print("images/s per wall-clock second (and per CPU second)")
    print(f"{'size':>6} {'load':>5} {'raw':>16} {'cache':>16} {'speed-up':>16}")
    for size, load in ((64, 76), (256, 304)):
        cache.prepare("cub", root, a.source, load_size=load, **options)
        rates = {}
        for use_cache in (False, True):
            dm = T2IDataModule("cub", root=str(root), source=a.source, image_size=size,
                               load_size=load, flip=True, batch_size=a.batch_size,
                               text_encoder=HashingEncoder(), use_cache=use_cache,
                               **options)  # fmt: skip
            dm.prepare_data()
            dm.setup("fit")
            rates[use_cache] = throughput(dm, a.images)
        (raw, raw_cpu), (hot, hot_cpu) = rates[False], rates[True]
        print(f"{size:>6} {load:>5} {raw:>7.0f} ({raw_cpu:>6.0f}) {hot:>7.0f} ({hot_cpu:>6.0f}) "
              f"{hot / raw:>6.1f}x ({hot_cpu / raw_cpu:>5.1f}x)")  # fmt: skip
        if size == 64:  # StackGAN's in-batch shift reads no second ("wrong") image
            dm = T2IDataModule("cub", root=str(root), source=a.source, image_size=size,
                               load_size=load, flip=True, batch_size=a.batch_size,
                               text_encoder=HashingEncoder(), wrong_mode="shift",
                               **options)  # fmt: skip
            dm.setup("fit")
            shift, shift_cpu = throughput(dm, a.images)
            print(f"{size:>6} {load:>5} {'cache, wrong_mode shift':>16} {shift:>7.0f} "
                  f"({shift_cpu:>6.0f})")  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
