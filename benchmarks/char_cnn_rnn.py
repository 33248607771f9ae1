"""Text-encoder benchmark: train the char-CNN-RNN (or char-CNN-GRU) with DS-SJE on synthetic
birds for a wall-clock budget, then report zero-shot top-1 and AP@50 on the 16 held-out
(body, head) classes, the cosine of colour-swapped captions ("a red body and a blue head" vs "a
blue body and a red head", mean over all 56 ordered pairs) beside MiniLM's, raw and centred on
the training captions' mean embedding (``swap_cosine_centred``: what is left once the direction
every caption shares is removed), and captions/s.

    python benchmarks/char_cnn_rnn.py --minutes 15      # writes runs/bench_char_cnn_rnn/encoder.ckpt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from t2igan.cli.fit import cli
from t2igan.data.synthetic import SyntheticBirds
from t2igan.metrics import swapped_caption_cosine


def throughput(encoder, captions: list[str]) -> float:
    encoder.encode(captions[:64])  # warm up (loads the model)
    t = time.perf_counter()
    encoder.encode(captions)
    return len(captions) / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=15.0, help="training budget")
    p.add_argument("--architecture", default="cnn_rnn", choices=["cnn_rnn", "cnn_gru"])
    p.add_argument("--out", default="runs/bench_char_cnn_rnn")
    p.add_argument("--skip-minilm", action="store_true")
    p.add_argument("--ship", action="store_true",
                   help="also write the trained text network, float16 and centred on the "
                        "training captions, where the package ships it (t2igan/assets/: the "
                        "quickstart's t2igan:synthetic_birds)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads: alone on the 2-core machine 2 ran 1.5x the iterations "
                        "of 1, but up to 80x slower than 1 while other jobs held the cores")  # fmt: skip
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    minutes = int(a.minutes * 60)
    t0 = time.time()
    run = cli(["fit", "--config", "experiments/char_cnn_rnn.yaml",
               "--trainer.default_root_dir", a.out,
               "--trainer.max_time", f"00:00:{minutes // 60:02d}:{minutes % 60:02d}",
               "--model.init_args.architecture", a.architecture])  # fmt: skip
    train_s = time.time() - t0
    model = run.model
    top1, ap50 = model.zero_shot(run.datamodule.dataset_of("test"))
    ckpt = Path(a.out) / "encoder.ckpt"
    run.trainer.save_checkpoint(ckpt)
    from t2igan.models import CharCNNEncoder

    # training captions (2,400, of 400 images): the centring mean, and throughput
    caps = [c for caps in SyntheticBirds(32, 400, 64, 0).load("train").captions for c in caps]
    enc = CharCNNEncoder(str(ckpt))
    if a.ship:
        from t2igan.models.char_cnn_rnn import ASSETS, SHIPPED_ENCODERS, export_text_encoder

        shipped = ASSETS / SHIPPED_ENCODERS["synthetic_birds"]
        print("shipped:", export_text_encoder(ckpt, shipped, centre_on=caps))
    res = {"architecture": a.architecture, "train_seconds": round(train_s, 1),
           "iterations": run.trainer.global_step, "zsl_top1": round(top1, 3),
           "ap50": round(ap50, 3), "swap_cosine": round(swapped_caption_cosine(enc), 3),
           "swap_cosine_centred": round(swapped_caption_cosine(enc, caps), 3),
           "captions_per_s": round(throughput(enc, caps), 1), "encoder": str(ckpt)}  # fmt: skip
    if not a.skip_minilm:
        from t2igan.data import SentenceTransformerEncoder

        mini = SentenceTransformerEncoder()
        res["minilm_swap_cosine"] = round(swapped_caption_cosine(mini), 3)
        res["minilm_swap_cosine_centred"] = round(swapped_caption_cosine(mini, caps), 3)
        res["minilm_captions_per_s"] = round(throughput(mini, caps), 1)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
