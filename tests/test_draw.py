"""DRAW and alignDRAW: the filterbank, the KL, the bound's descent, the vocabulary through a
checkpoint, the parameter counts, exact resume, the figures and ``generate``. (The model
contract runs over both in test_model_contract.py.)"""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from t2igan.callbacks import CanvasSteps, RunCheckpoint, WordAlignment
from t2igan.cli.generate import generate
from t2igan.data.tokens import Vocabulary, words
from t2igan.models import DRAW, AlignDRAW
from t2igan.models.draw import (
    attention_window,
    filterbank,
    filterbanks,
    gaussian_kl,
    merged_arrays,
    parameter_count,
    read_glimpse,
    write_patch,
)
from t2igan.models.loading import load_model

from .conftest import tiny_datamodule

TINY = dict(steps=3, enc_dim=16, dec_dim=16, z_dim=4, read_n=3, write_n=3)


def tiny_draw(dm, **kwargs) -> DRAW:
    return DRAW(dm.text_dim, dm.image_size, text_encoder=dm.text_encoder_spec, **{**TINY, **kwargs})


def tiny_aligndraw(dm, **kwargs) -> AlignDRAW:
    return AlignDRAW(dm.text_dim, dm.image_size, lang_dim=8, align_dim=8,
                     text_encoder=dm.text_encoder_spec, **{**TINY, **kwargs})  # fmt: skip


def _window(g_y: float, g_x: float, delta: float, sigma2: float, n: int) -> dict:
    one = torch.ones(1)
    return {"gy": g_y * one, "gx": g_x * one, "delta": delta * one, "sigma2": sigma2 * one,
            "gamma": one}  # fmt: skip


# ------------------------------------------------------------------------------ filterbank


def test_filterbank_rows_sum_to_one():
    g, delta, sigma2 = torch.tensor([7.3, 16.5]), torch.tensor([1.7, 3.0]), torch.tensor([0.8, 4.0])
    f = filterbank(g, delta, sigma2, n=5, size=32)
    assert f.shape == (2, 5, 32)
    assert torch.allclose(f.sum(-1), torch.ones(2, 5), atol=1e-6)


@pytest.mark.parametrize("n", [3, 5, 4])
def test_a_window_centred_on_a_pixel_reads_it_and_its_grid_around_it(n):
    """With a stride of one pixel and a narrow Gaussian, the glimpse is the N x N block of
    pixels centred on (g_Y, g_X) (1-based). The grid of the older ports (arange(N) - N/2 - 0.5
    from 0) would read a block shifted by half a pixel or one pixel to the top left."""
    x = torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16)
    row, col = 7, 10  # 1-based pixel
    offset = 0.5 if n % 2 == 0 else 0.0  # an even grid is centred between pixels
    fy, fx = filterbanks(_window(row + offset, col + offset, 1.0, 0.01, n), n, 16, 16)
    glimpse = read_glimpse(x, fy, fx)[0, 0]
    top, left = row - 1 - (n - 1) // 2, col - 1 - (n - 1) // 2
    if n % 2:
        assert float(glimpse[n // 2, n // 2]) == pytest.approx(float(x[0, 0, row - 1, col - 1]))
    expected = x[0, 0, top : top + n, left : left + n]
    assert torch.allclose(glimpse, expected, atol=1e-3)


def test_attention_window_maps_zero_to_the_image_centre_and_a_full_stride():
    w = attention_window(torch.zeros(1, 5), 32, 32, 9)
    assert float(w["gx"]) == float(w["gy"]) == 16.5  # the middle of pixels 1..32
    assert float(w["delta"]) == pytest.approx(31 / 8)  # the grid spans the image
    assert float(w["sigma2"]) == float(w["gamma"]) == 1.0
    with pytest.raises(ValueError, match="N >= 2"):
        attention_window(torch.zeros(1, 5), 32, 32, 1)


def test_read_of_write_with_matching_parameters_inverts_on_a_smooth_image():
    """write then read (and read then write) with the same window give back a smooth input
    (the filters are a narrow blur); with a window moved by two pixels they do not."""
    side = 16
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    image = torch.sin(2 * math.pi * xx / 32) * torch.cos(2 * math.pi * yy / 40)
    image = image.view(1, 1, side, side).float()
    fy, fx = filterbanks(_window(8.5, 8.5, 1.0, 0.16, side), side, side, side)
    back = write_patch(read_glimpse(image, fy, fx), fy, fx)
    err = (back - image).abs()[..., 1:-1, 1:-1].max()
    assert err < 0.02
    patch_back = read_glimpse(write_patch(image, fy, fx), fy, fx)
    assert (patch_back - image).abs()[..., 1:-1, 1:-1].max() < 0.02
    gy, gx = filterbanks(_window(10.5, 10.5, 1.0, 0.16, side), side, side, side)
    moved = write_patch(read_glimpse(image, gy, gx), fy, fx)
    assert (moved - image).abs()[..., 1:-1, 1:-1].max() > 10 * err


# --------------------------------------------------------------------------- objectives


def test_kl_matches_the_closed_form_of_torch_distributions():
    torch.manual_seed(0)
    mu_q, ls_q, mu_p, ls_p = (torch.randn(4, 6) for _ in range(4))
    expected = kl_divergence(Normal(mu_q, ls_q.exp()), Normal(mu_p, ls_p.exp())).sum(-1)
    assert torch.allclose(gaussian_kl(mu_q, ls_q, mu_p, ls_p), expected, atol=1e-5)
    standard = kl_divergence(Normal(mu_q, ls_q.exp()), Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(gaussian_kl(mu_q, ls_q), standard, atol=1e-5)


@pytest.mark.parametrize("make", [tiny_draw, tiny_aligndraw], ids=["draw", "aligndraw"])
def test_the_bound_decreases_over_a_few_steps_on_a_tiny_batch(make, data_root):
    dm = tiny_datamodule(data_root)
    L.seed_everything(0)
    # lr 1e-2: at the authors' 1e-3 and N(0, 0.01) weights the first steps move the bound by
    # only a few nats (the write window spreads each patch value thinly over the canvas)
    extra = {"vocabulary": dm.vocabulary.itos} if make is tiny_aligndraw else {}
    model = make(dm, lr=1e-2, **extra)
    batch = next(iter(dm.train_dataloader()))
    opt = model.configure_optimizers()
    eps = torch.randn(len(batch["images"]), model.z_dim)  # the same q noise every step

    def bound() -> torch.Tensor:
        cond = model.condition(batch["text_emb"], model.conditioning_of(batch))
        out = model.net(batch["images"], cond, eps)
        return (out["recon"] + out["kl"]).mean()

    first = float(bound())
    for _ in range(20):
        opt.zero_grad()
        loss = bound()
        loss.backward()
        model.on_before_optimizer_step(opt)
        opt.step()
    assert float(bound()) < first - 100  # nats per image, of about 2130


def test_per_parameter_clipping_limits_each_gradient_to_norm_10(data_root):
    dm = tiny_datamodule(data_root)
    model = tiny_draw(dm)
    for p in model.parameters():
        p.grad = torch.full_like(p, 100.0) if p.requires_grad else None
    model.on_before_optimizer_step(None)
    merged = merged_arrays(model.net)
    norms = [float(p.grad[i].norm()) for p in model.parameters() if p.grad is not None
             for i in merged.get(p, [...])]  # fmt: skip
    assert norms == pytest.approx([10.0] * len(norms), rel=1e-5) and len(norms) > 5
    # a parameter holding two of the authors' arrays (q: W_henc_mu, W_henc_logsigma) is
    # clipped as two: a large mu gradient does not shrink the small log-sigma one
    z = model.net.z_dim
    q = model.net.q.weight
    q.grad = torch.cat([torch.full_like(q[:z], 100.0), torch.full_like(q[z:], 1e-3)])
    model.on_before_optimizer_step(None)
    assert float(q.grad[:z].norm()) == pytest.approx(10.0, rel=1e-5)
    assert torch.equal(q.grad[z:], torch.full_like(q[z:], 1e-3))


# ------------------------------------------------------------------------ parameter counts


def test_aligndraw_defaults_have_the_authors_coco_parameter_count():
    """The authors' COCO network (coco/alignDraw.py create_* with coco-captions-32x32.json:
    dimY 25323, lang 128, align 512, N 9 / 9, LSTMs 550, z 275, 32 x 32 x 3), parameter by
    parameter as the Theano code creates them."""
    V, lang, align, n_r, n_w, enc, dec, z, x = 25323, 128, 512, 9, 9, 550, 550, 275, 3072
    theano = {
        "W_y_hLangEnc": V * 4 * lang, "W_hLangEnc_hLangEnc": lang * 4 * lang, "b_hLangEnc": 4 * lang,
        "W_yRev_hLangEncRev": V * 4 * lang, "W_hLangEncRev_hLangEncRev": lang * 4 * lang,
        "b_hLangEncRev": 4 * lang,
        "W_lang_align": 2 * lang * align, "W_hdec_align": dec * align, "b_align": align,
        "v_align": align, "W_s_hdec": 2 * lang * 4 * dec,
        "W_hdec_read_attent": dec * 5, "b_read_attent": 5,
        "W_henc_henc": enc * 4 * enc, "W_inp_henc": (2 * 3 * n_r * n_r + dec) * 4 * enc,
        "b_henc": 4 * enc,
        "W_henc_mu": enc * z, "W_henc_logsigma": enc * z, "b_mu": z, "b_logsigma": z,
        "W_hdec_hdec": dec * 4 * dec, "W_z_hdec": z * 4 * dec, "b_hdec": 4 * dec,
        "W_hdec_write_attent": dec * 5, "b_write_attent": 5,
        "W_hdec_c": dec * 3 * n_w * n_w, "b_c": 3 * n_w * n_w,
        "W_hdec_mu_and_logsigma_prior": dec * 2 * z, "b_mu_and_logsigma_prior": 2 * z,
        "h0_lang": lang, "h0_enc": enc, "h0_dec": dec, "c0": x,
    }  # fmt: skip
    assert len(theano) == 33  # the code's params_names
    vocabulary = ["<pad>", "<unk>", *(f"w{i}" for i in range(V - 2))]
    model = AlignDRAW(text_dim=384, vocabulary=vocabulary)
    assert parameter_count(model) == sum(theano.values()) == 33_098_147
    # the second LSTM bias and the language LSTM's input selector are frozen, not trained
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"net.language.weight_ih_l0", "net.language.weight_ih_l0_reverse",
                      "net.language.bias_hh_l0", "net.language.bias_hh_l0_reverse",
                      "net.encoder.bias_hh", "net.decoder.bias_hh"}  # fmt: skip


def test_draw_parameter_count_follows_its_equations():
    """DRAW at its defaults (T 32, LSTMs 800, z 100, N 12 / 12) on a 384-d caption: the
    encoder reads [r_t, h_dec] (2 x 3 x 12^2 + 800), the decoder [z_t, text] (100 + 384), one
    bias per gate, q's two linear maps, the two 5-output attention maps, the 3 x 12^2 patch."""
    h, z, n, t = 800, 100, 12, 384
    expected = ((2 * 3 * n * n + h) * 4 * h + h * 4 * h + 4 * h) + (h * 2 * z + 2 * z) + (
        (z + t) * 4 * h + h * 4 * h + 4 * h) + 2 * (h * 5 + 5) + (h * 3 * n * n + 3 * n * n)  # fmt: skip
    assert parameter_count(DRAW(text_dim=t)) == expected
    # without attention: read [x, x_hat] and write W h over the whole image
    plain = DRAW(text_dim=t, read_n=0, write_n=0)
    assert parameter_count(plain) == expected - 2 * (h * 5 + 5) + (2 * 3072 - 2 * 3 * n * n) * 4 * h + (
        h * 3072 + 3072 - h * 3 * n * n - 3 * n * n)  # fmt: skip


# ------------------------------------------------------------------- words and checkpoints


def test_vocabulary_maps_unknown_words_to_one_id_and_cuts_long_captions():
    vocab = Vocabulary.build(["A red bird.", "a blue bird, a red head"])
    assert vocab.itos[:4] == ["<pad>", "<unk>", "a", "bird"]  # by frequency, then a-z
    ids = vocab.encode("A purple bird with a red head and red wings", max_words=5)
    assert vocab.decode(ids) == ["a", "<unk>", "bird", "<unk>", "a"]
    assert len(ids) == 5 and ids[1] == 1
    assert vocab.decode(vocab.encode("!!", 4)) == ["<unk>"]  # never an empty sequence
    with pytest.raises(ValueError, match="starts with"):
        Vocabulary(["a", "b"])


def _trainer(tmp_path, epochs: int = 1, **kwargs) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False,
                     enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, default_root_dir=tmp_path, **kwargs)  # fmt: skip


def test_tokens_and_vocabulary_round_trip_through_a_checkpoint(data_root, tmp_path):
    """A model built without a vocabulary takes the data's at setup, keeps it in the
    checkpoint, and the loaded model turns a caption into the ids the data gave it."""
    dm = tiny_datamodule(data_root, num_images=16, num_eval_images=8, max_words=16)
    model = tiny_aligndraw(dm)
    assert model.net is None
    trainer = _trainer(tmp_path, limit_val_batches=1)
    trainer.fit(model, datamodule=dm)
    path = tmp_path / "a.ckpt"
    trainer.save_checkpoint(path)
    loaded = load_model(path)
    assert loaded.vocabulary == dm.vocabulary and loaded.max_words == 16
    ds = dm.datasets["val"]
    caption = ds.split.captions[0][0]
    ids, cut = loaded.encode_captions(
        [caption, caption + " and a very long tail of many more words that it never had"]
    )
    assert torch.equal(ids[0], ds.tokens[0][0]) and cut == [1]
    unknown, _ = loaded.encode_captions(["a zyzzyva bird"])
    assert unknown[0, 1] == 1
    # resuming on data whose training captions give another vocabulary is refused
    other = tiny_datamodule(data_root, num_images=16, num_eval_images=8, max_words=16,
                            caption_words=(12, 30))  # fmt: skip
    assert other.vocabulary != dm.vocabulary
    with pytest.raises(ValueError, match="vocabulary"):
        _trainer(tmp_path / "b", epochs=2).fit(tiny_aligndraw(other), datamodule=other,
                                               ckpt_path=path)  # fmt: skip


def test_the_authors_caption_length_filter(data_root):
    dm = tiny_datamodule(data_root, num_images=16, num_eval_images=8, caption_words=(12, 14))
    train = dm.datasets["train"].split
    lengths = {len(words(c)) for caps in train.captions for c in caps}
    assert lengths and lengths <= {12, 13}
    assert len(dm.datasets["val"].split) == 8  # held-out splits are not filtered
    assert all(len(e) == len(c) for e, c in zip(dm.datasets["train"].emb, train.captions))
    with pytest.raises(ValueError, match="caption_words"):
        tiny_datamodule(data_root, num_images=16, num_eval_images=8, caption_words=(50, 60))


@pytest.mark.parametrize("make", [tiny_draw, tiny_aligndraw], ids=["draw", "aligndraw"])
def test_resume_after_an_interruption_is_exact(make, data_root, tmp_path):
    """Two epochs straight, or one, a checkpoint, and a resume: the same weights, optimiser
    state, learning rate and validation reference."""

    def run(root, epochs, ckpt=None):
        L.seed_everything(0)
        dm = tiny_datamodule(data_root, num_images=16, num_eval_images=8)
        model = make(dm)
        trainer = _trainer(root, epochs, limit_val_batches=1, callbacks=[RunCheckpoint()],
                           enable_checkpointing=True)  # fmt: skip
        L.seed_everything(0)
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
        return model, trainer

    straight, t1 = run(tmp_path / "a", 2)
    run(tmp_path / "b", 1)
    resumed, t2 = run(tmp_path / "b", 2, tmp_path / "b/checkpoints/last.ckpt")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert float(straight.last_val_bound) < 1e30  # validated at least once
    assert t1.optimizers[0].param_groups[0]["lr"] == t2.optimizers[0].param_groups[0]["lr"]


def test_the_learning_rate_drops_when_the_validation_bound_worsens(data_root, tmp_path):
    dm = tiny_datamodule(data_root, num_images=16, num_eval_images=8)
    model = tiny_draw(dm)
    trainer = _trainer(tmp_path, 1, limit_val_batches=1)
    trainer.fit(model, datamodule=dm)
    assert trainer.optimizers[0].param_groups[0]["lr"] == 1e-3  # the first is the reference
    model.last_val_bound.fill_(0.0)  # any bound is worse than 0 nats
    trainer = _trainer(tmp_path, 1, limit_val_batches=1)
    trainer.fit(model, datamodule=dm)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-4)
    assert float(model.last_val_bound) == 0.0  # the authors keep the old reference


def test_test_reports_the_bound_in_nats_per_image(data_root, tmp_path):
    dm = tiny_datamodule(data_root, num_images=16, num_eval_images=8)
    model = tiny_draw(dm)
    (scores,) = _trainer(tmp_path).test(model, datamodule=dm, verbose=False)
    assert scores["test/bound"] == pytest.approx(scores["test/recon"] + scores["test/kl"], rel=1e-4)
    # untrained: about 32 x 32 x 3 pixels of cross-entropy near log 2 each
    assert 0.5 * 3072 * math.log(2) < scores["test/bound"] < 2 * 3072 * math.log(2)


# -------------------------------------------------------------------- figures and generate


def test_canvas_and_alignment_figures(data_root, tmp_path):
    dm = tiny_datamodule(data_root, num_images=16, num_eval_images=8)
    model = tiny_aligndraw(dm, steps=5, vocabulary=dm.vocabulary.itos)
    canvas, align = CanvasSteps(num_captions=2, every_k_steps=2), WordAlignment(num_captions=2)
    trainer = _trainer(tmp_path, 1, limit_val_batches=0, callbacks=[canvas, align])
    trainer.fit(model, datamodule=dm)
    from PIL import Image

    grid = Image.open(tmp_path / "canvas/epoch_0000.png")
    # 2 rows of t = 2, 4, 5: 3 canvases of 64 px (32 px shown twice as large for the box)
    assert grid.height >= 2 * 64 and grid.width >= 3 * 64
    steps = model.sample_steps(canvas.fixed["text_emb"], canvas.fixed["noise"],
                               tokens=canvas.fixed["tokens"])  # fmt: skip
    assert steps["canvases"].shape == (5, 2, 3, 32, 32)
    # the boxes lie inside the image; the alignment sums to 1 over the real words only
    assert (steps["boxes"] >= 0).all() and (
        steps["boxes"][..., :2] + steps["boxes"][..., 2:] <= 1 + 1e-6
    ).all()
    alpha, mask = steps["alignments"], canvas.fixed["tokens"] != 0
    assert torch.allclose(alpha.sum(-1), torch.ones(5, 2))
    assert (alpha[:, ~mask] == 0).all()
    assert Image.open(tmp_path / "alignment/epoch_0000.png").height > 2 * 5 * 14
    # the last canvas is the sample
    assert torch.equal(
        steps["canvases"][-1],
        model.sample(
            canvas.fixed["text_emb"], canvas.fixed["noise"], tokens=canvas.fixed["tokens"]
        ),
    )


def test_word_alignment_figure_warns_on_draw(data_root, tmp_path):
    dm = tiny_datamodule(data_root, num_images=16, num_eval_images=8)
    trainer = _trainer(tmp_path, 1, limit_val_batches=0, callbacks=[WordAlignment()])
    with pytest.warns(UserWarning, match="does not align words"):
        trainer.fit(tiny_draw(dm), datamodule=dm)
    assert not (tmp_path / "alignment").exists()


@pytest.mark.parametrize("make", [tiny_draw, tiny_aligndraw], ids=["draw", "aligndraw"])
def test_generate_draws_from_both(make, data_root, tmp_path):
    dm = tiny_datamodule(data_root, num_images=16, num_eval_images=8)
    model = make(dm)
    trainer = _trainer(tmp_path, 1, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    captions = ["a bird with a red body and a blue head", "a yellow bird"]
    paths = generate(str(path), captions, num=3, out=str(tmp_path / "out"))
    assert len(paths) == 1 + 6
    from PIL import Image

    assert Image.open(paths[0]).width > 3 * 128  # three upscaled 32 px images and the labels
    # the rows differ: the model reads its caption
    assert not torch.equal(_draw(model, dm, captions[0]), _draw(model, dm, captions[1]))


def _draw(model, dm, caption: str) -> torch.Tensor:
    """Two images of ``caption`` from fixed noise."""
    text = torch.from_numpy(dm.text_encoder.encode([caption] * 2))
    noise = model.sample_noise(2, generator=torch.Generator().manual_seed(0))
    words, _ = model.prepare_captions([caption] * 2)  # alignDRAW's word ids; nothing for DRAW
    assert set(words) == set(model.takes) - {"text"}
    return model.sample(text, noise, **words)


def test_stand_alone_validate_leaves_the_lr_rule_alone_and_padding_rows_are_refused(data_root):
    """`t2igan validate` has no optimiser: the lr rule (a training-loop rule) neither fires nor
    moves its reference; a caption with no word ids is an error, not a NaN canvas."""
    import lightning as L

    dm = tiny_datamodule(data_root)
    model = tiny_aligndraw(dm)
    before = model.last_val_bound.clone()
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        limit_val_batches=1)  # fmt: skip
    (result,) = trainer.validate(model, datamodule=dm)
    assert "val/bound" in result and torch.equal(model.last_val_bound, before)
    tokens = torch.zeros(2, 5, dtype=torch.long)
    tokens[0, 0] = 1
    with pytest.raises(ValueError, match="a caption has no word ids"):
        model.sample(torch.zeros(2, dm.text_dim), tokens=tokens)


def test_interpolation_figures_skip_a_model_that_reads_word_ids(data_root):
    from t2igan.callbacks import CaptionInterpolation, NoiseInterpolation

    dm = tiny_datamodule(data_root)
    for figure in (CaptionInterpolation(), NoiseInterpolation()):
        with pytest.warns(UserWarning, match="reads word ids, not sentence embeddings"):
            assert not figure.supports(tiny_aligndraw(dm))
        assert figure.supports(tiny_draw(dm))
