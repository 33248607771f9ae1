"""``make demo``: train GAN-INT-CLS on synthetic birds, test it on held-out colour pairs, and
say where the figures are. Sized to finish in about 10 minutes on a 2-core laptop CPU."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from t2igan.cli.fit import cli

CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "quickstart.yaml"


def main(args: list[str] | None = None) -> None:
    """Fit, then test, ``experiments/quickstart.yaml``; ``args`` are extra CLI flags for both."""
    args = list(args or [])
    start = time.time()
    fit = cli(["fit", "--config", str(CONFIG), *args])
    run = Path(fit.trainer.default_root_dir)
    ckpt = Path(fit.trainer.checkpoint_callback.last_model_path)
    test = cli(["test", "--config", str(CONFIG), *args, "--ckpt_path", str(ckpt)])
    acc = test.trainer.callback_metrics
    samples = sorted((run / "samples").glob("epoch_*.png"))
    print("\n" + "=" * 72)
    print(f"t2igan quickstart finished in {(time.time() - start) / 60:.1f} min")
    if "test/caption_acc" in acc:
        print(f"held-out colour pairs: caption_acc {float(acc['test/caption_acc']):.3f} "
              f"(body {float(acc['test/caption_acc/body']):.3f}; chance 0.125)")  # fmt: skip
    if samples:
        print(f"sample grids, one per epoch: {samples[0].parent}/ (latest: {samples[-1].name})")
    print(f"checkpoint: {ckpt}")
    print(f"logs: tensorboard --logdir {run / 'logs'}")
    print(
        f'draw your own: .venv/bin/t2igan generate --ckpt {ckpt} --caption "a bird with a red '
        'body and a blue head" --num 8 --out out/'
    )
    print("=" * 72)


if __name__ == "__main__":
    main(sys.argv[1:])  # e.g. python -m t2igan.cli.demo --trainer.max_time 00:00:02:00
