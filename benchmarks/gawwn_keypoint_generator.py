"""GAWWN's conditional keypoint generator G_k on synthetic birds: are the keypoints it draws from
text plausible bird layouts, does it complete a bird from its beak and tail, and does an image
drawn from generated keypoints show its caption's body colour as often as one drawn from the
true keypoints?

    flock /tmp/t2igan-bench.lock python benchmarks/gawwn_keypoint_generator.py \
        --kg-minutes 5 --image-minutes 11

Synthetic birds at 64 x 64 without crops or flips (so the keypoints keep the generator's
geometry and the captions' "facing"), 3,000 training images, the hashing text encoder. G_k: the
authors' settings (ngf = ndf = 128, batch 64, one caption, switches on with p = 0.1). The image
model: a GAWWNKeypoints (8 x 8 maps, ngf = ndf = ``--width``, batch 16, 4 captions) with the
opt-in ``d_head_norm=False`` (docs/gawwn.md: with the authors' head D stays at chance for the
first hundreds of batches), or ``--image-ckpt``. Scores on the 256 held-out test birds (their
(body, head) pairs never trained on), one sample each with the image's first caption:

* ``plausible``: for each generated set, the distance to the nearest of 20,000 real layouts
  (drawn from the synthetic birds' own geometry) of the facing it shows: the mean over that
  layout's 12 visible parts of the point distance, divided by the layout's beak-to-tail
  distance (its size); median over birds, and the visibility agreement. Beside it the same
  score for random keypoints (uniform positions, a random facing's visibility: random's best
  case) and for the real held-out layouts.
* ``completion``: beak and tail given (their true positions), the fraction of birds whose
  other visible parts lie on average within 0.05 of the image side of the truth; the baseline
  is G_k with nothing given.
* ``regression``: with ``--regression-minutes``, the baseline that tells a port fault from the
  GAN's: G_k's own network (same widths, switches and optimiser) trained to predict the real
  keypoints (mean squared error) instead of fooling D_k, then scored as G_k.
* ``body``: held-out body colour accuracy (:func:`t2igan.metrics.read_birds`) of images drawn
  from G_k's keypoints and from the true keypoints (the same noise).

Prints JSON lines; figures and checkpoints (``kg.ckpt``, ``image.ckpt``) go to
``runs/bench_gawwn_kg/``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import torch

from t2igan.callbacks import GeneratedKeypointsGrid
from t2igan.callbacks.figures import labelled_grid
from t2igan.callbacks.location import draw_location, drawable
from t2igan.data import HashingEncoder, T2IDataModule
from t2igan.data.contract import CUB_PARTS
from t2igan.data.synthetic import _layout, keypoints
from t2igan.metrics import read_birds
from t2igan.models import GAWWNKeypointGenerator, GAWWNKeypoints
from t2igan.models.gawwn_keypoints import KeypointGeneratorNet, switch_units

BEAK, TAIL = CUB_PARTS.index("beak"), CUB_PARTS.index("tail")


def data(batch_size: int, num_captions: int, images: bool = True) -> T2IDataModule:
    dm = T2IDataModule(dataset="synthetic", image_size=64, load_size=None, flip=False,
                       num_captions=num_captions, batch_size=batch_size, num_images=3000,
                       num_eval_images=256, text_encoder=HashingEncoder(),
                       images=images)  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    return dm


def reference_layouts(n: int = 20000, seed: int = 123) -> dict[int, np.ndarray]:
    """{facing: (m, 15, 3)} keypoints of ``n`` random synthetic layouts."""
    rng = np.random.default_rng(seed)
    out: dict[int, list] = {0: [], 1: []}
    for _ in range(n):
        facing, large = int(rng.integers(2)), bool(rng.integers(2))
        out[facing].append(keypoints(_layout(rng, facing, large), facing))
    return {f: np.stack(v) for f, v in out.items()}


def plausibility(sets: np.ndarray, ref: dict[int, np.ndarray]) -> dict[str, float]:
    """Median normalised distance of each (15, 3) set to its nearest reference layout of the
    facing its visibility matches best, and the mean visibility agreement."""
    dists, agree = [], []
    for kp in sets:
        best = (-1.0, np.inf)
        for layouts in ref.values():
            vis = layouts[0, :, 2] > 0  # every layout of a facing shows the same 12 parts
            agreement = float(((kp[:, 2] > 0.5) == vis).mean())
            r = layouts[:, vis, :2]  # (m, 12, 2)
            size = np.linalg.norm(layouts[:, BEAK, :2] - layouts[:, TAIL, :2], axis=-1)
            d = np.linalg.norm(r - kp[None, vis, :2], axis=-1).mean(1) / size
            best = max(best, (agreement, -float(d.min())))
        agree.append(best[0])
        dists.append(-best[1])
    return {"median_distance": round(float(np.median(dists)), 3),
            "visibility_agreement": round(float(np.mean(agree)), 3)}  # fmt: skip


def completion(drawn: np.ndarray, truth: np.ndarray, within: float = 0.05) -> dict:
    """Fraction of birds whose visible parts other than beak and tail lie on average within
    ``within`` of the truth, and the median over birds of that mean distance."""
    err = []
    for d, t in zip(drawn, truth):
        others = t[:, 2] > 0
        others[[BEAK, TAIL]] = False
        err.append(np.linalg.norm(d[others, :2] - t[others, :2], axis=-1).mean())
    return {"within_0.05": round(float(np.mean(np.array(err) <= within)), 3),
            "median_error": round(float(np.median(err)), 3)}  # fmt: skip


def fit(model, dm, minutes: float, out: Path, name: str) -> dict:
    """Train ``model`` for ``minutes``; its checkpoint goes to ``out/<name>.ckpt``."""
    trainer = L.Trainer(max_time={"minutes": minutes}, max_epochs=-1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        limit_val_batches=0, default_root_dir=out)  # fmt: skip
    start = time.monotonic()
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(out / f"{name}.ckpt")
    last = {k.split("/")[1]: round(float(v), 3) for k, v in trainer.callback_metrics.items()
            if k in ("train/d_real", "train/d_fake")}  # D's mean scores, last batch  # fmt: skip
    return {"minutes": round((time.monotonic() - start) / 60, 1),
            "epochs": trainer.current_epoch, "batches": trainer.global_step // 2, **last}  # fmt: skip


@torch.enable_grad()
def regression_baseline(dm: T2IDataModule, kg: GAWWNKeypointGenerator, minutes: float):
    """G_k's network (``kg``'s sizes, switches and Adam settings) trained for ``minutes`` by
    mean squared error to the real keypoints (invisible rows zero) instead of by D_k."""
    h = kg.hparams
    net = KeypointGeneratorNet(h.z_dim, h.text_dim, h.ngf, h.num_parts)
    opt = torch.optim.Adam(net.parameters(), lr=h.lr, betas=(h.beta1, h.beta2))
    start, batches = time.monotonic(), 0
    while time.monotonic() - start < minutes * 60:
        for batch in dm.train_dataloader():
            real, text = kg._real(batch)  # what D_k sees: invisible rows zero
            drawn = net(torch.randn(len(real), h.z_dim), text, switch_units(real, kg.keep_prob))
            loss = torch.nn.functional.mse_loss(drawn, real)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            batches += 1
            if time.monotonic() - start >= minutes * 60:
                break
    print(json.dumps({"model": "regression baseline", "batches": batches,
                      "last_mse": round(float(loss), 5)}), flush=True)  # fmt: skip
    return net.eval()


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kg-minutes", type=float, default=5)
    parser.add_argument("--image-minutes", type=float, default=11)
    parser.add_argument("--width", type=int, default=32, help="image model's ngf = ndf")
    parser.add_argument("--kg-width", type=int, default=128, help="G_k's ngf = ndf (authors': 128)")
    parser.add_argument("--kg-keep-prob", type=float, default=0.1,
                        help="G_k's switch-unit keep probability in training (authors': 0.1)")  # fmt: skip
    parser.add_argument("--kg-d-noise", type=float, default=0.0,
                        help="G_k's opt-in instance noise on D_k's inputs (paper: 0)")  # fmt: skip
    parser.add_argument("--kg-ckpt", default=None, help="score this G_k instead of training")
    parser.add_argument("--image-ckpt", default=None, help="this image model, not training")
    parser.add_argument("--regression-minutes", type=float, default=0,
                        help="also train and score the regression baseline for this long")  # fmt: skip
    parser.add_argument("--skip-images", action="store_true",
                        help="score the keypoints only (no image model, no figures)")  # fmt: skip
    parser.add_argument("--out", default="runs/bench_gawwn_kg")
    a = parser.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(0)
    kg_dm = data(64, 1, images=False)  # G_k reads no image
    if a.kg_ckpt:
        kg = GAWWNKeypointGenerator.load_from_checkpoint(a.kg_ckpt, weights_only=True)
        run = {"ckpt": a.kg_ckpt}
    else:
        kg = GAWWNKeypointGenerator(text_dim=kg_dm.text_dim, image_size=64, ngf=a.kg_width,
                                    ndf=a.kg_width, keep_prob=a.kg_keep_prob, d_noise=a.kg_d_noise,
                                    text_encoder=kg_dm.text_encoder_spec)  # fmt: skip
        with torch.enable_grad():
            run = fit(kg, kg_dm, a.kg_minutes, out, "kg")
    print(json.dumps({"model": "G_k", "width": kg.hparams.ngf, "keep_prob": kg.keep_prob,
                      "d_noise": kg.hparams.d_noise, **run}), flush=True)  # fmt: skip
    kg.eval()

    # held-out test birds: first caption's embedding, true keypoints, body colour
    test = kg_dm.caption_examples("test", len(kg_dm.dataset_of("test")))
    text, truth = test["text_emb"], test["keypoints"]
    noise = kg.sample_noise(len(text), generator=torch.Generator().manual_seed(0))
    drawn = kg.complete(text, noise).numpy()
    given = torch.zeros_like(truth)
    given[:, [BEAK, TAIL]] = truth[:, [BEAK, TAIL]]
    completed = kg.complete(text, noise, given).numpy()
    ref = reference_layouts()
    rng = np.random.default_rng(1)
    random = np.concatenate([rng.uniform(size=(len(text), 15, 2)),
                             np.stack([ref[int(f)][0, :, 2:]
                                       for f in rng.integers(2, size=len(text))])], -1)  # fmt: skip
    result = {
        "plausible_gk": plausibility(drawn, ref),
        "plausible_random": plausibility(random, ref),
        "plausible_real_held_out": plausibility(truth.numpy(), ref),
        "completion_beak_tail_given": completion(completed, truth.numpy()),  # given: exact
        "completion_nothing_given": completion(drawn, truth.numpy()),
    }
    if a.regression_minutes:
        net = regression_baseline(kg_dm, kg, a.regression_minutes)
        reg_drawn = net(noise, text, torch.zeros_like(truth)).numpy()
        result["plausible_regression"] = plausibility(reg_drawn, ref)
        result["completion_regression_beak_tail_given"] = completion(
            net(noise, text, given).numpy(), truth.numpy()
        )
    print(json.dumps(result), flush=True)
    if a.skip_images:
        return

    # end to end: images from G_k's keypoints and from the true keypoints
    if a.image_ckpt:
        image = GAWWNKeypoints.load_from_checkpoint(a.image_ckpt, weights_only=True)
        run = {"ckpt": a.image_ckpt}
    else:
        img_dm = data(16, 4)
        image = GAWWNKeypoints(text_dim=img_dm.text_dim, image_size=64, ngf=a.width,
                               ndf=a.width, d_head_norm=False,
                               text_encoder=img_dm.text_encoder_spec)  # fmt: skip
        with torch.enable_grad():
            run = fit(image, img_dm, a.image_minutes, out, "image")
    image.eval()
    body = test["attributes"][:, 0]
    kp_gen = drawable(torch.from_numpy(drawn))
    from_gen = image.sample(text, noise[:, : image.z_dim], keypoints=kp_gen)
    from_true = image.sample(text, noise[:, : image.z_dim], keypoints=truth)
    acc = {k: round(float((read_birds(v)[:, 0] == body).float().mean()), 3)
           for k, v in (("generated", from_gen), ("true", from_true))}  # fmt: skip
    print(json.dumps({"model": "GAWWNKeypoints", "width": a.width, **run,
                      "body_from_generated_keypoints": acc["generated"],
                      "body_from_true_keypoints": acc["true"]}), flush=True)  # fmt: skip

    # figures: text only (the callback's), and beak and tail fixed with the rest sampled
    fig = GeneratedKeypointsGrid(num_captions=3, num_samples=6)
    fig.fixed = fig.choose(SimpleNamespace(datamodule=kg_dm), kg)
    fig._models = lambda module: (kg, image)
    images, ncol, labels = fig.draw(kg)
    labelled_grid(images, ncol, labels).save(out / "generated_keypoints.png")
    n, rows, lab = 6, [], []
    for i in (0, 40):
        z = kg.sample_noise(n, generator=torch.Generator().manual_seed(i))
        kp = drawable(
            kg.complete(text[i : i + 1].expand(n, -1), z, given[i : i + 1].expand(n, -1, -1))
        )
        imgs = image.sample(text[i : i + 1].expand(n, -1), z[:, : image.z_dim], keypoints=kp)
        rows += [draw_location(torch.zeros(n, 3, 64, 64), "keypoints", kp), imgs,
                 draw_location(imgs, "keypoints", kp)]  # fmt: skip
        lab += [f"{test['captions'][i]}: beak and tail given, the rest drawn", "images",
                "images with the keypoints"]  # fmt: skip
    labelled_grid(torch.cat(rows), n, lab).save(out / "completion.png")


if __name__ == "__main__":
    main()
