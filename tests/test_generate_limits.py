"""``t2igan generate`` does bounded work for any input (issue 34): images are drawn and written
in batches (memory does not grow with ``--num``), the grid shows at most GRID_ROWS x
GRID_COLUMNS images, non-finite boxes and keypoints are refused, a keypoint file naming no part
is warned of, and the line it prints counts images and keypoint files apart."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image

from t2igan.cli import generate as cli
from t2igan.cli import main
from t2igan.command import DEBUG_HINT
from t2igan.data import HashingEncoder
from t2igan.models import GAWWNBox, GAWWNKeypoints

from .test_cli_errors import save_untrained
from .test_gawwn_keypoints import IMG_TINY

STYLE_CKPT = Path(__file__).parent / "checkpoints" / "pre13_style_encoder.ckpt"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, str]:
    """Untrained checkpoints (generate needs no training): a 32 px GAN-INT-CLS and 64 px GAWWNs
    with boxes and with keypoints, all recording a 64-d hashing encoder."""
    folder = tmp_path_factory.mktemp("limits")
    paths = {"gan": str(save_untrained(folder / "gan.ckpt", HashingEncoder(64)))}
    spec = HashingEncoder(64).spec()
    for name, cls in (("box", GAWWNBox), ("keypoints", GAWWNKeypoints)):
        torch.manual_seed(0)
        model = cls(text_dim=64, text_encoder=spec, **IMG_TINY)
        checkpoint = {"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict(),
                      "pytorch-lightning_version": L.__version__}  # fmt: skip
        model.on_save_checkpoint(checkpoint)
        paths[name] = str(folder / f"{name}.ckpt")
        torch.save(checkpoint, paths[name])
    return paths


def peak_rss_growth(run) -> int:
    """The most this process's resident memory rose above its level before ``run()``, in bytes
    (sampled every millisecond from /proc/self/statm)."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * page

    start, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            done.wait(0.001)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        run()
    finally:
        done.set()
        thread.join()
    return max(peak[0], rss()) - start


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux's /proc")
def test_memory_does_not_grow_with_num_and_the_grid_is_capped(ckpts, capsys, monkeypatch):
    """Drawn all at once, 256 images of 32 px (upscaled to 128 for the files and the grid)
    took over 100 MB more than 16 did; in batches of 16 they take what 16 take."""
    monkeypatch.setattr(cli, "GENERATE_BATCH", 16, raising=False)

    def run(num: int):
        main(["generate", "--ckpt", ckpts["gan"], "--caption", "a red bird", "--num", str(num),
              "--out", f"n{num}"])  # fmt: skip

    run(16)  # warm-up: the first call loads what every call uses
    small = peak_rss_growth(lambda: run(16))
    large = peak_rss_growth(lambda: run(256))
    assert large - small < 50e6, (small, large)
    assert len(list(Path("n256").glob("c00_i*.png"))) == 256
    grid = Image.open("n256/grid.png")
    assert grid.width == Image.open("n16/grid.png").width  # 16 columns shown of 256
    assert grid.height == Image.open("n16/grid.png").height
    assert capsys.readouterr().out.splitlines()[-1] == (
        "wrote 256 images to n256/ (grid: n256/grid.png shows the first 16 of 256 images per "
        "row; every image is its own cCC_iII.png file)"
    )


def test_style_interpolation_grid_is_capped(tmp_path):
    """--style-steps 40: the grid's top row (the two style images, white between) and its
    rows show 16 columns, not 40."""
    for k, colour in enumerate(("red", "blue")):
        Image.new("RGB", (40, 40), colour).save(tmp_path / f"s{k}.png")
    paths = cli.generate(str(STYLE_CKPT), ["a red bird"], out=str(tmp_path / "o"),
                         style_images=[str(tmp_path / "s0.png"), str(tmp_path / "s1.png")],
                         style_steps=40)  # fmt: skip
    assert len(paths) == 1 + 40
    few = cli.generate(str(STYLE_CKPT), ["a red bird"], out=str(tmp_path / "f"),
                       style_images=[str(tmp_path / "s0.png"), str(tmp_path / "s1.png")],
                       style_steps=16)  # fmt: skip
    assert Image.open(paths[0]).size == Image.open(few[0]).size


@pytest.mark.parametrize("box", ["nan,0.1,0.2,0.2", "0.1,0.1,nan,0.2", "0.1,0.1,0.2,inf"])
def test_a_box_that_is_not_finite_is_refused(box, ckpts, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["generate", "--ckpt", ckpts["box"], "--caption", "a red bird", "--box", box,
              "--out", "o"])  # fmt: skip
    assert exit.value.code == 1 and capsys.readouterr().err.splitlines() == [
        f"t2igan generate: --box {box}: x, y, w and h must be finite numbers (normalised, e.g. "
        "0.1,0.2,0.5,0.4)", DEBUG_HINT]  # fmt: skip
    assert not Path("o").exists()


@pytest.mark.parametrize("point", ["NaN", "Infinity", "-Infinity"])
def test_a_keypoint_that_is_not_finite_is_refused(point, ckpts, capsys):
    Path("parts.json").write_text(f'{{"beak": [{point}, 0.3]}}')  # Python's json reads these
    with pytest.raises(SystemExit) as exit:
        main(["generate", "--ckpt", ckpts["keypoints"], "--caption", "a red bird",
              "--keypoints", "parts.json", "--out", "o"])  # fmt: skip
    value = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}[point]
    assert exit.value.code == 1 and capsys.readouterr().err.splitlines() == [
        f"t2igan generate: --keypoints parts.json: part 'beak' at [{value}, 0.3] is not a finite "
        "point (x and y are numbers in [0, 1])", DEBUG_HINT]  # fmt: skip


def test_keypoints_naming_no_part_warn_and_files_are_counted_apart(ckpts, capsys):
    Path("none.json").write_text("{}")
    Path("beak.json").write_text(json.dumps({"beak": [0.7, 0.3]}))
    main(["generate", "--ckpt", ckpts["keypoints"], "--caption", "a red bird", "--keypoints",
          "none.json", "--keypoints", "beak.json", "--num", "2", "--out", "o"])  # fmt: skip
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "t2igan generate: warning: --keypoints none.json names no part: its images are drawn "
        'with no part placed (give part -> [x, y], e.g. {"beak": [0.7, 0.3]})'
    ]
    # 2 grids, 4 images and their 4 copies with the keypoints drawn; 4 keypoint files
    assert len(list(Path("o").glob("*.png"))) == 10 and len(list(Path("o").glob("*.json"))) == 4
    assert out.splitlines() == [
        "wrote 4 images and 4 keypoint files (JSON) to o/ (grid: o/grid.png)"
    ]
