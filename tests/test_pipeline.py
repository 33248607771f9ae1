"""The Python API (``t2igan.load`` -> :class:`t2igan.pipeline.Pipeline`): it draws from every
kind of checkpoint (GAN-INT-CLS with the quickstart's encoder, StackGAN, GAWWN with boxes and
keypoints, with and without the keypoint generator, alignDRAW), gives what ``t2igan generate``
writes, and refuses bad input with the command line's one-line errors."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

import t2igan
from t2igan.cli.generate import generate
from t2igan.data import HashingEncoder
from t2igan.models import GANINTCLS, GAWWNBox, GAWWNKeypointGenerator, GAWWNKeypoints
from t2igan.models.char_cnn_rnn import CharCNNEncoder

from .conftest import ROOT, fit_briefly, tiny_datamodule
from .test_draw import tiny_aligndraw

ENCODER = HashingEncoder(64)


def untrained(model, path):
    """``model``'s checkpoint as ``t2igan fit`` writes it, without training."""
    checkpoint = {"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict(),
                  "pytorch-lightning_version": L.__version__}  # fmt: skip
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def gawwn(cls, path, **kwargs):
    torch.manual_seed(0)
    model = cls(text_dim=64, image_size=64, ngf=4, ndf=4, text_encoder=ENCODER.spec(), **kwargs)
    return untrained(model, path)


def pixels(images) -> np.ndarray:
    return np.stack([np.asarray(img) for img in images])


def test_quickstart_model_draws_what_generate_writes(data_root, tmp_path):
    encoder = CharCNNEncoder("t2igan:synthetic_birds")  # the quickstart's text encoder
    dm = tiny_datamodule(data_root, num_images=16, num_eval_images=8, text_encoder=encoder)
    torch.manual_seed(0)
    model = GANINTCLS(text_dim=encoder.dim, image_size=32, ngf=8, ndf=8,
                      text_encoder=dm.text_encoder_spec)  # fmt: skip
    for w in model.generator.parameters():  # weights that draw more than a flat grey
        if w.dim() > 1:
            torch.nn.init.normal_(w, 0, 0.5)
    path = untrained(model, tmp_path / "gan.ckpt")
    pipe = t2igan.load(path)
    captions = ["a bird with a red body and a blue head", "a yellow bird"]
    images = pipe(captions, num=3, seed=4)
    assert len(images) == 6 and all(img.size == (32, 32) and img.mode == "RGB" for img in images)
    assert np.array_equal(pixels(images), pixels(pipe(captions, num=3, seed=4)))  # seeded
    assert pixels(images).std() > 5  # pictures, not a flat grey
    rows = pipe.sample(captions, num=3, seed=4)
    assert not torch.equal(rows[0], rows[1])  # each row its caption
    generate(str(path), captions, num=3, seed=4, out=str(tmp_path / "out"))
    for k, img in enumerate(images):  # generate writes the same images, 4x (nearest) and framed
        written = np.asarray(Image.open(tmp_path / "out" / f"c{k // 3:02d}_i{k % 3:02d}.png"))
        side = written.shape[0] // 32 * 32
        top = (written.shape[0] - side) // 2
        assert written.shape[0] >= 128
        scale = 128 // 32
        grid = written[top : top + 32 * scale : scale, top : top + 32 * scale : scale]
        assert np.abs(grid.astype(int) - np.asarray(img).astype(int)).max() <= 1


def test_stackgan_checkpoint_draws():
    pipe = t2igan.load(ROOT / "tests" / "checkpoints" / "pre13_stackgan.ckpt")
    images = pipe.sample("a red bird", num=2)
    side = pipe.model.image_size
    assert images.shape == (1, 2, 3, side, side) and images.abs().max() <= 1


def test_gawwn_box_draws_where_told_and_refuses_bad_boxes(tmp_path):
    pipe = t2igan.load(gawwn(GAWWNBox, tmp_path / "box.ckpt"))
    boxes = [(0.1, 0.2, 0.5, 0.4), (0.5, 0.5, 0.4, 0.4)]
    images = pipe.sample(["a red bird", "a blue bird"], num=2, boxes=boxes)
    assert images.shape == (4, 2, 3, 64, 64)
    assert not torch.equal(images[0], images[1])  # the box moves the bird
    with pytest.raises(ValueError, match=r"must be finite numbers"):
        pipe("a red bird", boxes=[(float("nan"), 0.1, 0.2, 0.2)])
    with pytest.raises(ValueError, match="draws where it is told: give boxes"):
        pipe("a red bird")
    with pytest.raises(ValueError, match="takes text and boxes only, not keypoints"):
        pipe("a red bird", boxes=boxes, keypoints={"beak": (0.5, 0.5)})


def test_gawwn_keypoints_with_and_without_the_keypoint_generator(tmp_path):
    path = gawwn(GAWWNKeypoints, tmp_path / "kp.ckpt")
    pipe = t2igan.load(path)
    assert pipe.part_names[:2] == ("back", "beak")
    images = pipe("a red bird", num=2, keypoints=[{"beak": (0.7, 0.3)}, {"tail": (0.2, 0.6)}])
    assert len(images) == 4 and images[0].size == (64, 64)
    with pytest.raises(ValueError, match="unknown part 'wing'"):
        pipe("a red bird", keypoints={"wing": (0.5, 0.5)})
    torch.manual_seed(0)
    kg = GAWWNKeypointGenerator(text_dim=64, ngf=8, ndf=8, z_dim=10, text_encoder=ENCODER.spec())
    with_kg = t2igan.load(path, keypoint_generator=untrained(kg, tmp_path / "kg.ckpt"))
    drawn = with_kg.sample("a red bird", num=2)  # no keypoints given: G_k draws them all
    assert drawn.shape == (1, 2, 3, 64, 64)
    kept = with_kg.sample("a red bird", num=2, keypoints={"beak": (0.7, 0.3)})
    assert not torch.equal(drawn, kept)  # the beak given is kept


def test_aligndraw_reads_its_word_ids(data_root, tmp_path):
    dm = tiny_datamodule(data_root, num_images=16, num_eval_images=8)
    model = tiny_aligndraw(dm)
    trainer = fit_briefly(model, dm, steps=1)
    trainer.save_checkpoint(tmp_path / "align.ckpt")
    pipe = t2igan.load(tmp_path / "align.ckpt")
    images = pipe.sample(["a bird with a red body", "a yellow bird with a blue head"], num=2)
    assert images.shape == (2, 2, 3, 32, 32) and not torch.equal(images[0], images[1])


def test_bad_input_is_one_line(tmp_path):
    pipe = t2igan.load(gawwn(GAWWNBox, tmp_path / "box.ckpt"))
    for call, message in ((lambda: pipe("  ", boxes=[(0.1, 0.1, 0.5, 0.5)]), "caption 1 is empty"),
                          (lambda: pipe("a bird", num=0, boxes=[(0.1, 0.1, 0.5, 0.5)]),
                           "at least 1"),
                          (lambda: pipe([], boxes=[(0.1, 0.1, 0.5, 0.5)]), "at least one caption"),
                          (lambda: t2igan.load(tmp_path / "missing.ckpt"), "does not exist")):  # fmt: skip
        with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
            call()
        assert "\n" not in str(err.value)


def test_keypoint_models_name_their_own_parts():
    """Consumers ask a keypoint model for its part names instead of counting its keypoints."""
    from t2igan.data.contract import CUB_PARTS
    from t2igan.data.mpii import MPII_PARTS

    for k, names in ((15, CUB_PARTS), (17, MPII_PARTS)):
        image_model = GAWWNKeypoints(text_dim=8, image_size=64, ngf=4, ndf=4, num_parts=k)
        kg = GAWWNKeypointGenerator(text_dim=8, ngf=8, ndf=8, z_dim=4, num_parts=k)
        assert image_model.part_names == kg.part_names == names
    with pytest.raises(ValueError, match="no part names for 9 keypoints"):
        _ = GAWWNKeypointGenerator(text_dim=8, ngf=8, ndf=8, z_dim=4, num_parts=9).part_names


def test_api_arguments_of_the_wrong_type_are_one_line(tmp_path):
    pipe = t2igan.load(gawwn(GAWWNBox, tmp_path / "box.ckpt"))
    box = [(0.1, 0.1, 0.5, 0.5)]
    with pytest.raises(ValueError, match="captions must be a string or a list of strings"):
        pipe(None, boxes=box)
    with pytest.raises(ValueError, match="a whole number, at least 1, got 2.5"):
        pipe("a bird", num=2.5, boxes=box)
