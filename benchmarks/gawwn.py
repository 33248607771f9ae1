"""GAWWN location benchmark: do the birds drawn by the box and keypoint GAWWNs sit where they
were asked to, and do they still show their captions' colours? With a GAN-INT-CLS trained for
the same time (which ignores location) as the baseline.

    python benchmarks/gawwn.py --model box --minutes 45 [--no-d-head-norm]
    python benchmarks/gawwn.py --model keypoints --minutes 45 [--no-d-head-norm] [--map-size 16]
        [--ema-decay 0.995] [--wrong-location-weight 0.5] [--shifted-location-weight 0.5]
        [--mirrored-location-weight 0.5] [--soft-maps] [--no-flip] [--seed 1] [--draws 4]
    python benchmarks/gawwn.py --model gan_int_cls --minutes 45

Synthetic birds at 64 x 64 (8 x 8 maps; ``--map-size 16``: 16 x 16 keypoint maps), 3,000 training images, the hashing text encoder,
batch 16, 4 captions averaged, load size 76 with random crops and flips (``--no-flip``: none;
not the paper's training), seed 0 (``--seed``). For every image of the
held-out test split (its (body, head) colour pairs are never trained on), one sample is drawn
with that image's box or keypoints (centre view) and the mean of 4 of its captions (picked with
the global RNG, as the data module's test items are: one pass's beak figure moves by up to
about 0.05 between passes, so ``--draws N`` pools N passes and prints each pass's figure
beside the pooled one); the drawn bird, the largest 8-connected off-background region, is
read back with :func:`t2igan.metrics.read_bird_layout`:

* ``box_iou``: median IoU of the drawn bird's box with the requested box;
* ``beak_ok`` / ``tail_ok`` / ``both_ok``: fraction of images whose drawn beak (tail, both)
  lies within 0.1 of the image side of the requested position (images where the part is
  visible; a beak or tail not read counts as missed);
* ``wrong_facing``: fraction of the images with both parts visible and read whose drawn bird
  faces the other way (its beak on the side where the tail was asked for);
* ``body``: held-out body colour accuracy (:func:`t2igan.metrics.read_birds`).

Prints one JSON line; samples, the "where" and "what" figures, a 3x close-up of 8 test images
with their location and the samples drawn for it, and the checkpoint go to
``runs/bench_gawwn_<model>/`` (``--ckpt`` scores and draws a saved checkpoint again).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from t2igan.callbacks.figures import labelled_grid
from t2igan.callbacks.location import draw_location
from t2igan.data import HashingEncoder, T2IDataModule
from t2igan.metrics import box_iou, read_bird_layout, read_birds
from t2igan.models import GANINTCLS, GAWWNBox, GAWWNKeypoints

BEAK, TAIL = 1, 13  # CUB_PARTS indices


def _rate(hits: list) -> float | None:
    """Fraction of True among the cases that count (None: the case does not count; None if
    no case counts)."""
    counted = [h for h in hits if h is not None]
    return round(float(np.mean(counted)), 3) if counted else None


def _parts(r: dict, kp: np.ndarray) -> tuple:
    """(beak hit, tail hit, both hit, wrong facing) of one drawn bird ``r`` asked for the
    keypoints ``kp``; None where the case does not count (a part not asked for; the facing
    also where the drawn beak or tail is not read)."""
    asked = {name: kp[part] for name, part in (("beak", BEAK), ("tail", TAIL)) if kp[part, 2] > 0}
    hit = {name: r[name] is not None and np.linalg.norm(r[name] - at[:2]) <= 0.1
           for name, at in asked.items()}  # fmt: skip
    both = hit["beak"] and hit["tail"] if len(hit) == 2 else None
    facing = None
    if len(asked) == 2 and r["beak"] is not None and r["tail"] is not None:
        want = asked["beak"][0] - asked["tail"][0]
        facing = bool(np.sign(want) != np.sign(r["beak"][0] - r["tail"][0]))
    return hit.get("beak"), hit.get("tail"), both, facing


@torch.no_grad()
def scores(model, dm: T2IDataModule, out: Path, draws: int = 1) -> dict:
    """The location and colour figures over ``draws`` passes of the test split (fresh noise and
    captions each pass), with each pass's beak and tail figures beside the pooled ones."""
    ious, body, shown, passes = [], [], [], []
    g = torch.Generator().manual_seed(0)
    for _ in range(draws):
        cases = []
        for batch in dm.test_dataloader():
            cond = {k: batch[k] for k in model.takes[1:]}
            noise = model.sample_noise(len(batch["text_emb"]), generator=g)
            fake = model.sample(batch["text_emb"], noise, **cond)
            body.append((read_birds(fake)[:, 0] == batch["attributes"][:, 0]).numpy())
            arr = ((fake.cpu() + 1) * 127.5).permute(0, 2, 3, 1).numpy()
            for img, box, kp in zip(arr, batch["boxes"].numpy(), batch["keypoints"].numpy()):
                r = read_bird_layout(img)
                ious.append(box_iou(r["box"], box) if r["box"] is not None else 0.0)
                cases.append(_parts(r, kp))
            if len(shown) < 2:
                shown.append(fake[:8].cpu())
        passes.append(list(zip(*cases)))  # (beak, tail, both, facing) columns
    labelled_grid(torch.cat(shown), 8).save(out / "test_samples.png")
    beak, tail, both, facing = ([c for p in passes for c in p[k]] for k in range(4))
    result = {"box_iou": round(float(np.median(ious)), 3), "beak_ok": _rate(beak),
              "tail_ok": _rate(tail), "both_ok": _rate(both), "wrong_facing": _rate(facing),
              "body": round(float(np.concatenate(body).mean()), 3)}  # fmt: skip
    if draws > 1:
        result["draws"] = draws
        result["beak_ok_per_pass"] = [_rate(p[0]) for p in passes]
        result["tail_ok_per_pass"] = [_rate(p[1]) for p in passes]
    return result


@torch.no_grad()
def figures(model, dm: T2IDataModule, out: Path) -> None:
    """The "where" and "what" figures of a location model, as the training callbacks draw them,
    to ``out/where.png`` and ``out/what.png``."""
    from types import SimpleNamespace

    from t2igan.callbacks import WhatGrid, WhereGrid
    from t2igan.callbacks.figures import labelled_grid as grid

    for figure in (WhereGrid(steps=6), WhatGrid(num_captions=6, num_samples=2)):
        figure.fixed = figure.choose(SimpleNamespace(datamodule=dm), model)
        images, ncol, labels = figure.draw(model)
        grid(images, ncol, labels).save(out / f"{figure.key}.png")
        print(f"{figure.key}: {figure.layout}")
    # close-up, 3x: the first 8 test images, with their location, and the samples drawn for it
    batch = next(iter(dm.test_dataloader()))
    key, n = model.takes[1], 8
    where = batch[key][:n]
    noise = model.sample_noise(n, generator=torch.Generator().manual_seed(0))
    fake = model.sample(batch["text_emb"][:n], noise, **{key: where})
    real = torch.nn.functional.interpolate(batch["images"][:n], scale_factor=3)
    fake = torch.nn.functional.interpolate(fake, scale_factor=3)
    rows = [real, draw_location(real, key, where), fake, draw_location(fake, key, where)]
    labels = ["test images", "their location", "drawn for it", "drawn, with the location"]
    grid(torch.cat(rows), n, labels).save(out / "closeup.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("box", "keypoints", "gan_int_cls"), required=True)
    parser.add_argument("--minutes", type=float, default=45)
    parser.add_argument("--width", type=int, default=32, help="ngf = ndf")
    parser.add_argument("--root", default="data")
    parser.add_argument("--no-d-head-norm", action="store_true",
                        help="GAWWN without the BatchNorm1d of D's head (opt-in, not the authors')")  # fmt: skip
    parser.add_argument("--map-size", type=int, default=None,
                        help="keypoint maps' side (default 8, the authors' image_size // 8; 16 is opt-in)")  # fmt: skip
    parser.add_argument("--ema-decay", type=float, default=None,
                        help="sample from an EMA of G with this decay (opt-in, not the authors')")  # fmt: skip
    parser.add_argument("--wrong-location-weight", type=float, default=None,
                        help="D also rejects real images given another image's location (opt-in, not the authors')")  # fmt: skip
    parser.add_argument("--shifted-location-weight", type=float, default=None,
                        help="D also rejects real images given their own location moved by 0.15 (opt-in, not the authors')")  # fmt: skip
    parser.add_argument("--mirrored-location-weight", type=float, default=None,
                        help="D also rejects real images given their own keypoints mirrored, the bird facing the other way (opt-in, not the authors')")  # fmt: skip
    parser.add_argument("--soft-maps", action="store_true",
                        help="keypoint maps split bilinearly between cells (opt-in, not the authors')")  # fmt: skip
    parser.add_argument("--no-flip", action="store_true",
                        help="train without horizontal flips (some synthetic captions name the facing, which a flip contradicts)")  # fmt: skip
    parser.add_argument("--draws", type=int, default=1,
                        help="score over this many passes of the test split (fresh noise and captions each)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the run (weights, data order)")
    parser.add_argument("--ckpt", default=None, help="score this checkpoint instead of training")
    a = parser.parse_args()
    if a.draws < 1:
        parser.error(f"--draws must be >= 1, got {a.draws}")
    L.seed_everything(a.seed)
    dm = T2IDataModule(dataset="synthetic", root=a.root, image_size=64, load_size=76, flip=not a.no_flip,
                       num_captions=4, batch_size=16, num_images=3000, num_eval_images=256,
                       text_encoder=HashingEncoder())  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    cls = {"box": GAWWNBox, "keypoints": GAWWNKeypoints, "gan_int_cls": GANINTCLS}[a.model]
    extra = {"d_head_norm": False} if a.no_d_head_norm and cls is not GANINTCLS else {}
    if a.map_size:
        if cls is not GAWWNKeypoints:
            parser.error("--map-size is for --model keypoints")
        extra["map_size"] = a.map_size
    if a.ema_decay:
        extra["ema_decay"] = a.ema_decay
    for flag in ("soft_maps", "mirrored_location_weight"):
        if getattr(a, flag):
            if cls is not GAWWNKeypoints:
                parser.error(f"--{flag.replace('_', '-')} is for --model keypoints")
            extra[flag] = getattr(a, flag)
    for flag in ("wrong_location_weight", "shifted_location_weight"):
        if getattr(a, flag):
            if cls is GANINTCLS:
                parser.error(f"--{flag.replace('_', '-')} is for the GAWWN models")
            extra[flag] = getattr(a, flag)
    try:
        model = cls(text_dim=dm.text_dim, image_size=64, ngf=a.width, ndf=a.width,
                    text_encoder=dm.text_encoder_spec, **extra)  # fmt: skip
    except ValueError as e:  # a bad --map-size or --ema-decay: one line, not a traceback
        parser.error(str(e))
    tag = "_no_head_norm" if "d_head_norm" in extra else ""
    tag += f"_m{a.map_size}" if a.map_size else ""
    tag += f"_ema{a.ema_decay:g}" if a.ema_decay else ""
    tag += f"_wl{a.wrong_location_weight:g}" if a.wrong_location_weight else ""
    tag += f"_sl{a.shifted_location_weight:g}" if a.shifted_location_weight else ""
    tag += f"_ml{a.mirrored_location_weight:g}" if a.mirrored_location_weight else ""
    tag += "_soft" if a.soft_maps else ""
    tag += "_noflip" if a.no_flip else ""
    tag += f"_seed{a.seed}" if a.seed else ""
    out = Path(f"runs/bench_gawwn_{a.model}{tag}")
    out.mkdir(parents=True, exist_ok=True)
    if a.ckpt:
        model = cls.load_from_checkpoint(a.ckpt, map_location="cpu", weights_only=True)
        dm.setup("test")
        print(json.dumps({"model": a.model, "ckpt": a.ckpt, **scores(model, dm, out, a.draws)}))
        if a.model != "gan_int_cls":
            figures(model, dm, out)
        return
    trainer = L.Trainer(max_time={"minutes": a.minutes}, max_epochs=-1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        limit_val_batches=0, default_root_dir=out)  # fmt: skip
    start = time.monotonic()
    trainer.fit(model, datamodule=dm)
    dm.setup("test")
    result = {"model": a.model, **extra, "flip": not a.no_flip, "seed": a.seed, "width": a.width, "minutes": round((time.monotonic() - start) / 60, 1),
              "epochs": trainer.current_epoch, "batches": trainer.global_step // 2,
              **scores(model, dm, out, a.draws)}  # fmt: skip
    trainer.save_checkpoint(out / "last.ckpt")
    print(json.dumps(result))
    if a.model != "gan_int_cls":
        figures(model, dm, out)


if __name__ == "__main__":
    main()
