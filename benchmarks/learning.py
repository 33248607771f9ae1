"""Learning benchmark: train GAN-INT-CLS on synthetic birds and report how well generated birds
show their captions' colours on held-out (body, head) combinations, with throughput.

    python benchmarks/learning.py                     # up to 45 minutes on a 2-core CPU
    python benchmarks/learning.py --minutes 5         # shorter
    python benchmarks/learning.py --ckpt runs/bench_learning/checkpoints/last.ckpt  # score again

Every ``--report-every`` minutes (and at the end) it prints images/s and ``caption_acc`` on the
held-out test split (combinations never seen in training), split by attribute; at the end also
on the validation split (new images of the (body, head) pairs seen in training), so a gap between
the two tells composing unseen pairs apart from learning colours at all. The run directory keeps
sample grids and the last checkpoint (``runs/bench_learning``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import torch

from t2igan.callbacks import SampleGrid
from t2igan.data import T2IDataModule
from t2igan.data.synthetic import ATTRIBUTES
from t2igan.metrics import CaptionAccuracy, read_birds
from t2igan.models import GANINTCLS, TextToImageModel


@torch.no_grad()
def split_scores(model: TextToImageModel, dm: T2IDataModule, split: str = "test") -> dict:
    """caption_acc on the whole ``split`` (test: the held-out combinations), one sample per image
    (with the conditioning the model takes beyond text, e.g. alignDRAW's word ids)."""
    metric = CaptionAccuracy()
    g = torch.Generator().manual_seed(0)  # the same noise at every report
    loader = dm.test_dataloader() if split == "test" else dm.val_dataloader()
    for batch in loader:
        noise = model.sample_noise(len(batch["text_emb"]), generator=g)
        fake = model.sample(batch["text_emb"], noise, **model.conditioning_of(batch))
        metric.update(read_birds(fake), batch["attributes"], batch["attributes_named"])
    return {k: round(float(v), 3) for k, v in metric.compute().items()}


class Report(L.Callback):
    """Prints throughput and held-out scores every ``every`` seconds; stops at ``budget``."""

    def __init__(self, every: float, budget: float, dm: T2IDataModule) -> None:
        self.every, self.budget, self.dm = every, budget, dm
        self.start = self.last = time.time()
        self.images = 0
        self.train_seconds = 0.0
        self.rows: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t = time.time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train_seconds += time.time() - self._t
        self.images += len(batch["images"])
        now = time.time()
        if now - self.start >= self.budget:
            trainer.should_stop = True
        if now - self.last >= self.every or trainer.should_stop:
            self.report(trainer, pl_module)
            self.last = time.time()

    def report(self, trainer, pl_module) -> None:
        row = {
            "minutes": round((time.time() - self.start) / 60, 1),
            "epoch": trainer.current_epoch,
            "images_per_s": round(self.images / max(self.train_seconds, 1e-9), 1),
            **split_scores(pl_module, self.dm),
        }
        self.rows.append(row)
        print(json.dumps(row), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=45.0, help="training budget")
    p.add_argument("--report-every", type=float, default=5.0, help="minutes between reports")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--width", type=int, default=32, help="ngf = ndf")
    p.add_argument("--num-images", type=int, default=3000)
    p.add_argument("--encoder", default="minilm",
                   help="caption encoder: minilm (all-MiniLM-L6-v2, default), hashing (word "
                        "bigrams) or the path of a char-CNN-RNN encoder checkpoint "
                        "(benchmarks/char_cnn_rnn.py writes one)")  # fmt: skip
    p.add_argument("--out", default="runs/bench_learning")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    p.add_argument("--ckpt", default=None, help="score this run's checkpoint instead of training")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    L.seed_everything(0)
    encoder = None
    if a.encoder == "hashing":
        from t2igan.data import HashingEncoder

        encoder = HashingEncoder()
    elif a.encoder != "minilm":
        from t2igan.models import CharCNNEncoder

        encoder = CharCNNEncoder(a.encoder)
    dm = T2IDataModule(image_size=a.image_size, num_images=a.num_images, num_eval_images=256,
                       batch_size=64, text_encoder=encoder)  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    if a.ckpt:
        model = GANINTCLS.load_from_checkpoint(a.ckpt, weights_only=True).eval()
        for split in ("test", "val"):
            print(f"{split}:", json.dumps(split_scores(model, dm, split)))
        return
    model = GANINTCLS(text_dim=dm.text_dim, image_size=a.image_size, ngf=a.width, ndf=a.width,
                      text_encoder=dm.text_encoder_spec)  # fmt: skip
    report = Report(a.report_every * 60, a.minutes * 60, dm)
    trainer = L.Trainer(
        max_epochs=10_000, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        default_root_dir=a.out,
        callbacks=[report, SampleGrid(every_n_epochs=5),
                   L.pytorch.callbacks.ModelCheckpoint(dirpath=Path(a.out) / "checkpoints",
                                                       save_last=True, save_top_k=0)],
    )  # fmt: skip
    print(f"GAN-INT-CLS {a.image_size}px ngf=ndf={a.width}, {a.num_images} images, encoder "
          f"{a.encoder}, {a.minutes} min on {torch.get_num_threads()} threads", flush=True)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    final = report.rows[-1]
    print("final:", json.dumps(final))
    print("held-out caption_acc by attribute (chance: colours 0.125, background 0.25, "
          "facing/size 0.5):", {k: final[k] for k in ATTRIBUTES if k in final})  # fmt: skip
    print("seen (body, head) pairs, validation split:",
          json.dumps(split_scores(model.eval(), dm, "val")))  # fmt: skip


if __name__ == "__main__":
    main()
