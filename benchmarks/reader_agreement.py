"""How far the two readers of synthetic birds agree as training goes: the quickstart run
(GAN-INT-CLS, 32 x 32, ngf = ndf = 32, 3,000 birds) with :class:`t2igan.callbacks.ImageMetrics`,
printing, every ``--every`` epochs on the validation split, ``caption_acc`` as the parser
(``read_birds``) reads it, as the bird classifier reads it, their agreement, and FID / KID in the
classifier's feature space; the real-image floor (real validation against real training birds)
is printed first.

    python benchmarks/reader_agreement.py --epochs 10 --every 2 --samples 768
"""

from __future__ import annotations

import argparse

import lightning as L
from lightning.pytorch.loggers import CSVLogger

from t2igan.callbacks import ImageMetrics
from t2igan.data import T2IDataModule
from t2igan.metrics.bird_classifier import load_or_train
from t2igan.metrics.scoring import real_floor
from t2igan.models import GANINTCLS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--every", type=int, default=2)
    p.add_argument("--samples", type=int, default=768)
    p.add_argument("--root", default="data")
    p.add_argument("--out", default="runs/reader_agreement")
    a = p.parse_args()
    L.seed_everything(0)
    dm = T2IDataModule("synthetic", a.root, image_size=32, num_images=3000, num_eval_images=256)
    dm.prepare_data()
    dm.setup("fit")
    classifier, path = load_or_train(dm.root, dm.reader.seed)
    floor = real_floor(dm.dataset_of("train"), dm.dataset_of("val"), classifier, a.samples)
    print(
        f"classifier {path}; floor: fid {floor['fid']['mean']:.4f} kid {floor['kid']['mean']:.5f}"
    )
    model = GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=32, ndf=32,
                      text_encoder=dm.text_encoder_spec)  # fmt: skip
    metrics = ImageMetrics(every_n_epochs=a.every, num_samples=a.samples)
    logger = CSVLogger(a.out, name="logs")
    trainer = L.Trainer(max_epochs=a.epochs, logger=logger, callbacks=[metrics],
                        enable_checkpointing=False, enable_progress_bar=False,
                        default_root_dir=a.out)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    import csv

    rows = list(csv.DictReader(open(f"{logger.log_dir}/metrics.csv")))
    keys = ["val/caption_acc", "val/caption_acc_classifier", "val/reader_agreement/body",
            "val/reader_agreement/head", "val/reader_agreement/wing",
            "val/reader_agreement/all_colours", "val/fid", "val/kid"]  # fmt: skip
    print("epoch | " + " | ".join(k.removeprefix("val/") for k in keys))
    for row in rows:
        if row.get("val/fid"):
            print(f"{int(row['epoch']) + 1} | " + " | ".join(f"{float(row[k]):.3f}" for k in keys))


if __name__ == "__main__":
    main()
