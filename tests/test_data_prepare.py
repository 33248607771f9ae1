"""``t2igan prepare`` / ``embed``, the HDF5 cache, and the data module on real-dataset readers."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest
import torch

from t2igan.cli import main
from t2igan.cli.commands import SUBCOMMANDS
from t2igan.cli.embed import embed_file
from t2igan.data import HashingEncoder, T2IDataModule
from t2igan.data import prepare as cache
from t2igan.data.cub import CUBReader

from .data_fixtures import make_cub


def _dm(root, cub, **kwargs) -> T2IDataModule:
    args = dict(dataset="cub", root=str(root), source=str(cub), image_size=32, load_size=38,
                batch_size=4, text_encoder=HashingEncoder(dim=16))  # fmt: skip
    args.update(kwargs)
    return T2IDataModule(**args)


@pytest.fixture
def cub(tmp_path):
    return make_cub(tmp_path / "raw")


def test_cache_holds_what_the_reader_read(tmp_path, cub):
    path = cache.prepare("cub", tmp_path, cub, load_size=38, text_encoder=HashingEncoder(16))
    assert path.parent == tmp_path / "cub" and not list(path.parent.glob("*.tmp"))
    raw = CUBReader(cub).load("train")
    cached = cache.CachedReader(path).load("train")
    assert cached.names == raw.names and cached.captions == raw.captions
    np.testing.assert_array_equal(cached.labels, raw.labels)
    np.testing.assert_array_equal(cached.boxes, raw.boxes)
    np.testing.assert_array_equal(cached.keypoints, raw.keypoints)
    assert cached.part_names == raw.part_names
    np.testing.assert_array_equal(cached.images[2], raw.images.resized(38)[2])
    with h5py.File(path) as f:
        manifest = cache.CachedReader(path).manifest
        assert f["val"] == f["test"]  # the class split has no val set: a link, stored once
    assert manifest["load_size"] == 38 and manifest["options"]["split"] == "class"
    assert str((cub / "bounding_boxes.txt").resolve()) in manifest["checksums"]
    assert list(manifest["encoders"].values())[0]["init_args"]["dim"] == 16


def test_datamodule_uses_an_up_to_date_cache(tmp_path, cub, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    dm = _dm(tmp_path, cub)
    assert dm._cached() is None
    assert f"t2igan prepare --dataset cub --root {tmp_path} --source {cub}" in caplog.text
    SUBCOMMANDS["prepare"](["--dataset", "cub", "--root", str(tmp_path), "--source", str(cub),
                            "--load-size", "38", "--text-encoder",
                            "t2igan.data.HashingEncoder"])  # fmt: skip
    encoded = []
    monkeypatch.setattr(HashingEncoder, "encode", lambda self, captions: encoded.append(captions))
    dm = _dm(tmp_path, cub, text_encoder=HashingEncoder())  # as prepared: stored embeddings
    dm.setup("fit")
    assert isinstance(dm._cache, cache.CachedReader) and not encoded
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (4, 3, 32, 32) and batch["keypoints"].shape == (4, 15, 3)
    assert batch["text_emb"].shape == (4, 256)


def test_stale_cache_is_not_used(tmp_path, cub, caplog):
    cache.prepare("cub", tmp_path, cub, load_size=38)
    boxes = cub / "bounding_boxes.txt"
    boxes.write_text(boxes.read_text().replace(" 5.0 6.0 ", " 4.0 6.0 ", 1))
    dm = _dm(tmp_path, cub)
    assert dm._cached() is None
    assert "out of date" in caplog.text and "bounding_boxes.txt" in caplog.text
    assert "--force" in caplog.text


def test_interrupted_prepare_leaves_no_cache(tmp_path, cub, monkeypatch):
    def broken(images, size):
        class Broken:
            def __len__(self):
                return len(images)

            def __getitem__(self, i):
                if i == 2:
                    raise KeyboardInterrupt
                return images.resized(size)[i]

        return Broken()

    monkeypatch.setattr(cache, "_resized", broken)
    with pytest.raises(KeyboardInterrupt):
        cache.prepare("cub", tmp_path, cub, load_size=38)
    assert not list((tmp_path / "cub").iterdir())


def test_wrong_mode_shift_rolls_the_batch(tmp_path, cub):
    dm = _dm(tmp_path, cub, wrong_mode="shift", use_cache=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert torch.equal(batch["wrong_images"], batch["images"].roll(1, 0))


def test_one_random_caption(tmp_path, cub):
    dm = _dm(tmp_path, cub, num_captions=1, use_cache=False)
    dm.setup("fit")
    ds = dm.datasets["train"]
    item = ds[0]
    k = ds.split.captions[0].index(item["captions"])
    torch.testing.assert_close(item["text_emb"], ds.emb[0][k])


def test_unknown_options_are_errors(tmp_path, cub):
    with pytest.raises(ValueError, match="wrong_mode"):
        _dm(tmp_path, cub, wrong_mode="random")
    with pytest.raises(ValueError, match=r"does not take \['bbox_crop'\]"):
        cache.canonical_options("flowers", {"bbox_crop": True})


def test_embed_subcommand(tmp_path):
    captions = tmp_path / "caps.txt"
    captions.write_bytes(b"a red bird.\r\n\r\na small blue bird with a long tail.\r\n")
    SUBCOMMANDS["embed"](["--captions", str(captions), "--out", str(tmp_path / "emb.h5"),
                          "--text-encoder", "t2igan.data.HashingEncoder",
                          "--init-args", '{"dim": 32}'])  # fmt: skip
    with h5py.File(tmp_path / "emb.h5") as f:
        assert list(f["captions"].asstr()[()]) == [
            "a red bird.",
            "a small blue bird with a long tail.",
        ]
        np.testing.assert_allclose(f["embeddings"][()], HashingEncoder(32).encode(
            ["a red bird.", "a small blue bird with a long tail."]))  # fmt: skip
        assert '"dim": 32' in f.attrs["encoder"]
    with pytest.raises(FileNotFoundError, match="one caption per line"):
        embed_file(tmp_path / "none.txt", tmp_path / "x.h5", HashingEncoder())


def test_flowers_through_the_cache(tmp_path):
    from .data_fixtures import make_flowers

    flowers = make_flowers(tmp_path / "raw", (1, 1, 5, 5, 2, 10, 3, 3))
    cache.prepare("flowers", tmp_path, flowers, load_size=20)
    dm = T2IDataModule("flowers", root=str(tmp_path), source=str(flowers), image_size=16,
                       load_size=20, batch_size=2, text_encoder=HashingEncoder(dim=8))  # fmt: skip
    dm.setup("fit")
    assert isinstance(dm._cache, cache.CachedReader)
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (2, 3, 16, 16) and "boxes" not in batch
    assert set(dm.datasets["val"].split.labels + 1) == {5, 10}


def test_large_images_are_read_from_the_file(tmp_path, cub):
    import pickle

    path = cache.prepare("cub", tmp_path, cub, load_size=40)
    in_memory = cache.CachedReader(path).load("train").images
    lazy = cache.CachedReader(path, in_memory=False).load("train").images
    assert isinstance(lazy, cache.H5Images) and len(lazy) == len(in_memory)
    np.testing.assert_array_equal(lazy[3], in_memory[3])
    copy = pickle.loads(pickle.dumps(lazy))  # as DataLoader workers receive it
    np.testing.assert_array_equal(copy[1], in_memory[1])


def test_prepare_records_the_clipped_official_boxes(tmp_path, capsys):
    """The official rows that end one pixel past their image are clipped, counted in the printed
    summary and in the manifest."""
    from .data_fixtures import REAL_OFF_BY_ONE

    cub = make_cub(tmp_path / "raw", real_rows=REAL_OFF_BY_ONE)
    argv = ["--dataset", "cub", "--root", str(tmp_path), "--source", str(cub), "--load-size", "38",
            "--split", "official"]  # fmt: skip
    SUBCOMMANDS["prepare"](argv)  # stopped with "4 bounding boxes lie outside" before the fix
    out = capsys.readouterr().out
    assert "bounding boxes clipped to their image (they overran it by at most 2 px): 4" in out
    assert "train: 8 images" in out and "test: 8 images" in out
    path = cache.cache_file(tmp_path, "cub", 38, {"split": "official"})
    manifest = cache.CachedReader(path).manifest
    assert manifest["clipped_boxes"] == 4 and manifest["box_tolerance_px"] == 2
    assert manifest["clipped_boxes_per_split"] == {"train": 2, "val": 2, "test": 2}  # val = test
    assert sorted(manifest["clipped_box_images"]) == sorted(k for _, k, *_ in REAL_OFF_BY_ONE)
    SUBCOMMANDS["prepare"](argv)  # up to date: the same summary from the stored manifest
    assert "clipped to their image (they overran it by at most 2 px): 4" in capsys.readouterr().out


def test_prepare_some_splits_and_test_from_that_cache(tmp_path, cub, caplog, capsys):
    """A folder holding test classes only: preparing every split fails and names --splits;
    --splits test writes a cache that `test` runs from, and `fit` names the missing split."""
    from t2igan.data.files import EmptySplitError

    test_only = make_cub(tmp_path / "test_only", classes=(1, 4))  # StackGAN test classes
    with pytest.raises(EmptySplitError, match=r"train split .*has no images.*--splits val test"):
        cache.prepare("cub", tmp_path, test_only, load_size=38)
    with pytest.raises(SystemExit):
        main(["prepare", "--dataset", "cub", "--root", str(tmp_path), "--source", str(test_only),
              "--load-size", "38"])  # fmt: skip
    assert "--splits val test" in capsys.readouterr().err.splitlines()[0]
    SUBCOMMANDS["prepare"](["--dataset", "cub", "--root", str(tmp_path), "--source",
                            str(test_only), "--load-size", "38", "--splits", "test"])  # fmt: skip
    path = cache.cache_file(tmp_path, "cub", 38, {})
    assert cache.CachedReader(path).splits == ("test",)
    assert cache.CachedReader(path).manifest["splits"] == ["test"]
    dm = _dm(tmp_path, test_only)
    dm.prepare_data()  # Lightning calls it for `test` too: the missing train split is skipped
    dm.setup("test")
    assert isinstance(dm._cache, cache.CachedReader) and len(dm.datasets["test"]) == 6
    batch = next(iter(dm.test_dataloader()))
    assert batch["images"].shape == (4, 3, 32, 32)
    with pytest.raises(EmptySplitError, match=r"train split is not in the cache.*t2igan prepare"):
        _dm(tmp_path, test_only).setup("fit")
    # asking for the missing splits rebuilds; asking for fewer than stored does not
    with pytest.raises(EmptySplitError):
        cache.prepare("cub", tmp_path, test_only, load_size=38, splits="train,test")
    cache.prepare("cub", tmp_path, test_only, load_size=38, splits=["val", "test"])
    assert cache.CachedReader(path).splits == ("val", "test")
    mtime = path.stat().st_mtime_ns
    cache.prepare("cub", tmp_path, test_only, load_size=38, splits="test")
    assert path.stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="unknown split"):
        cache.prepare("cub", tmp_path, test_only, load_size=38, splits="tset")
    with pytest.raises(SystemExit):
        SUBCOMMANDS["prepare"](["--dataset", "cub", "--source", str(test_only), "--splits", "x"])


def test_stale_tmp_files_of_killed_prepares_are_removed(tmp_path, cub, caplog):
    """`kill -9` during prepare leaves .<cache>.<pid>.tmp: the next prepare removes it (and
    leaves the temporary files of running processes alone)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "cub"
    folder.mkdir()
    name = cache.cache_file(tmp_path, "cub", 38, {}).name
    code = (f"import os, time; open(os.path.join({str(folder)!r}, '.{name}.%d.tmp' % os.getpid()),"
            " 'wb').write(b'half a cache'); time.sleep(60)")  # fmt: skip
    killed = subprocess.Popen([sys.executable, "-c", code])
    stale = folder / f".{name}.{killed.pid}.tmp"
    deadline = time.monotonic() + 30
    while not stale.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = folder / f".{name}.{running.pid}.tmp"
        live.write_bytes(b"being written")
        other = folder / "notes.tmp"
        other.write_text("not ours")
        cache.prepare("cub", tmp_path, cub, load_size=38)
        assert not stale.exists() and live.exists() and other.exists()
        assert f"removed {stale}" in caplog.text and str(killed.pid) in caplog.text
    finally:
        running.kill()
        running.wait()
    cache.prepare("cub", tmp_path, cub, load_size=38)  # up to date: still cleans up
    assert not live.exists()
