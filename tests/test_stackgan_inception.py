"""StackGAN's fine-tuned Inception (the IS network of its birds and flowers tables), ported to
torchvision, checked against the logits the authors' TF graph computed
(``tests/stackgan_inception_reference.py`` wrote ``tests/reference/stackgan_inception.npz``; its
weights and images are seeded and rebuilt here with numpy). The weights are random: these
tests check the port, never a score."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from t2igan.metrics import stackgan_inception as sgi
from t2igan.metrics.evaluation import MissingWeightsError
from tests.stackgan_inception_reference import OUT, reference_images, reference_weights


@pytest.fixture(scope="module")
def reference():
    ref = np.load(OUT, allow_pickle=False)
    shapes = {str(n): tuple(int(d) for d in str(s).split(",")) for n, s in
              zip(ref["names"], ref["shapes"], strict=True)}  # fmt: skip
    return shapes, ref["logits"], ref["pred"]


@pytest.fixture(scope="module")
def converted(reference, tmp_path_factory):
    """The seeded weights as TF's reader gives them (EMA shadows, plus the raw variables and
    optimizer slots a training checkpoint also holds), converted and written."""
    shapes, _, _ = reference
    tensors = {n + sgi.EMA: v for n, v in reference_weights(shapes).items()}
    tensors["conv0/weights"] = np.zeros((3, 3, 3, 32), np.float32)  # the raw variable
    tensors["conv0/weights/RMSProp"] = np.zeros((3, 3, 3, 32), np.float32)
    tensors["global_step"] = np.array(5000)
    path = tmp_path_factory.mktemp("sgi") / "birds_inception.pt"
    torch.save(sgi.convert(tensors, source="model.ckpt"), path)
    return path


def test_names_and_shapes_are_the_authors_graphs(reference):
    """Every variable the authors' scorer restores is read, in TF's shape, and nothing else."""
    shapes, _, _ = reference
    assert sgi.checkpoint_names(51) == shapes
    assert len(shapes) == 388  # 96 convs x 4 + 2 Linear layers x 2


def test_port_gives_the_tf_graphs_logits_and_scores(reference, converted):
    _, logits, pred = reference
    net = sgi.StackGANInception(converted)
    images = torch.from_numpy(reference_images()).permute(0, 3, 1, 2)  # uint8, 299 x 299
    with torch.no_grad():
        full = net.net(net.preprocess(images))
        mine = net(images)
    assert full.shape == (2, 51) and mine.shape == (2, 50) and net.num_features == 50
    scale = float(np.abs(logits).max())
    assert scale > 1  # the reference is not degenerate
    np.testing.assert_allclose(full.numpy(), logits, atol=1e-4 * scale)
    # the score's softmax is over the 50 bird classes, the background output dropped first
    np.testing.assert_allclose(mine.softmax(1).numpy(), pred, atol=1e-5)


def test_the_padding_fix_is_what_makes_it_agree(reference, converted):
    """Without the pre-hook (torchvision's pools count the padding) the logits drift far off."""
    _, logits, _ = reference
    net = sgi.StackGANInception(converted)
    for name in sgi.AVG_POOLED:
        net.net.get_submodule(f"{name}.branch_pool")._forward_pre_hooks.clear()
    images = torch.from_numpy(reference_images()).permute(0, 3, 1, 2)
    with torch.no_grad():
        stock = net.net(net.preprocess(images)).numpy()
    assert np.abs(stock - logits).max() > 100 * 1e-4 * np.abs(logits).max()


@pytest.mark.parametrize("size", [64, 512])
def test_resize_follows_pils_bilinear(size):
    """``scipy.misc.imresize(..., 'bilinear')`` is PIL's bilinear on uint8 (antialiased when
    shrinking): within one grey level, up and down."""
    rng = np.random.RandomState(0)
    img = (rng.uniform(0, 255, (size // 8, size // 8, 3))).astype(np.uint8)
    img = np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC))
    want = np.asarray(Image.fromarray(img).resize((299, 299), Image.BILINEAR)).astype(float)
    got = sgi.StackGANInception.preprocess(torch.from_numpy(img).permute(2, 0, 1)[None])
    got = ((got[0].permute(1, 2, 0) + 1) * 127.5).numpy()
    assert np.abs(got - want).max() <= 1.0 + 1e-3


def test_inception_score_with_it_is_one_for_one_repeated_image(converted, reference):
    """One image repeated: every prediction equals the marginal, so IS is exactly 1; the two
    reference images, whose class predictions differ, score above 1."""
    from torchmetrics.image import InceptionScore

    _, _, pred = reference
    net = sgi.StackGANInception(converted)
    images = torch.from_numpy(reference_images()).permute(0, 3, 1, 2)
    same = InceptionScore(feature=net, splits=1)
    same.update(images[:1].repeat(4, 1, 1, 1))
    assert float(same.compute()[0]) == pytest.approx(1.0, abs=1e-5)
    mixed = InceptionScore(feature=net, splits=1)
    mixed.update(images.repeat(2, 1, 1, 1))
    p = torch.from_numpy(pred).double()  # the TF graph's softmax, IS of the same 4 images
    want = torch.exp((p * (p.log() - p.mean(0).log())).sum(1).mean()).item()
    assert want > 1.0001
    assert float(mixed.compute()[0]) == pytest.approx(want, rel=1e-4)


def test_conversion_errors_name_what_is_wrong(reference):
    shapes, _, _ = reference
    tensors = {n + sgi.EMA: v for n, v in reference_weights(shapes).items()}
    with pytest.raises(ValueError, match="birds.ckpt has no logits/logits/biases"):
        sgi.convert({"conv0/weights": np.zeros(1)}, source="birds.ckpt")
    few = dict(tensors)
    del few["mixed_8x8x2048b/branch_pool/Conv/weights" + sgi.EMA]
    with pytest.raises(ValueError, match="1 variables missing.*mixed_8x8x2048b/branch_pool"):
        sgi.convert(few, source="birds.ckpt")
    bent = dict(tensors)
    bent["conv1/weights" + sgi.EMA] = np.zeros((3, 3, 32, 16), np.float32)
    with pytest.raises(ValueError, match=r"1 of another shape.*conv1/weights \(3, 3, 32, 16\)"):
        sgi.convert(bent, source="birds.ckpt")


def test_loading_errors(tmp_path):
    with pytest.raises(MissingWeightsError, match="StackGAN-inception-model"):
        sgi.StackGANInception(tmp_path / "none.pt")
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not a converted StackGAN Inception"):
        sgi.StackGANInception(other)
    text = tmp_path / "text.pt"
    text.write_text("not a file torch wrote")
    with pytest.raises(ValueError, match="not a file t2igan wrote"):
        sgi.StackGANInception(text)


def test_reading_a_tf_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model.ckpt.index beside it"):
        sgi.read_tf_checkpoint(tmp_path / "model.ckpt")
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(b"\0" * 64)
    has_tf = importlib.util.find_spec("tensorflow") is not None
    with pytest.raises(ValueError, match="not a readable TF" if has_tf else "tensorflow-cpu"):
        sgi.read_tf_checkpoint(bad)


def test_command_line_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        sgi.main([str(tmp_path / "model.ckpt"), str(tmp_path / "out.pt")])
    message = str(exit_.value.code)
    assert message.startswith("python -m t2igan.metrics.stackgan_inception: ")
    assert "\n" not in message and "model.ckpt" in message
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                    reason="writing a TF checkpoint needs tensorflow")  # fmt: skip
def test_converts_a_v1_checkpoint_tf_wrote(reference, tmp_path):
    """A single-file (V1) checkpoint with EMA shadows, the layout of StackGAN's download,
    written by TensorFlow and converted by the command."""
    import tensorflow.compat.v1 as tf

    shapes, logits, _ = reference
    values = reference_weights(shapes)
    (tmp_path / "birds_valid299").mkdir()
    graph = tf.Graph()
    with graph.as_default():
        made = [tf.Variable(v, name=n + sgi.EMA) for n, v in values.items()]
        saver = tf.train.Saver(made, write_version=tf.train.SaverDef.V1)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.variables_initializer(made))
            prefix = saver.save(sess, str(tmp_path / "birds_valid299" / "model.ckpt"))
    sgi.main([prefix, str(tmp_path / "birds.pt")])
    net = sgi.StackGANInception(tmp_path / "birds.pt")
    images = torch.from_numpy(reference_images()).permute(0, 3, 1, 2)
    with torch.no_grad():
        full = net.net(net.preprocess(images))
    np.testing.assert_allclose(full.numpy(), logits, atol=1e-4 * np.abs(logits).max())
