"""The reference that ``tests/test_stackgan_inception.py`` checks t2igan's port of StackGAN's
fine-tuned Inception against: logits and scores that the authors' own TF graph computes.

``reference_weights`` fills every variable the scorer restores (``<name>/ExponentialMovingAverage``)
with seeded random values, and ``reference_images`` gives seeded uint8 images; both run with
numpy alone, so the test rebuilds them without TensorFlow. ``main`` builds the graph exactly as
StackGAN-inception-model's ``inception_score.py`` does (its ``inception.slim`` package, imported
from the user's checkout, not copied here), loads those weights, runs the images and writes
``tests/reference/stackgan_inception.npz``: the variable names and shapes the graph restores,
its logits and its softmax over the non-background classes. It needs TensorFlow
(``pip install tensorflow-cpu``) and a checkout of
https://github.com/hanzhanggit/StackGAN-inception-model:

    python tests/stackgan_inception_reference.py --repo StackGAN-inception-model

Written once on 2 December 2026 with tensorflow-cpu 2.21 (``tf.compat.v1``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "reference" / "stackgan_inception.npz"
NUM_OUTPUTS = 51  # birds: 50 classes + the background output


def reference_weights(shapes: dict[str, tuple]) -> dict[str, np.ndarray]:
    """Seeded values of every variable (name without the EMA suffix -> TF shape), drawn in
    name order: positive variances, small means and offsets, He-scaled weights."""
    rng = np.random.RandomState(0)
    out = {}
    for name in sorted(shapes):
        shape = tuple(shapes[name])
        if name.endswith("moving_variance"):
            a = rng.uniform(0.5, 2.0, shape)
        elif name.endswith(("moving_mean", "beta", "biases")):
            a = rng.normal(0, 0.2, shape)
        else:
            a = rng.normal(0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
        out[name] = a.astype(np.float32)
    return out


def reference_images() -> np.ndarray:
    """Two uint8 RGB images, (2, 299, 299, 3): a smooth gradient and noise."""
    rng = np.random.RandomState(1)
    ramp = np.linspace(0, 255, 299)
    smooth = np.stack([ramp[None, :].repeat(299, 0), ramp[:, None].repeat(299, 1),
                       np.full((299, 299), 90.0)], -1)  # fmt: skip
    noise = rng.uniform(0, 255, (299, 299, 3))
    return np.stack([smooth, noise]).round().astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repo", required=True, help="a StackGAN-inception-model checkout")
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args(argv)
    sys.path.insert(0, str(Path(a.repo).resolve()))
    import tensorflow.compat.v1 as tf

    tf.disable_v2_behavior()
    sys.modules["tensorflow"] = tf  # their code (TF 0.12/1.x) imports `tensorflow` as TF1
    from inception.slim import slim  # the authors' package, from their checkout

    images = reference_images()
    graph = tf.Graph()
    with graph.as_default():
        inputs = tf.placeholder(tf.float32, [len(images), 299, 299, 3])
        bn = {"decay": 0.9997, "epsilon": 0.001}  # inception_score.py's inference()
        with slim.arg_scope([slim.ops.conv2d, slim.ops.fc], weight_decay=0.00004):
            with slim.arg_scope([slim.ops.conv2d], stddev=0.1, activation=tf.nn.relu,
                                batch_norm_params=bn):  # fmt: skip
                logits, _ = slim.inception.inception_v3(
                    inputs, dropout_keep_prob=0.8, num_classes=NUM_OUTPUTS, is_training=False,
                    restore_logits=True, scope=None,
                )  # fmt: skip
        known = tf.slice(logits, [0, 1], [len(images), NUM_OUTPUTS - 1])
        pred = tf.nn.softmax(known)
        restore = tf.train.ExponentialMovingAverage(0.9999).variables_to_restore()
        ema = "/ExponentialMovingAverage"
        assert all(k.endswith(ema) for k in restore), "a restored name without the EMA suffix"
        shapes = {k[: -len(ema)]: tuple(v.get_shape().as_list()) for k, v in restore.items()}
        values = reference_weights(shapes)
        assigns = [tf.assign(v, values[k[: -len(ema)]]) for k, v in restore.items()]
        with tf.Session(graph=graph) as sess:
            sess.run(assigns)
            out_logits, out_pred = sess.run([logits, pred], {inputs: images / 127.5 - 1})
    names = sorted(shapes)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        a.out, names=np.array(names), shapes=np.array([json_shape(shapes[n]) for n in names]),
        logits=out_logits.astype(np.float32), pred=out_pred.astype(np.float32),
    )  # fmt: skip
    print(f"wrote {a.out}: {len(names)} variables, logits {out_logits.shape}")


def json_shape(shape: tuple) -> str:
    """A shape as text ("3,3,3,32"), so the names and shapes keep to plain numpy arrays."""
    return ",".join(str(d) for d in shape)


if __name__ == "__main__":
    main()
