"""Figure callbacks (caption / noise interpolation, style transfer) and the W&B logger."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from PIL import Image

from t2igan.callbacks import (
    CaptionInterpolation,
    NoiseInterpolation,
    SampleGrid,
    StageSamples,
    StyleTransferGrid,
)
from t2igan.models import GANINTCLS, StyleEncoderGAN

from .conftest import eventually, tiny_datamodule

KEYS = ("caption_interpolation", "noise_interpolation", "style_transfer")


@pytest.fixture(scope="module")
def gan_ckpt(data_root, tmp_path_factory) -> Path:
    """An untrained tiny GAN-INT-CLS checkpoint: the figures' layout does not need training.
    Its generator gets PyTorch's default initialisation, whose images vary visibly with text
    and noise (dcgan's N(0, 0.02) gives images of about 1e-6 before training)."""
    dm = tiny_datamodule(data_root)
    torch.manual_seed(0)
    gan = GANINTCLS(text_dim=dm.text_dim, image_size=32, z_dim=8, ngf=8, ndf=8,
                    text_encoder=dm.text_encoder_spec)  # fmt: skip
    for m in gan.generator.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d | torch.nn.Linear):
            m.reset_parameters()
    path = tmp_path_factory.mktemp("gan") / "gan.ckpt"
    torch.save({"t2igan": {"class_path": "t2igan.models.gan_int_cls.GANINTCLS"},
                "hyper_parameters": dict(gan.hparams), "state_dict": gan.state_dict()}, path)  # fmt: skip
    return path


def _callbacks(seed: int = 0, query_split: str = "test"):
    return [
        CaptionInterpolation(num_pairs=3, num_steps=5, seed=seed),
        NoiseInterpolation(num_captions=2, num_steps=4, seed=seed),
        StyleTransferGrid(num_queries=4, num_captions=3, query_split=query_split),
    ]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    # batched and single convolutions differ in the last bits
    return torch.allclose(a, b, atol=1e-4)


def _trainer(root: Path, callbacks, epochs: int, loggers=False, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs, limit_train_batches=2, limit_val_batches=0, accelerator="cpu",
        logger=loggers, callbacks=callbacks, default_root_dir=root, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1, **kwargs,
    )  # fmt: skip


def test_grids_have_the_papers_layout(gan_ckpt, data_root, tmp_path):
    dm = tiny_datamodule(data_root)
    model = StyleEncoderGAN(str(gan_ckpt))
    cap, noise, style = _callbacks()
    _trainer(tmp_path, [cap, noise, style], 1).fit(model, datamodule=dm)

    # caption interpolation: 3 rows x 5 columns, noise fixed per row, ends = the two captions
    images, nrow, labels = cap.draw(model)
    f = cap.fixed
    assert images.shape == (15, 3, 32, 32) and nrow == 5 and len(labels) == 3
    assert labels[0] == f"{f['captions'][0][0]}  ->  {f['captions'][0][1]}"
    row1 = slice(5, 10)
    assert _close(images[row1][0], model.sample(f["text_a"][1:2], f["noise"][1:2])[0])
    assert _close(images[row1][-1], model.sample(f["text_b"][1:2], f["noise"][1:2])[0])
    assert not _close(images[row1][0], images[row1][-1])
    assert not _close(images[row1][0], images[0])  # another row, another noise and caption

    # noise interpolation: 2 rows x 4 columns; every row has the same noise, its own caption
    images, nrow, labels = noise.draw(model)
    f = noise.fixed
    assert images.shape == (8, 3, 32, 32) and nrow == 4 and labels == f["captions"]
    assert _close(images[4], model.sample(f["text_emb"][1:2], f["z_a"])[0])
    assert _close(images[7], model.sample(f["text_emb"][1:2], f["z_b"])[0])
    assert not _close(images[4], images[7])

    # style transfer (Figure 6): a row of 4 real queries, then one row per caption (3)
    images, nrow, labels = style.draw(model)
    f = style.fixed
    assert images.shape == (16, 3, 32, 32) and nrow == 4
    assert labels == ["query images", *f["captions"]]
    assert torch.equal(images[:4], f["images"])
    styles = model.encode_style(f["images"])
    expected = model.sample(f["text_emb"][2:3].expand(4, -1), styles)
    assert _close(images[12:], expected) and not _close(images[8:12], expected)

    # the PNG: rows of 32 px with 2 px padding, captions written to the right of the grid
    png = Image.open(tmp_path / "style_transfer" / "epoch_0000.png")
    assert png.height == 4 * 34 + 2 and png.width > 4 * 34 + 2
    margin = np.asarray(png.convert("L"))[:, 4 * 34 + 2 :]
    assert (margin < 128).any()  # dark text in the margin, not just a blank strip


def test_figures_draw_on_rank_zero_only(gan_ckpt, data_root, tmp_path):
    other_rank = SimpleNamespace(current_epoch=0, is_global_zero=False,
                                 datamodule=tiny_datamodule(data_root), default_root_dir=tmp_path)  # fmt: skip
    model = StyleEncoderGAN(str(gan_ckpt))
    for cb in _callbacks():
        cb.on_train_epoch_end(other_rank, model)
        assert cb.fixed is None  # chose nothing, drew nothing
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("figure", "key", "needs"), [
    (StyleTransferGrid(num_queries=2, num_captions=2), "style_transfer", "encode_style"),
    (StageSamples(num_captions=2, num_samples=2), "stages", "sample_stages"),
])  # fmt: skip
def test_figures_skip_models_without_what_they_need(figure, key, needs, data_root, tmp_path):
    dm = tiny_datamodule(data_root)
    gan = GANINTCLS(text_dim=dm.text_dim, image_size=32, z_dim=8, ngf=8, ndf=8)
    trainer = _trainer(tmp_path, [figure, SampleGrid(num_captions=2, num_samples=2)], 2)
    with pytest.warns(UserWarning, match=f"GANINTCLS has no `{needs}`") as warned:
        trainer.fit(gan, datamodule=dm)
    assert sum(needs in str(w.message) for w in warned) == 1  # once, not every epoch
    assert figure.fixed is None and not (tmp_path / key).exists()
    assert (tmp_path / "samples" / "epoch_0001.png").is_file()  # the other figures still draw


def test_figures_reach_tensorboard_csv_and_wandb_offline(
    gan_ckpt, data_root, tmp_path, monkeypatch
):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    dm = tiny_datamodule(data_root)
    model = StyleEncoderGAN(str(gan_ckpt))
    loggers = [
        TensorBoardLogger(tmp_path, name="tb"),
        CSVLogger(tmp_path, name="csv"),
        WandbLogger(save_dir=str(tmp_path), offline=True, project="t2igan-test"),
    ]
    try:
        _trainer(tmp_path, _callbacks(), 2, loggers).fit(model, datamodule=dm)
    finally:
        import wandb

        loggers[2].experiment.finish()
        wandb.teardown()  # end W&B's process-wide service, so the next test starts clean
    for key in KEYS:  # PNGs under the run directory (all the CSV logger gets of a figure)
        assert (tmp_path / key / "epoch_0001.png").is_file()
    # TensorBoard: one image per figure per epoch, and its captions as text
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(loggers[0].log_dir, size_guidance={"images": 0}).Reload()
    assert set(KEYS) <= set(events.Tags()["images"])
    assert len(events.Images("style_transfer")) == 2
    # CSV: the metrics
    header = (Path(loggers[1].log_dir) / "metrics.csv").read_text().splitlines()[0]
    assert "train/style_loss" in header
    # W&B offline run directory: the images and the metrics (in the run's record file)
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")

    def media(key: str) -> int:
        return len(list((run_dir / "files" / "media" / "images").glob(f"{key}_*.png")))

    def records() -> bytes:
        return b"".join(p.read_bytes() for p in run_dir.glob("run-*.wandb"))

    assert eventually(lambda: all(media(key) == 2 for key in KEYS)), [media(k) for k in KEYS]
    assert eventually(lambda: b"train/style_loss" in records() and b"train/lr" in records())


def test_resume_keeps_the_fixed_inputs(gan_ckpt, data_root, tmp_path):
    dm = tiny_datamodule(data_root)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    first = _callbacks(seed=0)
    _trainer(tmp_path, [*first, ckpt], 1).fit(StyleEncoderGAN(str(gan_ckpt)), datamodule=dm)
    # A resumed run with callbacks that would choose differently (another seed, other split)
    second = _callbacks(seed=99, query_split="val")
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    _trainer(tmp_path, [*second, ckpt], 2).fit(
        StyleEncoderGAN(str(gan_ckpt)), datamodule=dm, ckpt_path=tmp_path / "ckpt" / "last.ckpt"
    )
    fresh = _callbacks(seed=99, query_split="val")
    for a, b, c in zip(first, second, fresh):
        assert a.fixed.keys() == b.fixed.keys()
        for k, v in a.fixed.items():
            assert torch.equal(v, b.fixed[k]) if torch.is_tensor(v) else v == b.fixed[k]
        # the check can fail: unrestored callbacks like `second` choose other inputs
        c.fixed = c.choose(_FakeTrainer(dm), StyleEncoderGAN(str(gan_ckpt)))
        assert any(not torch.equal(v, c.fixed[k]) for k, v in a.fixed.items() if torch.is_tensor(v))
    for key in KEYS:
        assert (tmp_path / key / "epoch_0001.png").is_file()


class _FakeTrainer:
    def __init__(self, dm) -> None:
        self.datamodule = dm


def test_sample_grid_rows_never_repeat_where_val_is_test(data_root, tmp_path):
    """On CUB the validation split is the test split: every row comes from it, once."""
    from t2igan.data import HashingEncoder, T2IDataModule

    from .data_fixtures import make_cub

    cub = T2IDataModule(dataset="cub", root=str(tmp_path), source=str(make_cub(tmp_path)),
                        image_size=32, text_encoder=HashingEncoder(dim=64), use_cache=False)  # fmt: skip
    synthetic = tiny_datamodule(data_root)
    model = GANINTCLS(text_dim=64, image_size=32, z_dim=8, ngf=8, ndf=8)
    grid = SampleGrid(num_captions=4, num_samples=2)
    fixed = grid.choose(SimpleNamespace(datamodule=cub), model)
    test = cub.dataset_of("test").split
    firsts = [caps[0] for caps in test.captions]
    assert len(set(fixed["captions"])) == 4 and set(fixed["captions"]) <= set(firsts)
    assert fixed["rows"] == "rows 1-4: val (test is the same split here)"
    fixed = grid.choose(SimpleNamespace(datamodule=synthetic), model)
    assert fixed["rows"] == "rows 1-2: val; rows 3-4: test" and len(fixed["captions"]) == 4
    grid.fixed = fixed
    assert grid.layout == fixed["rows"]  # starts the logged caption
