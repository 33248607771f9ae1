"""DRAW / alignDRAW benchmark: alignDRAW, DRAW (conditioned on the sentence embedding) and
GAN-INT-CLS side by side at the same wall-clock budget on synthetic birds (32 x 32).

    flock /tmp/t2igan-bench.lock python benchmarks/draw.py                 # 8 min per model
    flock /tmp/t2igan-bench.lock python benchmarks/draw.py --minutes 2 --models aligndraw

For each model it trains for ``--minutes`` of wall clock, then reports: the test bound (-ELBO,
nats per image, one draw of q's noise per test image; VAEs only), held-out ``caption_acc`` by
attribute (the test split's (body, head) combinations are never trained on) and training
images/s. It writes ``<out>/results.json`` and the figures: for each model a sample grid, the
canvas over time of both VAEs and alignDRAW's word alignment (``<out>/figures/``).
``--figures-only`` redraws the figures from the saved checkpoints and measures sampling
images/s (``model.sample`` on the test captions), without training.

The VAEs run at reduced sizes (``--steps``, ``--lstm``, ``--z``, ``--attention``; the same for
both): the authors' COCO network trains at about 3 images/s on this CPU, which would show
nothing in minutes. GAN-INT-CLS runs as ``benchmarks/learning.py`` (ngf = ndf = 32).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).parent))
from learning import Report  # noqa: E402

from t2igan.callbacks import CanvasSteps, SampleGrid, WordAlignment  # noqa: E402
from t2igan.data import T2IDataModule  # noqa: E402
from t2igan.data.synthetic import ATTRIBUTES  # noqa: E402
from t2igan.models import DRAW, GANINTCLS, AlignDRAW  # noqa: E402

MODELS = ("aligndraw", "draw", "gan_int_cls")


@torch.no_grad()
def test_bound(model, dm: T2IDataModule) -> dict[str, float]:
    """Mean bound, reconstruction and KL (nats per image) over the test split."""
    torch.manual_seed(0)
    model.eval()
    sums, n = {"bound": 0.0, "recon": 0.0, "kl": 0.0}, 0
    for batch in dm.test_dataloader():
        terms = model.losses(batch)
        for k in sums:
            sums[k] += float(terms[k].sum())
        n += len(batch["images"])
    model.train()
    return {f"test_{k}": round(v / n, 1) for k, v in sums.items()}


@torch.no_grad()
def sampling_rate(model, dm: T2IDataModule) -> float:
    """Images/s of ``model.sample`` over the test split's captions (batches of --batch-size)."""
    start, n = time.time(), 0
    for batch in dm.test_dataloader():
        model.sample(batch["text_emb"], **model.conditioning_of(batch))
        n += len(batch["text_emb"])
    return round(n / (time.time() - start), 1)


def build(name: str, dm: T2IDataModule, a) -> L.LightningModule:
    vae = dict(steps=a.steps, enc_dim=a.lstm, dec_dim=a.lstm, z_dim=a.z, read_n=a.attention,
               write_n=a.attention, lr=a.lr, text_encoder=dm.text_encoder_spec)  # fmt: skip
    if name == "aligndraw":
        return AlignDRAW(dm.text_dim, dm.image_size, lang_dim=a.lang, align_dim=a.align, **vae)
    if name == "draw":
        return DRAW(dm.text_dim, dm.image_size, **vae)
    return GANINTCLS(text_dim=dm.text_dim, image_size=dm.image_size, ngf=32, ndf=32,
                     text_encoder=dm.text_encoder_spec)  # fmt: skip


def figures(name: str, model, dm: T2IDataModule, out: Path) -> list[str]:
    """The end-of-run figures, drawn by the callbacks from their fixed inputs."""
    trainer = SimpleNamespace(datamodule=dm)
    kinds = [("samples", SampleGrid(num_captions=8, num_samples=8))]
    if name != "gan_int_cls":
        kinds.append(("canvas", CanvasSteps(num_captions=6, every_k_steps=2)))
    if name == "aligndraw":
        kinds.append(("alignment", WordAlignment(num_captions=3)))
    written = []
    for kind, figure in kinds:
        figure.fixed = figure.choose(trainer, model)
        image, caption = figure.figure(model)
        path = out / f"{name}_{kind}.png"
        image.save(path)
        (out / f"{name}_{kind}.txt").write_text(caption + "\n")
        written.append(str(path))
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=8.0, help="training budget per model")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--num-images", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=16, help="T of both VAEs")
    p.add_argument("--lstm", type=int, default=256, help="encoder and decoder LSTM size")
    p.add_argument("--z", type=int, default=64, help="latent size per step")
    p.add_argument("--attention", type=int, default=5, help="read and write grid side N")
    p.add_argument("--lang", type=int, default=64, help="alignDRAW language LSTM size")
    p.add_argument("--align", type=int, default=128, help="alignDRAW alignment size")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--out", default="runs/bench_draw")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    p.add_argument("--figures-only", action="store_true",
                   help="no training: redraw the figures from <out>/<model>/last.ckpt")  # fmt: skip
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    results = []
    for name in a.models:
        L.seed_everything(0)
        dm = T2IDataModule(image_size=32, num_images=a.num_images, num_eval_images=256,
                           batch_size=a.batch_size, num_captions=1)  # fmt: skip
        dm.prepare_data()
        dm.setup("fit")
        dm.setup("test")
        if a.figures_only:
            from t2igan.models.loading import load_model

            model = load_model(out / name / "last.ckpt")
            print(figures(name, model, dm, out / "figures"), flush=True)
            print(json.dumps({"model": name, "sampling_images_per_s": sampling_rate(model, dm)}),
                  flush=True)  # fmt: skip
            continue
        model = build(name, dm, a)
        report = Report(a.minutes * 60, a.minutes * 60, dm)
        trainer = L.Trainer(max_epochs=10_000, accelerator="cpu", logger=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            limit_val_batches=0, num_sanity_val_steps=0,
                            default_root_dir=out / name, callbacks=[report])  # fmt: skip
        print(f"{name}: {a.minutes} min on {torch.get_num_threads()} threads", flush=True)
        trainer.fit(model, datamodule=dm)
        row = {"model": name, **report.rows[-1]}
        if name != "gan_int_cls":
            row.update(test_bound(model, dm))
            row["parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        row["figures"] = figures(name, model, dm, out / "figures")
        trainer.save_checkpoint(out / name / "last.ckpt")
        results.append(row)
        print(json.dumps(row), flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    cols = ["model", "minutes", "epoch", "images_per_s", "test_bound", "test_recon", "test_kl",
            "caption_acc", *ATTRIBUTES]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    for r in results:
        print("| " + " | ".join(str(r.get(c, "-")) for c in cols) + " |")


if __name__ == "__main__":
    main()
