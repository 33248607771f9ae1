"""t2igan's GPU figures in one run: every paper model's training speed and peak memory at the
papers' settings, t2igan's loop against a bare PyTorch loop (``benchmarks/speed.py``), fp32
against bf16-mixed and the opt-in speed-ups; the data loader from a prepared cache against
the GPU's training speed; and a short ``t2igan fit`` through the real CLI on the device with
bf16-mixed, then ``t2igan generate`` from its checkpoint.

On the GPU machine (no network; the wheels it lacks travel in ``.whl/``), see gpu.sh:

    bash benchmarks/gpu.sh                      # everything, within --budget-s (default 420 s)
    bash benchmarks/gpu.sh --models gan_int_cls --no-compile

Anywhere, a quick check that every part runs (tests/test_gpu_script.py runs it on the CPU):

    python benchmarks/gpu.py --tiny --out /tmp/gpu

Every figure goes to ``OUT/gpu.json`` (rewritten after each measurement, so a run cut short
keeps what it measured) and a short table is printed. A part that fails is recorded with its
error and the run goes on. Measurements are made in the order of their worth, the compiled
ones last (their compilation takes the longest); once ``--budget-s`` has passed, the rest are
recorded as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

import speed  # noqa: E402  (benchmarks/speed.py, beside this file)

#: t2igan's loop under this fraction of the bare loop's images/s is profiled (the aim: 0.95).
PROFILE_BELOW = 0.95
#: At most this many settings are profiled, the slowest relative to the bare loop first.
MAX_PROFILES = 2

#: The settings measured for every model, in order: name -> (precision, channels_last,
#: compile, fused_adam). "fp32" is the reference implementations' (eager fp32).
SETTINGS = {
    "fp32": ("32-true", False, False, False),
    "bf16": ("bf16-mixed", False, False, False),
    "bf16+channels_last": ("bf16-mixed", True, False, False),
    "bf16+channels_last+fused_adam+compile": ("bf16-mixed", True, True, True),
}


class Results:
    """The run's figures, written to ``OUT/gpu.json`` after every change (atomically)."""

    def __init__(self, out: Path, meta: dict) -> None:
        self.path = out / "gpu.json"
        self.data = {**meta, "speed": [], "profiles": [], "loader": [], "cli": {}, "errors": [],
                     "skipped": []}  # fmt: skip

    def add(self, key: str, value) -> None:
        if isinstance(self.data[key], list):
            self.data[key].append(value)
        else:
            self.data[key].update(value)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        os.replace(tmp, self.path)


def failure(what: str, err: BaseException) -> dict:
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return {"what": what, "error": f"{type(err).__name__}: {line}",
            "traceback": traceback.format_exc()[-3000:]}  # fmt: skip


def measure_speed(name: str, setting: str, batch_size: int, a) -> dict:
    """One model at one setting; on a GPU out of memory, the batch is halved until it fits
    (the figure says which batch ran)."""
    precision, channels_last, compile, fused_adam = SETTINGS[setting]
    while True:
        try:
            r = speed.measure(name, batch_size, a.rounds, a.steps, precision, channels_last,
                              compile, fused_adam, a.tiny)  # fmt: skip
            return {"setting": setting, **r}
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if batch_size == 1:
                raise
            print(f"{name} {setting}: batch {batch_size} does not fit; trying {batch_size // 2}")
            batch_size //= 2


def to_profile(measured: list[dict]) -> list[dict]:
    """The measured settings whose loop falls under :data:`PROFILE_BELOW` of the bare loop,
    slowest first, at most :data:`MAX_PROFILES`."""
    slow = sorted((r for r in measured if r["fit_over_bare"] < PROFILE_BELOW),
                  key=lambda r: r["fit_over_bare"])  # fmt: skip
    return slow[:MAX_PROFILES]


def loader_figure(side: int, load_size: int, a, work: Path) -> dict:
    """Images/s of the training loader from a ``t2igan prepare`` cache of a CUB-layout folder
    (synthetic JPEGs written in the real layout by tests/data_fixtures.py)."""
    from t2igan.data import HashingEncoder, T2IDataModule
    from t2igan.data.prepare import prepare
    from tests.data_fixtures import make_cub

    root = work / "data"
    if not (root / "CUB_200_2011").exists():
        make_cub(root, classes=(1, 2, 4, 7), per_class=16 if a.tiny else 256)
    encoder = HashingEncoder(speed.TEXT_DIM)
    cache = prepare("cub", root, root / "CUB_200_2011", load_size, encoder, False, None)
    batch = 8 if a.tiny else 64
    dm = T2IDataModule("cub", str(root), source=str(root / "CUB_200_2011"), image_size=side,
                       load_size=load_size, batch_size=batch, num_workers=a.workers,
                       text_encoder=encoder)  # fmt: skip
    return {"image_size": side, "load_size": load_size, "batch_size": batch,
            "workers": a.workers, "cache": cache.name,
            "images_per_s": speed.loader_images_per_s(dm)}  # fmt: skip


def cli_figure(a, work: Path) -> dict:
    """``t2igan fit`` of the quickstart config on the device with bf16-mixed for one epoch,
    then ``t2igan generate`` from its checkpoint; each must exit 0."""
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    run = work / "quickstart"
    fit = [sys.executable, "-m", "t2igan.cli", "fit", "--config",
           str(ROOT / "experiments/quickstart.yaml"), "--trainer.accelerator", accelerator,
           "--trainer.devices", "1", "--trainer.precision", "bf16-mixed",
           "--trainer.max_epochs", "1", "--trainer.max_time", "null",
           "--trainer.default_root_dir", str(run), "--data.root", str(work / "data"),
           "--data.num_images", "64" if a.tiny else "3000"]  # fmt: skip
    if a.tiny:
        fit += ["--model.init_args.ngf", "8", "--model.init_args.ndf", "8",
                "--data.num_eval_images", "16"]  # fmt: skip
    generate = [sys.executable, "-m", "t2igan.cli", "generate", "--ckpt",
                str(run / "checkpoints/last.ckpt"), "--caption", "a bird with a red body",
                "--num", "4", "--out", str(work / "generated"),
                "--device", "cuda" if accelerator == "gpu" else "cpu"]  # fmt: skip
    out = {}
    for name, cmd in (("fit", fit), ("generate", generate)):
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        out[name] = {"returncode": proc.returncode, "seconds": time.perf_counter() - t,
                     "command": " ".join(cmd[2:]), "stderr_tail": proc.stderr[-1500:]}  # fmt: skip
        if proc.returncode:
            break
    if "generate" in out and out["generate"]["returncode"] == 0:
        out["generate"]["files"] = sorted(p.name for p in (work / "generated").iterdir())
    return out


def table(data: dict) -> str:
    """The printed summary of ``data`` (gpu.json's content)."""
    lines = [f"{data['device']} | torch {data['torch']} | {data['threads']} CPU threads",
             f"{'model':<16} {'setting':<38} {'batch':>5} {'fit img/s':>10} {'bare img/s':>10} "
             f"{'fit/bare':>8} {'vs fp32 bare':>12} {'peak GiB':>8} {'rel diff':>8}"]  # fmt: skip
    base = {r["model"]: r["bare_images_per_s"] for r in data["speed"] if r["setting"] == "fp32"}
    for r in data["speed"]:
        gain = r["bare_images_per_s"] / base[r["model"]] if r["model"] in base else float("nan")
        peak = max(v for v in (r["fit_peak_gib"], r["bare_peak_gib"], 0) if v is not None)
        lines.append(f"{r['model']:<16} {r['setting']:<38} {r['batch_size']:>5} "
                     f"{r['fit_images_per_s']:>10.1f} {r['bare_images_per_s']:>10.1f} "
                     f"{r['fit_over_bare']:>8.3f} {gain:>12.2f} {peak:>8.2f} "
                     f"{r['sample_difference']:>8.4f}")  # fmt: skip
    for r in data["profiles"]:
        lines.append(f"profiled {r['model']} {r['setting']} (fit/bare {r['fit_over_bare']:.3f}): "
                     "gpu.json's profiles hold the report")  # fmt: skip
    for r in data["loader"]:
        lines.append(f"loader from cache, {r['image_size']} px from {r['load_size']}, "
                     f"{r['workers']} workers: {r['images_per_s']:.0f} images/s")  # fmt: skip
    for name, r in data["cli"].items():
        lines.append(f"t2igan {name}: exit {r['returncode']} in {r['seconds']:.0f} s")
    lines += [f"FAILED {e['what']}: {e['error']}" for e in data["errors"]]
    lines += [f"skipped (budget): {s}" for s in data["skipped"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT", "runs/gpu"),
                   help="folder of gpu.json (default $OUT, else runs/gpu)")  # fmt: skip
    p.add_argument("--models", nargs="+", choices=tuple(speed.PAPER), default=list(speed.PAPER))
    p.add_argument("--tiny", action="store_true",
                   help="small widths and sides, one step: checks that every part runs")  # fmt: skip
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    p.add_argument("--steps", type=int, default=None, help="timed batches a round (default 10)")
    p.add_argument("--workers", type=int, default=None,
                   help="loader workers (default: 8, or 0 with --tiny)")  # fmt: skip
    p.add_argument("--no-compile", action="store_true", help="leave out the compiled setting")
    p.add_argument("--budget-s", type=float, default=420,
                   help="start no new measurement after this many seconds")  # fmt: skip
    a = p.parse_args(argv)
    a.rounds = a.rounds or (1 if a.tiny else 3)
    a.steps = a.steps or (1 if a.tiny else 10)
    a.workers = (0 if a.tiny else min(8, os.cpu_count() or 1)) if a.workers is None else a.workers
    start = time.perf_counter()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results = Results(out, {"device": speed.device_name(), "torch": torch.__version__,
                            "threads": torch.get_num_threads(), "tiny": a.tiny,
                            "rounds": a.rounds, "steps": a.steps})  # fmt: skip
    settings = [s for s in SETTINGS if not (a.no_compile and SETTINGS[s][2])]
    plain = [(m, s) for s in settings if not SETTINGS[s][2] for m in a.models]
    compiled = [(m, s) for s in settings if SETTINGS[s][2] for m in a.models]
    batch = {m: 8 if a.tiny else speed.PAPER[m][1] for m in a.models}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        loaders = [(32, 38)] if a.tiny else [(64, 76), (256, 304)]  # (side, load size)
        jobs = [
            *[("speed", m, s) for m, s in plain],
            ("profile", None, None),
            ("cli", None, None),
            *[("loader", side, load) for side, load in loaders],
            *[("speed", m, s) for m, s in compiled],
        ]
        for kind, x, y in jobs:
            what = f"{kind} {x or ''} {y or ''}".strip()
            if time.perf_counter() - start > a.budget_s:
                results.add("skipped", what)
                continue
            print(f"[{time.perf_counter() - start:5.0f} s] {what}", flush=True)
            try:
                if kind == "speed":
                    r = measure_speed(x, y, batch[x], a)
                    batch[x] = r["batch_size"]  # a batch that did not fit is not tried again
                    results.add("speed", r)
                elif kind == "profile":
                    for r in to_profile(results.data["speed"]):
                        what = f"profile {r['model']} {r['setting']}"
                        print(f"[{time.perf_counter() - start:5.0f} s] {what}", flush=True)
                        report = speed.profile(r["model"], r["batch_size"], a.steps,
                                               *SETTINGS[r["setting"]], a.tiny)  # fmt: skip
                        results.add("profiles", {"model": r["model"], "setting": r["setting"],
                                                 "fit_over_bare": r["fit_over_bare"],
                                                 "report": report})  # fmt: skip
                elif kind == "loader":
                    results.add("loader", loader_figure(x, y, a, work))
                else:
                    results.add("cli", cli_figure(a, work))
            except Exception as err:  # noqa: BLE001  (recorded; the run goes on)
                results.add("errors", failure(what, err))
    print(table(results.data))
    print(f"figures: {results.path}")
    failed = results.data["errors"] or any(r["returncode"] for r in results.data["cli"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
