"""The char-CNN-RNN / char-CNN-GRU text encoder and its DS-SJE trainer (Reed et al., CVPR 2016)."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from t2igan.data import HashingEncoder
from t2igan.data.sampler import EpochSampler
from t2igan.models.char_cnn_rnn import (
    ALPHABET,
    CharCNNEncoder,
    CharCNNGRU,
    CharCNNRNN,
    CharCNNRNNSJE,
    FixedGRUCell,
    encode_text,
    sje_loss,
)

from .conftest import tiny_datamodule


def test_alphabet_is_the_authors():
    assert len(ALPHABET) == 70 and ALPHABET[-1] == " " and ALPHABET.count("-") == 2


def test_encode_text_by_hand():
    x = encode_text(["ab-", "A\u00e9 z"], length=4)
    assert x.shape == (2, 70, 4)
    # "ab-": a -> 0, b -> 1, '-' -> its last place (59, Lua 60), then padding (all zero)
    assert x[0].nonzero().tolist() == [[0, 0], [1, 1], [59, 2]]
    # lower-cased "a", unknown "\u00e9" -> zero column, space -> 69, z -> 25
    assert x[1].nonzero().tolist() == [[0, 0], [25, 3], [69, 2]]
    assert x[1, :, 1].sum() == 0
    # truncation: only `length` characters are read
    assert torch.equal(encode_text(["abcdef"], length=4), encode_text(["abcd"], length=4))
    # without lower-casing, capitals are unknown characters (the ICML demo)
    assert encode_text(["Ab"], length=2, lowercase=False)[0].nonzero().tolist() == [[1, 1]]


def test_gru_cell_by_hand():
    torch.manual_seed(0)
    cell = FixedGRUCell(1)
    for lin, (w, b) in zip(
        [cell.i2h_update, cell.h2h_update, cell.i2h_reset, cell.h2h_reset, cell.i2h, cell.h2h],
        [(0.5, 0.1), (-1.0, 0.0), (2.0, -0.5), (1.0, 0.2), (1.5, 0.0), (0.7, 0.3)],
    ):
        lin.weight.data.fill_(w)
        lin.bias.data.fill_(b)
    x, h = torch.tensor([[0.8]]), torch.tensor([[0.4]])
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    u = sig(0.5 * 0.8 + 0.1 - 1.0 * 0.4)
    r = sig(2.0 * 0.8 - 0.5 + 1.0 * 0.4 + 0.2)
    cand = np.tanh(1.5 * 0.8 + 0.7 * (r * 0.4) + 0.3)  # reset applied before U
    expected = u * cand + (1 - u) * 0.4
    assert float(cell(x, h)) == pytest.approx(expected, abs=1e-6)
    assert float(cell.first(x)) == pytest.approx(np.tanh(1.5 * 0.8), abs=1e-6)


def test_parameter_counts_equal_the_torch_networks():
    def conv(i, o, k=4):  # nn.TemporalConvolution(i, o, k): weight (o, k * i), bias o
        return o * k * i + o

    def linear(i, o):
        return i * o + o

    cnn = conv(70, 384) + conv(384, 512)
    # HybridCNN.lua + FixedRNN.lua (cnn_dim 256): i2h, h2h (shared over steps), Linear(256, 1024)
    rnn = cnn + conv(512, 256) + 2 * linear(256, 256) + linear(256, 1024)
    # HybridCNNLong.lua + FixedGRU.lua (512): 3 i2h and 3 h2h Linears, Linear(512, 1024)
    gru = cnn + conv(512, 512) + 6 * linear(512, 512) + linear(512, 1024)
    assert (rnn, gru) == (1_814_144, 4_045_184)
    assert sum(p.numel() for p in CharCNNRNN().parameters()) == rnn
    assert sum(p.numel() for p in CharCNNGRU().parameters()) == gru
    chars = encode_text(["a bird"])
    assert CharCNNRNN().cnn(chars).shape == (1, 256, 8)
    assert CharCNNGRU().cnn(chars).shape == (1, 512, 18)
    assert CharCNNGRU()(chars).shape == (1, 1024)


def test_sje_loss_by_hand_on_three_classes():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    txt = torch.tensor([[2.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    s = img @ txt.T  # [[2, .5, 0], [0, .5, 1], [2, 1, 1]]
    # image-anchored, row i: sum_{j != i} max(0, 1 + S_ij - S_ii)
    img_term = (0 + 0) + (0.5 + 1.5) + (2.0 + 1.0)
    # text-anchored, column i: sum_{j != i} max(0, 1 + S_ji - S_ii)
    txt_term = (0 + 1.0) + (1.0 + 1.5) + (0 + 1.0)
    assert s[2, 0] == 2.0
    assert float(sje_loss(img, txt)) == pytest.approx((img_term + txt_term) / 9)
    assert float(sje_loss(img, txt, symmetric=False)) == pytest.approx(img_term / 9)


def test_a_sje_step_lowers_the_loss():
    torch.manual_seed(0)
    model = CharCNNRNNSJE(image_size=16, cnn_dim=32, emb_dim=16, image_width=8)
    captions = ["a red bird", "a blue bird", "a green bird", "a black bird"]
    images = torch.randn(4, 3, 16, 16)
    model.eval()  # BatchNorm on running statistics: the same function before and after the step
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(2):
        loss = sje_loss(model.image_net(images), model.embed_text(captions))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]


def test_distinct_class_batches():
    labels = np.repeat(np.arange(6), 5)  # 6 classes, 30 items
    sampler = EpochSampler(30, labels, distinct=4)
    torch.manual_seed(0)
    items = [i for i, _ in sampler]
    batches = [labels[items[a : a + 4]] for a in range(0, 28, 4)]
    assert all(len(set(b)) == 4 for b in batches)
    with pytest.raises(ValueError, match="7 distinct classes"):
        EpochSampler(30, labels, distinct=7)


@pytest.fixture(scope="module")
def trained_encoder(data_root, tmp_path_factory):
    """A tiny char-CNN-RNN trained for a few hundred steps on synthetic birds, and its file."""
    torch.manual_seed(0)
    dm = tiny_datamodule(data_root, image_size=16, num_images=480, num_eval_images=64,
                         batch_size=16, sampler="distinct_classes")  # fmt: skip
    model = CharCNNRNNSJE(image_size=16, cnn_dim=64, emb_dim=64, conv_widths=(32, 48),
                          image_width=16)  # fmt: skip
    random_top1, _ = model.zero_shot(dm.dataset_of("test"))
    trainer = L.Trainer(max_steps=300, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0)  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these tiny networks: one thread is far faster on a busy machine
    try:
        trainer.fit(model, datamodule=dm)
    finally:
        torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("enc") / "encoder.ckpt"
    trainer.save_checkpoint(path)
    return model, path, random_top1, dm


def test_trained_encoder_beats_a_random_one(trained_encoder):
    model, _, random_top1, dm = trained_encoder
    top1, ap50 = model.zero_shot(dm.dataset_of("test"))
    # 300 steps of a tiny encoder: well above the random one (chance, 1/16), far from trained
    assert top1 > 2 * random_top1, (top1, random_top1)
    assert 0 < ap50 <= 1


def test_encoder_checkpoint_as_text_encoder(trained_encoder, tmp_path):
    model, path, _, _ = trained_encoder
    enc = CharCNNEncoder(str(path))
    caps = ["a bird with a red body and a blue head.", "a small bird."]
    emb = enc.encode(caps)
    assert emb.shape == (2, 64) and enc.dim == 64
    np.testing.assert_allclose(emb, model.eval().embed_text(caps).detach().numpy(), atol=1e-5)
    spec = enc.spec()
    assert spec["init_args"]["sha256"] and "text_encoder" not in spec["init_args"]
    # the cache key follows the content: a copy of the same file at another path differs only
    # in the path, a changed file is refused
    with pytest.raises(ValueError, match="has changed"):
        CharCNNEncoder(str(path), sha256="0" * 64)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        CharCNNEncoder(str(tmp_path / "missing.ckpt"), sha256="0" * 64)
    with pytest.raises(ValueError, match="no character of the char-CNN alphabet"):
        enc.encode(["a bird", "\u00e9\u00e9\u00e9"])


def test_exported_encoder_embeds_as_its_checkpoint(trained_encoder, tmp_path):
    from t2igan.models.char_cnn_rnn import export_text_encoder

    _, path, _, _ = trained_encoder
    small = export_text_encoder(path, tmp_path / "small.ckpt")
    assert small.stat().st_size < path.stat().st_size / 2  # text network alone, float16
    caps = ["a bird with a red body and a blue head.", "a small bird facing left."]
    np.testing.assert_allclose(CharCNNEncoder(str(small)).encode(caps),
                               CharCNNEncoder(str(path)).encode(caps), atol=2e-3)  # fmt: skip


def test_centred_export_only_shifts_the_embeddings(trained_encoder, tmp_path):
    """Centring folds the captions' mean embedding into the output bias: every embedding moves
    by the same vector, the captions' mean becomes 0, and the swapped-caption cosine of the
    export equals the centred cosine of the original."""
    from t2igan.metrics import swapped_caption_cosine
    from t2igan.models.char_cnn_rnn import export_text_encoder

    _, path, _, _ = trained_encoder
    caps = [f"a bird with a {c} body and a {d} head." for c in ("red", "blue", "green")
            for d in ("white", "black")]  # fmt: skip
    raw = CharCNNEncoder(str(path))
    centred = CharCNNEncoder(str(export_text_encoder(path, tmp_path / "c.ckpt", half=False,
                                                     centre_on=caps)))  # fmt: skip
    others = ["a small bird facing left.", "this bird is mostly red."]
    shift = raw.encode(caps).mean(0)
    np.testing.assert_allclose(centred.encode(others), raw.encode(others) - shift, atol=1e-5)
    np.testing.assert_allclose(centred.encode(caps).mean(0), 0, atol=1e-5)
    assert abs(swapped_caption_cosine(centred) - swapped_caption_cosine(raw, caps)) < 1e-4
    assert abs(swapped_caption_cosine(raw, caps) - swapped_caption_cosine(raw)) > 1e-3


def test_the_shipped_synthetic_birds_encoder():
    """The quickstart's encoder (``t2igan:synthetic_birds``, in the package): it loads by name,
    its spec keeps the name (not this machine's path) and its content hash, its embeddings are
    centred on the training captions, and it tells a red body and blue head from the reverse
    far better than MiniLM (0.99; 0.34 when it was shipped)."""
    from t2igan.data.synthetic import SyntheticBirds
    from t2igan.metrics import swapped_caption_cosine

    enc = CharCNNEncoder("t2igan:synthetic_birds")
    assert enc.dim == 1024 and enc.spec()["init_args"]["checkpoint"] == "t2igan:synthetic_birds"
    assert len(enc.spec()["init_args"]["sha256"]) == 64
    assert swapped_caption_cosine(enc) < 0.5
    caps = [c for cs in SyntheticBirds(32, 400, 64, 0).load("train").captions for c in cs]
    assert np.linalg.norm(enc.encode(caps).mean(0)) < 0.01 * np.linalg.norm(enc.encode(caps[:1]))
    with pytest.raises(ValueError, match="no text encoder 't2igan:nope' ships with t2igan"):
        CharCNNEncoder("t2igan:nope")


def test_a_gan_on_the_shipped_encoder_generates_from_its_name(data_root, tmp_path):
    from t2igan.cli.generate import generate
    from t2igan.models import GANINTCLS

    dm = tiny_datamodule(data_root, text_encoder=CharCNNEncoder("t2igan:synthetic_birds"))
    gan = GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=4, ndf=4,
                    text_encoder=dm.text_encoder_spec)  # fmt: skip
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(gan, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    assert gan.hparams.text_encoder["init_args"]["checkpoint"] == "t2igan:synthetic_birds"
    paths = generate(str(tmp_path / "gan.ckpt"), ["a bird with a red body and a blue head."],
                     num=2, out=str(tmp_path / "out"))  # fmt: skip
    assert paths[0].name == "grid.png" and len(paths) == 3


def test_not_an_encoder_checkpoint(tmp_path, data_root):
    from t2igan.models import GANINTCLS

    dm = tiny_datamodule(data_root, text_encoder=HashingEncoder())
    gan = GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=4, ndf=4)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(gan, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    with pytest.raises(ValueError, match="gan.ckpt is a .*GANINTCLS checkpoint"):
        CharCNNEncoder(str(tmp_path / "gan.ckpt"))


def test_gan_on_the_trained_encoder_generates_and_embeds(trained_encoder, data_root, tmp_path):
    import h5py

    from t2igan.cli.embed import embed_file
    from t2igan.cli.generate import generate
    from t2igan.models import GANINTCLS

    _, path, _, _ = trained_encoder
    enc_path = tmp_path / "encoder.ckpt"
    enc_path.write_bytes(path.read_bytes())
    enc = CharCNNEncoder(str(enc_path))
    dm = tiny_datamodule(data_root, text_encoder=enc)
    gan = GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=4, ndf=4,
                    text_encoder=dm.text_encoder_spec)  # fmt: skip
    assert dm.text_dim == 64
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(gan, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    paths = generate(str(tmp_path / "gan.ckpt"), ["a bird with a red body and a blue head."],
                     num=2, out=str(tmp_path / "out"))  # fmt: skip
    assert paths[0].name == "grid.png" and len(paths) == 3
    # embed: the caption file in the HDF5 layout, with this encoder's embeddings
    (tmp_path / "caps.txt").write_text("a red bird.\na blue bird with a white head.\n")
    out = embed_file(tmp_path / "caps.txt", tmp_path / "emb.h5", enc)
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["embeddings"][:], enc.encode(["a red bird.",
                                   "a blue bird with a white head."]), atol=1e-6)  # fmt: skip
    # the papers' demo layout, as StackGAN-PyTorch's sampling reads it (torchfile; its list
    # heuristic compares tensors with tables, which numpy 2 refuses, for Lua's files as for ours)
    import torchfile

    path = embed_file(tmp_path / "caps.txt", tmp_path / "val.t7", enc)
    table = torchfile.load(str(path), use_list_heuristic=False)
    raw, fea = table[b"raw_txt"], table[b"fea_txt"]
    assert [raw[k].decode() for k in (1, 2)] == ["a red bird.", "a blue bird with a white head."]
    np.testing.assert_allclose(np.concatenate([fea[1], fea[2]], axis=0),
                               enc.encode(["a red bird.", "a blue bird with a white head."]),
                               atol=1e-6)  # fmt: skip
    with pytest.raises(ValueError, match="name an .h5 file .* or a .t7 file"):
        embed_file(tmp_path / "caps.txt", tmp_path / "val.pickle", enc)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty.txt: no captions"):
        embed_file(tmp_path / "empty.txt", tmp_path / "e.h5", enc)
    # the GAN checkpoint names the encoder file by path and hash: moved away, a clear error
    enc_path.rename(tmp_path / "moved.ckpt")
    with pytest.raises(FileNotFoundError, match="encoder.ckpt not found .*put the file back"):
        generate(str(tmp_path / "gan.ckpt"), ["a red bird"], out=str(tmp_path / "out2"))


def test_trained_encoder_as_the_r_precision_pair(trained_encoder):
    """The DS-SJE fallback of R-precision: real held-out images with their own captions rank
    above mismatched ones well above chance; the pair says its scores are not the papers'."""
    from t2igan.metrics.evaluation import r_precision
    from t2igan.models.char_cnn_rnn import SJEPair

    _, path, _, dm = trained_encoder
    ds = dm.dataset_of("test")
    images = torch.stack([ds.centre_image(i) for i in range(len(ds))])
    captions = [ds.split.captions[i][0] for i in range(len(ds))]
    pair = SJEPair(path)
    assert pair.comparable is False and pair.files == {"sje_checkpoint": path}
    # a generated image of another size is resized to the encoder's
    big = torch.nn.functional.interpolate(images[:4], scale_factor=2)
    cos = torch.cosine_similarity(pair.encode_images(big), pair.encode_images(images[:4]))
    assert (cos > 0.95).all(), cos
    mean, _ = r_precision(pair.encode_images(images), pair.encode_texts(captions), 10, 8)
    # chance is 1/8 (same-class captions count as mismatched); this 300-step encoder: 0.24
    assert mean > 1.5 / 8, mean
    with pytest.raises(ValueError, match="not a DS-SJE text encoder"):
        from t2igan.models import GANINTCLS

        gan = GANINTCLS(text_dim=8, image_size=32, ngf=4, ndf=4)
        trainer = L.Trainer(logger=False, max_steps=0, enable_checkpointing=False)
        trainer.strategy.connect(gan)
        trainer.save_checkpoint(path.parent / "gan.ckpt")
        SJEPair(path.parent / "gan.ckpt")


def test_unencodable_caption_is_numbered_from_one():
    from t2igan.models.char_cnn_rnn import check_encodable

    with pytest.raises(ValueError, match=r"^caption 2 \('ééé'\)"):
        check_encodable(["a red bird", "ééé"])
