"""GAWWN's conditional keypoint generator G_k, text-only and partial generation, the figure of
generated keypoints, and the MHP variant (configs on synthetic birds and on the MPII subset)."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from t2igan.callbacks import GeneratedKeypointsGrid
from t2igan.callbacks.location import drawable
from t2igan.cli.fit import cli
from t2igan.cli.generate import generate, generate_main
from t2igan.data import HashingEncoder
from t2igan.data.contract import CUB_PARTS
from t2igan.models import GAWWNBox, GAWWNKeypointGenerator, GAWWNKeypoints
from t2igan.models.gawwn_keypoints import KeypointGeneratorNet, switch_units
from t2igan.models.loading import load_keypoint_generator, load_model

from .conftest import ROOT, SHARED_DATA, TINY_DATA, fit_briefly, tiny_datamodule
from .data_fixtures import write_jsonl
from .test_gawwn import _bottleneck, bn, fit_on_real_subset, lin

KG_TINY = dict(ngf=8, ndf=8, z_dim=10)
IMG_TINY = dict(image_size=64, ngf=4, ndf=4, proj_dim=8, z_dim=10)
BEAK, TAIL = CUB_PARTS.index("beak"), CUB_PARTS.index("tail")


def _n(net) -> int:
    return sum(p.numel() for p in net.parameters())


# ------------------------------------------------------------------------- the networks
def test_parameter_counts_equal_the_authors_torch_networks():
    # main_gen_keypoints.lua, ngf = ndf = 128 (train_cub_gen_keypoints.sh), nz = 100,
    # txtSize = 1024, num_elt = 15: G's three encoders, its 4 FC layers; D's two encoders, head.
    g = (lin(100, 512) + lin(1024, 512) + lin(45, 512) + bn(512) + lin(512, 256) + bn(256)
         + lin(1280, 1024) + bn(1024) + lin(1024, 512) + bn(512) + lin(512, 256) + bn(256)
         + lin(256, 45))  # fmt: skip
    d = (lin(45, 512) + bn(512) + lin(512, 256) + bn(256) + lin(1024, 512) + bn(512)
         + lin(512, 256) + bn(256) + lin(512, 256) + bn(256) + lin(256, 1))  # fmt: skip
    model = GAWWNKeypointGenerator()
    assert (_n(model.generator), _n(model.discriminator)) == (g, d) == (2_715_949, 946_177)
    # MPII's 17 parts: only the first and last layers of the keypoint paths grow
    mhp = GAWWNKeypointGenerator(num_parts=17)
    assert _n(mhp.generator) - g == 6 * 512 + 6 * 256 + 6 and _n(mhp.discriminator) - d == 6 * 512


def test_mhp_image_networks_are_main_mhp_lua():
    # main_mhp.lua against main_cub_keypoints.lua (ngf = ndf = 128, K = 17): G's local Linear
    # loses its BatchNorm1d, a residual bottleneck (512, mid 128) follows the local deconvolution;
    # D's activations are ELU (no parameters) and a Dropout follows the global vector.
    cub = GAWWNKeypoints(num_parts=17)
    mhp = GAWWNKeypoints(num_parts=17, g_variant="mhp", d_activation="elu", d_dropout=0.2,
                         fake_score_threshold=0.2)  # fmt: skip
    assert _n(mhp.generator) == _n(cub.generator) - bn(512) + _bottleneck(512)
    assert _n(mhp.discriminator) == _n(cub.discriminator)
    kinds = {type(m) for m in mhp.discriminator.modules()}
    assert torch.nn.ELU in kinds and torch.nn.Dropout in kinds and torch.nn.LeakyReLU not in kinds
    assert torch.nn.ELU not in {type(m) for m in cub.discriminator.modules()}
    # the parameter count of the CUB network against the Lua (as test_gawwn's, K = 17)
    assert _n(cub.generator) == 26_471_043 + 2 * (128 * 16 + 512 * 9)
    with pytest.raises(ValueError, match="unknown activation 'relu6'"):
        GAWWNKeypoints(d_activation="relu6")
    with pytest.raises(ValueError, match="unknown generator variant"):
        GAWWNKeypoints(g_variant="humans")


def test_switch_units_copy_given_parts_exactly_and_draw_the_rest():
    net = KeypointGeneratorNet(z_dim=10, text_dim=16, ngf=8).eval()
    given = torch.zeros(4, 15, 3)
    given[:, BEAK] = torch.tensor([0.8123, 0.3456, 1.0])
    given[:2, TAIL] = torch.tensor([0.1, 0.9, 1.0])
    out = net(torch.randn(4, 10), torch.randn(4, 16), given)
    assert out.shape == (4, 15, 3)
    assert torch.equal(out[:, BEAK], given[:, BEAK]) and torch.equal(out[:2, TAIL], given[:2, TAIL])
    drawn = torch.ones(4, 15, dtype=torch.bool)
    drawn[:, BEAK] = drawn[:2, TAIL] = False
    assert (out[drawn] > 0).all() and (out[drawn] < 1).all()  # sigmoid outputs
    assert not torch.equal(out[2:, TAIL], given[2:, TAIL])  # not given: drawn
    # a part given as invisible (v = 0) is drawn too (s is the visibility)
    given[:, BEAK, 2] = 0
    assert not torch.equal(net(torch.randn(4, 10), torch.randn(4, 16), given)[:, BEAK],
                           given[:, BEAK])  # fmt: skip


def test_switch_units_keep_each_part_with_keep_prob():
    kp = torch.rand(400, 15, 3) + 0.5  # no zero entries
    g = torch.Generator().manual_seed(0)
    cond = switch_units(kp, 0.1, g)
    kept = (cond != 0).all(-1)
    assert ((cond == 0).all(-1) | kept).all()  # whole rows, kept or zeroed
    assert torch.equal(cond[kept], kp[kept])
    assert abs(kept.float().mean().item() - 0.1) < 0.015  # 6000 Bernoulli(0.1) draws
    assert torch.equal(switch_units(kp, 1.0), kp) and not switch_units(kp, 0.0).any()


# ------------------------------------------------------------------- training, contract
@pytest.fixture
def kg_dm(data_root):
    return tiny_datamodule(data_root, image_size=64, load_size=76, flip=True)


def test_complete_shape_range_and_determinism(kg_dm):
    model = GAWWNKeypointGenerator(text_dim=kg_dm.text_dim, **KG_TINY)
    text = torch.from_numpy(kg_dm.text_encoder.encode(["a red bird", "a blue bird"]))
    noise = model.sample_noise(2, generator=torch.Generator().manual_seed(1))
    kp = model.complete(text, noise)
    assert kp.shape == (2, 15, 3) and (kp >= 0).all() and (kp <= 1).all()
    assert torch.equal(kp, model.complete(text, noise))  # eval mode, no randomness
    assert not torch.equal(kp, model.complete(text, model.sample_noise(2)))
    assert model.generator.training  # complete() leaves the mode as it was
    with pytest.raises(ValueError, match=r"keypoints must be \(B, 15, 3\)"):
        model.complete(text, noise, torch.zeros(2, 17, 3))


def test_training_step_moves_d_then_g_and_logs(kg_dm, tmp_path):
    model = GAWWNKeypointGenerator(text_dim=kg_dm.text_dim, **KG_TINY)
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    d0 = [p.detach().clone() for p in model.discriminator.parameters()]
    trainer = L.Trainer(max_steps=4, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=1,
                        default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, datamodule=kg_dm)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters()))
    assert {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake"} <= set(
        trainer.callback_metrics
    )
    assert "val/part_distance" in trainer.validate(model, datamodule=kg_dm, verbose=False)[0]


def test_checkpoint_round_trip_and_wrong_kinds(kg_dm, tmp_path):
    model = GAWWNKeypointGenerator(text_dim=kg_dm.text_dim, text_encoder=kg_dm.text_encoder_spec,
                                   **KG_TINY)  # fmt: skip
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(model, datamodule=kg_dm)
    path = tmp_path / "kg.ckpt"
    trainer.save_checkpoint(path)
    loaded = load_keypoint_generator(path)
    text = torch.randn(3, kg_dm.text_dim)
    noise = model.sample_noise(3)
    assert torch.equal(loaded.complete(text, noise), model.complete(text, noise))
    assert torch.load(path, weights_only=True)["t2igan"]["class_path"].endswith(
        "gawwn_keypoints.GAWWNKeypointGenerator"
    )
    with pytest.raises(ValueError, match="is a GAWWN keypoint generator.*--keypoint-generator"):
        load_model(path)


# ------------------------------------------------------------------------------ generate
@pytest.fixture(scope="module")
def ckpts(data_root, tmp_path_factory) -> dict:
    dm = tiny_datamodule(data_root, image_size=64, load_size=76, text_encoder=HashingEncoder())
    folder = tmp_path_factory.mktemp("kg")
    models = {
        "image": GAWWNKeypoints(text_dim=dm.text_dim, text_encoder=dm.text_encoder_spec,
                                **IMG_TINY),
        "kg": GAWWNKeypointGenerator(text_dim=dm.text_dim, text_encoder=dm.text_encoder_spec,
                                     **KG_TINY),
        "box": GAWWNBox(text_dim=dm.text_dim, text_encoder=dm.text_encoder_spec, **IMG_TINY),
        "kg17": GAWWNKeypointGenerator(text_dim=dm.text_dim, num_parts=17,
                                       text_encoder=dm.text_encoder_spec, **KG_TINY),
    }  # fmt: skip
    paths = {name: folder / f"{name}.ckpt" for name in models}
    for name, model in models.items():
        if name == "kg17":  # no 17-part data here: saved untrained, as a checkpoint holds it
            torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                        "t2igan": {"class_path": "t2igan.models.GAWWNKeypointGenerator"},
                        "pytorch-lightning_version": L.__version__}, paths[name])  # fmt: skip
            continue
        trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, limit_val_batches=0)  # fmt: skip
        trainer.fit(model, datamodule=dm)
        trainer.save_checkpoint(paths[name])
    return paths


def _parts(path) -> dict:
    return json.loads(path.read_text())


def test_generate_text_only_draws_keypoints_then_images(ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    generate_main(["--ckpt", str(ckpts["image"]), "--keypoint-generator", str(ckpts["kg"]),
                   "--caption", "a red bird", "--caption", "a blue bird", "--num", "3",
                   "--out", str(out)])  # fmt: skip
    assert "wrote" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert len([n for n in names if n.endswith(".json")]) == 6  # 2 captions x 3 images
    assert len([n for n in names if n.endswith("_location.png")]) == 1 + 6
    # each JSON holds the drawn parts (visibility > 0.5) as --keypoints reads them
    kg = load_keypoint_generator(ckpts["kg"])
    enc = HashingEncoder()
    text = torch.from_numpy(enc.encode(["a blue bird"])).expand(3, -1)
    image = load_model(ckpts["image"])
    noise = image.sample_noise(3, generator=torch.Generator().manual_seed(0))
    expected = drawable(kg.complete(text, noise))  # the same noise as the images (same z_dim)
    for i in range(3):
        parts = _parts(out / f"c01_i{i:02d}.json")
        vis = [CUB_PARTS[k] for k in range(15) if expected[i, k, 2] > 0]
        assert sorted(parts) == sorted(vis)
        for name, xy in parts.items():
            k = CUB_PARTS.index(name)
            np.testing.assert_allclose(xy, expected[i, k, :2].tolist(), atol=6e-5)
        clean, marked = (np.asarray(Image.open(out / f"c01_i{i:02d}{s}.png"))
                         for s in ("", "_location"))  # fmt: skip
        assert clean.shape == marked.shape and (clean != marked).any() == bool(parts)
    # a JSON written goes back in as --keypoints
    again = generate(str(ckpts["image"]), ["a blue bird"], num=1, out=str(tmp_path / "again"),
                     keypoint_files=[str(out / "c01_i00.json")])  # fmt: skip
    assert any(p.name == "c00_i00.json" for p in again)


def test_generate_partial_keeps_the_given_parts(ckpts, tmp_path):
    given = {"beak": [0.8, 0.3], "tail": [0.15, 0.65]}
    (tmp_path / "partial.json").write_text(json.dumps(given))
    out = tmp_path / "o"
    paths = generate(str(ckpts["image"]), ["a small green bird"], num=4, out=str(out),
                     keypoint_files=[str(tmp_path / "partial.json")],
                     keypoint_generator=str(ckpts["kg"]))  # fmt: skip
    jsons = sorted(p for p in paths if p.suffix == ".json")
    assert len(jsons) == 4
    drawn = []
    for p in jsons:
        parts = _parts(p)
        assert parts["beak"] == given["beak"] and parts["tail"] == given["tail"]
        drawn.append({k: v for k, v in parts.items() if k not in given})
    # the other parts are completed by G_k, differently per noise column
    assert len({json.dumps(d, sort_keys=True) for d in drawn}) > 1
    img = Image.open(out / "grid.png")
    assert img.width > 0


@pytest.mark.parametrize("which, extra, message", [
    ("kg_as_ckpt", [], "is a GAWWN keypoint generator"),
    ("image_as_kg", [], "holds a GAWWNKeypoints, not a GAWWNKeypointGenerator"),
    ("box_model", [], "draws keypoints for a keypoint model"),
    ("parts", [], "draws 17 parts"),
])  # fmt: skip
def test_generate_keypoint_generator_errors(ckpts, tmp_path, which, extra, message):
    ckpt, kg = {
        "kg_as_ckpt": (ckpts["kg"], ckpts["kg"]),
        "image_as_kg": (ckpts["image"], ckpts["image"]),
        "box_model": (ckpts["box"], ckpts["kg"]),
        "parts": (ckpts["image"], ckpts["kg17"]),
    }[which]
    with pytest.raises(ValueError, match=message):
        generate_main(["--ckpt", str(ckpt), "--keypoint-generator", str(kg), "--caption", "x",
                       "--out", str(tmp_path / "o"), *extra])  # fmt: skip


# -------------------------------------------------------------------------------- figure
@pytest.mark.parametrize("training", ["kg", "image"])
def test_generated_keypoints_figure(ckpts, data_root, tmp_path, training):
    dm = tiny_datamodule(data_root, image_size=64, load_size=76, text_encoder=HashingEncoder())
    if training == "kg":
        module = load_keypoint_generator(ckpts["kg"])
        fig = GeneratedKeypointsGrid(num_captions=2, num_samples=3,
                                     image_model=str(ckpts["image"]))  # fmt: skip
    else:
        module = load_model(ckpts["image"])
        fig = GeneratedKeypointsGrid(num_captions=2, num_samples=3,
                                     keypoint_generator=str(ckpts["kg"]))  # fmt: skip
    assert fig.supports(module)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.datamodule = dm  # what choose() reads
    fig.fixed = fig.choose(trainer, module)
    images, nrow, labels = fig.draw(module)
    assert nrow == 3 and images.shape == (2 * 3 * 3, 3, 64, 64)  # 2 captions x 3 rows x 3
    assert labels[0].endswith("keypoints drawn") and labels[1].endswith("images")
    # the dots row is grey (zero) but for the dots; the fixed inputs survive a resume
    grey = images[:3].abs() < 0.01  # mid grey, after the round trip through 8-bit pixels
    assert grey.float().mean() > 0.8 and not grey.all()
    again = GeneratedKeypointsGrid(num_captions=2, num_samples=3, **(
        {"image_model": str(ckpts["image"])} if training == "kg"
        else {"keypoint_generator": str(ckpts["kg"])}))  # fmt: skip
    again.load_state_dict(fig.state_dict())
    assert torch.equal(again.draw(module)[0], images)
    # a model that takes no keypoints (and no generator) gets a warning, no figure
    box = load_model(ckpts["box"])
    with pytest.warns(UserWarning, match="no generated-keypoints figure"):
        assert not GeneratedKeypointsGrid().supports(box)


class _NoPixels:
    """A split's images that fail when one is read."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        raise AssertionError(f"image {i} was read")


def test_keypoints_only_batches_read_no_image(data_root, tmp_path):
    dm = tiny_datamodule(data_root, image_size=64, load_size=76, flip=True, images=False)
    train = dm.datasets["train"]
    train.split.images = _NoPixels(len(train))  # any image read now fails
    batch = next(iter(dm.train_dataloader()))
    assert not dm.has_images and "images" not in batch and "wrong_images" not in batch
    assert batch["keypoints"].shape == (8, 15, 3) and batch["text_emb"].shape[0] == 8
    model = GAWWNKeypointGenerator(text_dim=dm.text_dim, **KG_TINY)
    assert fit_briefly(model, dm, steps=2).global_step == 2
    # a model that draws images says which option took them away
    gan = GAWWNKeypoints(text_dim=dm.text_dim, **IMG_TINY)
    with pytest.raises(ValueError, match="--data.images false gives batches without them"):
        fit_briefly(gan, dm)


# ------------------------------------------------------------------------------ configs
def test_keypoint_generator_config_fast_dev_run(tmp_path):
    run = cli(args=[
        "fit", "--config", str(ROOT / "experiments" / "gawwn_keypoint_generator.yaml"),
        *TINY_DATA, "--data.root", str(tmp_path), "--data.image_size", "64",
        "--data.load_size", "76", "--model.init_args.ngf", "8", "--model.init_args.ndf", "8",
        "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu",
        "--trainer.default_root_dir", str(tmp_path / "run"),
    ])  # fmt: skip
    assert isinstance(run.model, GAWWNKeypointGenerator)
    assert run.model.num_parts == 15 and run.model.keep_prob == 0.1
    assert run.trainer.state.finished and run.trainer.global_step > 0
    assert not run.datamodule.images  # the config reads no image


def test_mhp_fake_score_threshold_holds_d_back(data_root, tmp_path):
    dm = tiny_datamodule(data_root, image_size=64, load_size=76)
    # threshold above any running mean: D never updates, G does; the tracker moves and is saved
    model = GAWWNKeypoints(text_dim=dm.text_dim, g_variant="mhp", d_activation="elu",
                           d_dropout=0.2, fake_score_threshold=0.99, **IMG_TINY)  # fmt: skip
    d0 = [p.detach().clone() for p in model.discriminator.parameters()]
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    trainer = L.Trainer(max_steps=6, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert all(torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    assert float(model.fake_score) != 0.5 and "fake_score" in model.state_dict()
    assert trainer.callback_metrics["train/d_updated"] == 0
    # a threshold under every score: D updates as without one
    low = GAWWNKeypoints(text_dim=dm.text_dim, fake_score_threshold=1e-6, **IMG_TINY)
    d0 = [p.detach().clone() for p in low.discriminator.parameters()]
    L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              limit_val_batches=0).fit(low, datamodule=dm)  # fmt: skip
    assert any(not torch.equal(a, b) for a, b in zip(d0, low.discriminator.parameters()))


MPII = SHARED_DATA / "mpii"


@pytest.fixture
def mpii_subset(tmp_path):
    """The shared MPII subset as a reader folder (its 5 annotated people serve as train and
    val), with captions this test writes (GAWWN's were never published)."""
    images = MPII / "images_and_json_mmpose"
    folder = tmp_path / "mpii"
    (folder / "annot").mkdir(parents=True)
    (folder / "images").symlink_to(images)
    for split in ("train", "valid"):
        (folder / "annot" / f"{split}.h5").symlink_to(MPII / "annot" / "valid.h5")
    colours = ["red", "blue", "green", "black", "white"]
    write_jsonl(folder / "captions.jsonl", [
        {"image": p.name, "captions": [f"a person in a {colours[i % 5]} shirt.",
                                       f"someone wearing {colours[(i + 1) % 5]}."]}
        for i, p in enumerate(sorted(images.glob("*.jpg")))
    ])  # fmt: skip
    return folder


@pytest.mark.skipif(not MPII.exists(), reason="shared real data not present")
@pytest.mark.parametrize("config", ["gawwn_mhp.yaml", "gawwn_mhp_keypoint_generator.yaml"])
def test_mhp_configs_fit_on_the_real_mpii_subset(config, mpii_subset, tmp_path):
    _, batch = fit_on_real_subset(config, mpii_subset, tmp_path, 70)
    assert batch["keypoints"].shape == (4, 17, 3) and batch["text_emb"].shape[0] == 4


def test_resume_after_a_crash_is_exact(kg_dm, tmp_path):
    from t2igan.callbacks import RunCheckpoint

    from .test_resume import Crash

    def fit(run, crash=None, ckpt_path=None):
        L.seed_everything(0)
        model = GAWWNKeypointGenerator(text_dim=kg_dm.text_dim, lr_decay_every=2, **KG_TINY)
        callbacks = [RunCheckpoint()] + ([Crash(*crash)] if crash else [])
        trainer = L.Trainer(max_epochs=3, limit_train_batches=3, limit_val_batches=0,
                            logger=False, enable_progress_bar=False, default_root_dir=run,
                            callbacks=callbacks)  # fmt: skip
        L.seed_everything(0)
        if crash:
            with pytest.raises(RuntimeError, match="simulated crash"):
                trainer.fit(model, datamodule=kg_dm)
        else:
            trainer.fit(model, datamodule=kg_dm, ckpt_path=ckpt_path)
        return model

    straight = fit(tmp_path / "a")
    fit(tmp_path / "b", crash=(1, 2))
    resumed = fit(tmp_path / "b", ckpt_path=tmp_path / "b" / "checkpoints" / "last.ckpt")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_instance_noise_reaches_d_only_when_asked():
    """``d_noise`` (opt-in, paper 0) perturbs what D_k judges in training; 0 leaves it exact,
    and a negative value is refused."""
    from t2igan.models import GAWWNKeypointGenerator

    kp, text = torch.rand(4, 15, 3), torch.randn(4, 8)
    plain = GAWWNKeypointGenerator(text_dim=8, ngf=4, ndf=4).eval()
    torch.testing.assert_close(plain._judge(kp, text), plain.discriminator(kp, text))
    noisy = GAWWNKeypointGenerator(text_dim=8, ngf=4, ndf=4, d_noise=0.5).eval()
    assert not torch.allclose(noisy._judge(kp, text), noisy.discriminator(kp, text))
    with pytest.raises(ValueError, match="d_noise is a standard deviation"):
        GAWWNKeypointGenerator(text_dim=8, d_noise=-1)
