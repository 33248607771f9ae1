"""The converter of the authors' Torch7 text encoders, on .t7 files written here with the module
structure of HybridCNN.lua / HybridCNNLong.lua, FixedRNN.lua and FixedGRU.lua (the released files
cannot be downloaded in the tests)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2igan.data.t7 import Obj, Tensor, save_t7, tensor
from t2igan.models.char_cnn_rnn import CharCNNEncoder, CharCNNGRU, CharCNNRNN
from t2igan.models.char_cnn_rnn_t7 import convert_t7


def _linear(w, b, storage=None):
    """An nn.Linear; with ``storage`` (w, b Tensors) one that shares them (Lua :share)."""
    weight, bias = storage or (tensor(w), tensor(b))
    return Obj("nn.Linear", {"weight": Tensor(weight.storage, weight.shape),
                             "bias": Tensor(bias.storage, bias.shape)}), (weight, bias)  # fmt: skip


def _torch_encoder(net: CharCNNRNN, gru: bool) -> Obj:
    """The gModule the authors' Lua code builds, with ``net``'s weights."""
    seq = []
    convs = [m for m in net.cnn.net if isinstance(m, torch.nn.Conv1d)]
    for k, conv in enumerate(convs):
        w = conv.weight.detach().numpy()  # (out, in, k) -> Torch's (out, k * in)
        seq.append(Obj("nn.TemporalConvolution", {
            "weight": tensor(w.transpose(0, 2, 1).reshape(w.shape[0], -1)),
            "bias": tensor(conv.bias.detach().numpy()), "inputFrameSize": w.shape[1],
            "outputFrameSize": w.shape[0], "kW": 4, "dW": 1}))  # fmt: skip
        seq.append(Obj("nn.Threshold", {"threshold": 1e-6, "val": 0}))
        if k < 2 or not gru:
            seq.append(Obj("nn.TemporalMaxPooling", {"kW": 3, "dW": 3 if k < 2 else 2}))
    modules = [Obj("nn.Sequential", {"modules": seq})]
    if gru:
        c = net.rnn.cell
        i_lins = [c.i2h_update, c.i2h_reset, c.i2h]
        h_lins = [c.h2h_update, c.h2h_reset, c.h2h]
        steps = 18
    else:
        i_lins, h_lins, steps = [net.rnn.i2h], [net.rnn.h2h], 8
    shared: dict = {}
    for i in range(steps):  # the order of the Lua loop: step i's i2h, then h2h[i-1]
        for lins in [i_lins] if i == 0 else [i_lins, h_lins]:
            for lin in lins:
                m, shared[id(lin)] = _linear(lin.weight.detach().numpy(),
                                             lin.bias.detach().numpy(), shared.get(id(lin)))  # fmt: skip
                modules.append(m)
    modules.append(_linear(net.proj.weight.detach().numpy(), net.proj.bias.detach().numpy())[0])
    return Obj("nn.gModule", {"modules": modules})


@pytest.mark.parametrize("gru", [False, True])
def test_t7_round_trip(tmp_path, gru):
    torch.manual_seed(0)
    net = (CharCNNGRU(32, 48) if gru else CharCNNRNN(32, 48)).eval()
    save_t7(tmp_path / "enc.t7", {"protos": {"enc_doc": _torch_encoder(net, gru),
                                             "enc_image": Obj("nn.Identity", {})}})  # fmt: skip
    out = convert_t7(tmp_path / "enc.t7", tmp_path / "enc.ckpt")
    enc = CharCNNEncoder(str(out))
    caps = ["this bird has a red body and a blue head.", "a small yellow bird."]
    from t2igan.models.char_cnn_rnn import encode_text

    expected = net(encode_text(caps)).detach().numpy()
    np.testing.assert_allclose(enc.encode(caps), expected, atol=1e-5)
    assert enc.dim == 48


def test_t7_bad_files(tmp_path):
    save_t7(tmp_path / "gen.t7", Obj("nn.Sequential", {"modules": [
        Obj("nn.SpatialFullConvolution", {"weight": tensor(np.zeros((2, 2)))})]}))  # fmt: skip
    with pytest.raises(ValueError, match="gen.t7 is not a char-CNN-RNN/GRU text encoder"):
        convert_t7(tmp_path / "gen.t7", tmp_path / "x.ckpt")
    torch.manual_seed(0)
    odd = _torch_encoder(CharCNNRNN(32, 48), gru=False)
    odd.fields["modules"] = odd.fields["modules"][:-3]  # a step and the projection missing
    save_t7(tmp_path / "odd.t7", odd)
    with pytest.raises(ValueError, match="odd.t7: an architecture the converter does not know"):
        convert_t7(tmp_path / "odd.t7", tmp_path / "x.ckpt")
    (tmp_path / "text.t7").write_text("not torch")
    with pytest.raises(ValueError, match="text.t7 is not a Torch7 file"):
        convert_t7(tmp_path / "text.t7", tmp_path / "x.ckpt")


def test_generate_with_the_converted_encoder(tmp_path, data_root):
    """A GAN trained on precomputed (paper) embeddings draws new captions once the matching
    encoder is converted and passed to generate."""
    import lightning as L

    from t2igan.cli.generate import generate
    from t2igan.data import HashingEncoder
    from t2igan.data.paper_files import PrecomputedEncoder
    from t2igan.models import GANINTCLS

    from .conftest import tiny_datamodule

    torch.manual_seed(0)
    save_t7(tmp_path / "enc.t7", _torch_encoder(CharCNNRNN(32, 48).eval(), gru=False))
    enc = convert_t7(tmp_path / "enc.t7", tmp_path / "enc.ckpt")
    dm = tiny_datamodule(data_root, text_encoder=HashingEncoder(dim=48))  # stands for the pickles
    gan = GANINTCLS(text_dim=48, image_size=32, ngf=4, ndf=4,
                    text_encoder=PrecomputedEncoder("birds/train", 48).spec())  # fmt: skip
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(gan, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    with pytest.raises(RuntimeError, match="--text-encoder"):
        generate(str(tmp_path / "gan.ckpt"), ["a red bird"], num=1, out=str(tmp_path / "o"))
    paths = generate(str(tmp_path / "gan.ckpt"), ["a red bird"], num=1, out=str(tmp_path / "o"),
                     text_encoder=str(enc))  # fmt: skip
    assert paths[0].is_file()
    save_t7(tmp_path / "wide.t7", _torch_encoder(CharCNNRNN(32, 64).eval(), gru=False))
    wide = convert_t7(tmp_path / "wide.t7", tmp_path / "wide.ckpt")
    with pytest.raises(ValueError, match="takes 48-d text embeddings .* gives 64-d"):
        generate(str(tmp_path / "gan.ckpt"), ["a red bird"], num=1, out=str(tmp_path / "o"),
                 text_encoder=str(wide))  # fmt: skip
