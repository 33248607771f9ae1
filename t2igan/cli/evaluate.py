"""``t2igan evaluate``: the papers' scores of a checkpoint under the pinned protocol.

t2igan evaluate --ckpt RUN/checkpoints/last.ckpt --metrics is fid kid clip_score \\
    --inception-weights weights-inception-2015-12-05-6726825d.pth --clip-model clip-vit-b16/
t2igan evaluate --ckpt RUN/checkpoints/last.ckpt --metrics fid kid caption_acc   # synthetic

The data is the run's (``RUN/config.yaml``, its ``data`` section) unless ``--data.KEY VALUE``
overrides it; the scores, their spread, the protocol and the SHA-256 of every weight file are
printed and written to ``<checkpoint>.eval.json``. A metric whose weights are missing is skipped
with an error naming the file and where it is published (the command then exits with status 1,
after writing the scores it could compute). A weight file given for no metric asked for is named
in a warning (``--inception-weights`` on synthetic birds, whose FID and KID use the bird
classifier's features); a given ``--inception-weights`` file is checked all the same, before the
model loads. See docs/evaluation.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from t2igan.classpath import check_class_paths
from t2igan.command import CommandParser, warn
from t2igan.metrics.evaluation import (
    PROTOCOLS,
    MissingWeightsError,
    check_inception_weights,
    protocol_record,
    require,
    sha256,
)
from t2igan.metrics.scoring import METRICS, Scorer, real_floor, score_model

if TYPE_CHECKING:
    pass


def data_module(ckpt: Path, config: str | None, overrides: list[str]):
    """The data module of the run that wrote ``ckpt`` (``RUN/config.yaml``, or ``config``),
    with ``--data.KEY VALUE`` overrides, parsed as LightningCLI parses it."""
    from jsonargparse import ArgumentParser

    from t2igan.data import T2IDataModule

    path = Path(config) if config else ckpt.parent.parent / "config.yaml"
    parser = ArgumentParser(prog="t2igan evaluate", exit_on_error=False)
    parser.add_class_arguments(T2IDataModule, "data")
    if path.is_file():
        run = yaml.safe_load(path.read_text()) or {}
        if not config:  # the run's own file, not one the user named: t2igan's classes only
            check_class_paths(run.get("data"), source=str(path))
        parser.set_defaults({f"data.{k}": v for k, v in (run.get("data") or {}).items()})
    elif config:
        raise FileNotFoundError(f"--config {config} does not exist")
    else:  # the captions are embedded as the checkpoint records (its classes checked)
        from t2igan.models.base import read_checkpoint

        spec = read_checkpoint(ckpt, "--ckpt", "")[0].get("hyper_parameters", {})
        spec = spec.get("text_encoder")
        if spec:
            check_class_paths(spec, source=f"checkpoint {ckpt} (its text encoder)")
            parser.set_defaults({"data.text_encoder": spec})
        warn("evaluate", f"{path} not found (the run's config): using the data defaults, the "
             "checkpoint's text encoder and the --data.* options")  # fmt: skip
    try:
        cfg = parser.parse_args(overrides)
    except Exception as err:  # jsonargparse's ArgumentError: one line for the handler
        raise ValueError(f"bad data option: {' '.join(str(err).split())}") from None
    return parser.instantiate_classes(cfg).data


def unused_options(a, dataset: str) -> dict[str, str]:
    """The weight files given on ``t2igan evaluate``'s command line ``a`` that none of its
    ``--metrics`` on ``dataset`` reads: flag -> why."""
    metrics = set(a.metrics)
    # synthetic birds: FID and KID in the bird classifier's space, not Inception's
    inception = {"fid", "kid"} if dataset != "synthetic" else set()
    if a.is_inception is None:
        inception.add("is")
    unused = {}
    if a.inception_weights is not None and not metrics & inception:
        if dataset == "synthetic":
            why = ("on synthetic birds FID and KID use the bird classifier's features; only is "
                   "(without --is-inception) reads it")  # fmt: skip
        else:
            why = ("only is (without --is-inception), fid and kid read it, and --metrics asks for "
                   "none of them")  # fmt: skip
        unused["--inception-weights"] = why
    for flag, value, metric in (("--is-inception", a.is_inception, "is"),
                                ("--clip-model", a.clip_model, "clip_score"),
                                ("--damsm-text-encoder", a.damsm_text_encoder, "r_precision"),
                                ("--damsm-image-encoder", a.damsm_image_encoder, "r_precision"),
                                ("--damsm-captions", a.damsm_captions, "r_precision"),
                                ("--sje-ckpt", a.sje_ckpt, "r_precision")):  # fmt: skip
        if value is not None and metric not in metrics:
            unused[flag] = f"only {metric} reads it, and --metrics does not ask for {metric}"
    damsm = (a.damsm_text_encoder, a.damsm_image_encoder, a.damsm_captions)
    if a.sje_ckpt is not None and "r_precision" in metrics and any(damsm):
        unused["--sje-ckpt"] = "r_precision uses the DAMSM files given instead"
    return unused


def evaluate(argv: list[str]) -> dict:
    """Run ``t2igan evaluate`` (see the module docstring); returns what it wrote."""
    from t2igan.models.base import read_checkpoint
    from t2igan.models.loading import load_model, torch_device

    p = CommandParser(prog="t2igan evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True, help="checkpoint of a t2igan run")
    p.add_argument("--metrics", nargs="+", default=["fid", "kid", "caption_acc"],
                   choices=METRICS, help="scores to compute")  # fmt: skip
    p.add_argument("--split", default=None, help="split whose captions are used (protocol: test)")
    p.add_argument("--num-samples", type=int, default=None,
                   help="generated images (default: the protocol's; another number is recorded "
                   "as a departure from it)")  # fmt: skip
    p.add_argument("--inception-weights", default=None, help="Inception-v3 .pth for is/fid/kid")
    p.add_argument("--is-inception", default=None,
                   help="StackGAN's fine-tuned Inception for is on birds and flowers, converted "
                   "by `python -m t2igan.metrics.stackgan_inception` (default: the ImageNet "
                   "Inception of --inception-weights)")  # fmt: skip
    p.add_argument("--clip-model", default=None, help="CLIP model folder for clip_score")
    p.add_argument("--damsm-text-encoder", default=None, help="AttnGAN's text_encoder*.pth")
    p.add_argument("--damsm-image-encoder", default=None, help="AttnGAN's image_encoder*.pth")
    p.add_argument("--damsm-captions", default=None,
                   help="AttnGAN's captions.pickle (the DAMSM vocabulary)")  # fmt: skip
    p.add_argument("--sje-ckpt", default=None,
                   help="R-precision without DAMSM: a DS-SJE checkpoint t2igan trained (its scores "
                   "are not comparable with the papers')")  # fmt: skip
    p.add_argument("--config", default=None, help="run config (default: RUN/config.yaml)")
    p.add_argument("--out", default=None, help="results JSON (default: <ckpt>.eval.json)")
    p.add_argument("--batch-size", type=int, default=64, help="images per sampling batch")
    p.add_argument("--device", default="cpu", help="torch device")
    a, overrides = p.parse_known_args(argv)
    bad = [o for o in overrides if o.startswith("--") and not o.startswith("--data.")]
    if bad:
        p.error(f"unknown option {bad[0]} (data options are --data.KEY VALUE)")
    if a.num_samples is not None and a.num_samples < 1:
        raise ValueError(f"--num-samples must be at least 1, got {a.num_samples}")
    if a.batch_size < 1:
        raise ValueError(f"--batch-size is the images per sampling batch: at least 1, got "
                         f"{a.batch_size}")  # fmt: skip
    ckpt = Path(a.ckpt)
    read_checkpoint(ckpt, "--ckpt", "pass a checkpoint that `t2igan fit` wrote, e.g. "
                    "runs/quickstart/checkpoints/last.ckpt")  # fmt: skip
    dm = data_module(ckpt, a.config, overrides)
    for flag, why in unused_options(a, dm.dataset).items():
        warn("evaluate", f"{flag} is not read: {why}")
    if a.inception_weights is not None:  # a wrong file fails now, not after the sampling
        check_inception_weights(a.inception_weights)
    model = load_model(ckpt, torch_device(a.device))
    base = PROTOCOLS[dm.dataset]
    overridden = {k: v for k, v in (("num_samples", a.num_samples), ("split", a.split))
                  if v is not None and v != getattr(base, k)}  # fmt: skip
    from dataclasses import replace

    protocol = replace(base, **overridden)
    classifier = clf_path = None
    if dm.dataset == "synthetic":
        from t2igan.metrics.bird_classifier import load_or_train

        classifier, clf_path = load_or_train(dm.root, dm.reader.seed)
    encoders, missing = None, None
    damsm = (a.damsm_text_encoder, a.damsm_image_encoder, a.damsm_captions)
    if "r_precision" in a.metrics:  # DAMSM when any of its files is given, else DS-SJE if given
        from t2igan.metrics.damsm import DAMSMPair
        from t2igan.models.char_cnn_rnn import SJEPair

        try:
            if a.sje_ckpt is not None and not any(damsm):
                sje = require(a.sje_ckpt, "--sje-ckpt", "damsm")
                encoders = SJEPair(sje, torch_device(a.device))
            else:
                encoders = DAMSMPair(*damsm, torch_device(a.device))
        except MissingWeightsError as err:
            missing = str(err)
    scorer = Scorer(a.metrics, protocol, a.inception_weights, a.clip_model, encoders,
                    bird_classifier=classifier, is_inception=a.is_inception)  # fmt: skip
    if missing:
        scorer.skipped["r_precision"] = missing
    if encoders is not None:
        scorer.weights.update({k: sha256(v) for k, v in encoders.files.items()})
    if clf_path is not None:
        scorer.weights["bird_classifier"] = sha256(clf_path)
    dataset = dm.dataset_of(protocol.split)
    scores = score_model(model, dataset, scorer, protocol.num_samples, a.batch_size, protocol.seed)
    result = {"checkpoint": str(ckpt), "scores": scores,
              "protocol": protocol_record(protocol, dm.dataset, overridden),
              "weights_sha256": scorer.weights, "skipped": scorer.skipped}  # fmt: skip
    if classifier is not None and {"fid", "kid"} & set(a.metrics):
        result["real_floor"] = real_floor(dm.dataset_of("train"), dataset, classifier,
                                          protocol.num_samples, a.batch_size)  # fmt: skip
    out = Path(a.out) if a.out else ckpt.with_suffix(".eval.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    for name, s in scores.items():
        spread = "" if s.get("std") is None else f" +- {s['std']:.4f}"
        if "mean" in s:
            print(f"{name}: {s['mean']:.4f}{spread}")
        else:
            print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in s.items()))
    for name, s in result.get("real_floor", {}).items():
        print(f"{name} floor (real test vs real train): {s['mean']:.4f}")
    print(f"wrote {out}")
    for name, why in list(scorer.skipped.items())[1:]:
        warn("evaluate", f"{name} skipped: {why}")
    if scorer.skipped:
        name, why = next(iter(scorer.skipped.items()))
        raise MissingWeightsError(f"{name} skipped: {why}")
    return result


def evaluate_main(argv: list[str]) -> None:
    evaluate(argv)


__all__ = ["Scorer", "evaluate", "evaluate_main"]
