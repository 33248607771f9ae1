"""Scoring a model under the pinned protocol: the metrics ``t2igan evaluate`` and the
``ImageMetrics`` callback compute (IS, FID, KID, R-precision, CLIP score, caption accuracy), fed
real and generated images in batches (docs/evaluation.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from t2igan.metrics.evaluation import (
    EncoderPair,
    MissingWeightsError,
    load_clip,
    load_inception,
    r_precision,
    require,
    sha256,
    to_uint8,
)

if TYPE_CHECKING:
    from t2igan.models.base import TextToImageModel

METRICS = ("is", "fid", "kid", "r_precision", "clip_score", "caption_acc")


def caption_order(num_images: int, captions_per_image: int, num_samples: int):
    """(image, caption) of each sample: every image with its first caption, then every image
    with its second, ..., round again if more samples than captions."""
    for k in range(num_samples):
        yield k % num_images, (k // num_images) % captions_per_image


class Scorer:
    """The metrics asked for, fed generated and real images batch by batch.

    Args:
        metrics: names from :data:`METRICS`.
        protocol: the :class:`~t2igan.metrics.evaluation.EvalProtocol`.
        inception_weights: Inception-v3 file for is, fid and kid (real datasets).
        clip_model: CLIP folder for clip_score.
        encoders: the encoder pair of r_precision.
        is_inception: StackGAN's fine-tuned Inception, converted
            (:mod:`t2igan.metrics.stackgan_inception`): is is then its score (StackGAN's
            birds and flowers tables), not the ImageNet Inception's.
        bird_classifier: on synthetic birds, FID and KID use this classifier's features
            instead of Inception's, and caption_acc is read by it as well as by the parser.
    """

    def __init__(self, metrics, protocol, inception_weights=None, clip_model=None,
                 encoders: EncoderPair | None = None, bird_classifier=None,
                 is_inception=None) -> None:  # fmt: skip
        from torchmetrics.image import (
            FrechetInceptionDistance,
            InceptionScore,
            KernelInceptionDistance,
        )

        self.protocol = protocol
        self.metrics: dict = {}
        self.skipped: dict[str, str] = {}
        self.weights: dict[str, str] = {}
        self.encoders = encoders
        self.classifier = bird_classifier
        self.r_feats: tuple[list, list] = ([], [])
        self.readings: dict[str, list] = {"parser": [], "classifier": [], "true": [], "named": []}
        wanted = set(metrics)
        features = logits = None
        if "is" in wanted and is_inception is not None:
            from t2igan.metrics.stackgan_inception import StackGANInception

            wanted.discard("is")  # not the ImageNet Inception's
            try:
                net = StackGANInception(is_inception)
                self.metrics["is"] = InceptionScore(feature=net, splits=protocol.is_splits)
                self.weights["is_inception"] = sha256(is_inception)
            except MissingWeightsError as err:
                self.skipped["is"] = str(err)
        if self.classifier is not None and wanted & {"fid", "kid"}:
            from t2igan.metrics.bird_classifier import ClassifierFeatures

            features = ClassifierFeatures(self.classifier)
        if (wanted & {"is"}) or (features is None and wanted & {"fid", "kid"}):
            try:
                pool, logits = load_inception(inception_weights)
                self.weights["inception"] = sha256(inception_weights)
                features = features or pool
            except MissingWeightsError as err:
                for m in sorted(wanted & {"is", "fid", "kid"} if features is None else {"is"}):
                    self.skipped[m] = str(err)
        if "is" in wanted and logits is not None:
            self.metrics["is"] = InceptionScore(feature=logits, splits=protocol.is_splits)
        if features is not None:
            if "fid" in wanted:
                self.metrics["fid"] = FrechetInceptionDistance(feature=features)
            if "kid" in wanted:
                self.metrics["kid"] = KernelInceptionDistance(feature=features)
        if "clip_score" in wanted:
            from torchmetrics.multimodal import CLIPScore

            try:
                self.metrics["clip_score"] = CLIPScore(model_name_or_path=load_clip(clip_model))
                self.weights["clip"] = sha256(clip_model)
            except MissingWeightsError as err:
                self.skipped["clip_score"] = str(err)
        if "r_precision" in wanted and encoders is None:
            try:
                require(None, "--damsm-text-encoder / --damsm-image-encoder", "damsm")
            except MissingWeightsError as err:
                self.skipped["r_precision"] = str(err)
        if "caption_acc" in wanted and self.classifier is None:
            self.skipped["caption_acc"] = "caption_acc reads synthetic birds only"

    def real(self, images: torch.Tensor) -> None:
        """Real images in [-1, 1] (the real-image set of FID and KID)."""
        for name in ("fid", "kid"):
            if name in self.metrics:
                self.metrics[name].update(to_uint8(images), real=True)

    def fake(self, images: torch.Tensor, captions: list[str], batch: dict | None = None) -> None:
        """Generated images in [-1, 1] with their captions (and, on synthetic birds, the
        batch's ``attributes`` and ``attributes_named``)."""
        u8 = to_uint8(images)
        for name in ("fid", "kid"):
            if name in self.metrics:
                self.metrics[name].update(u8, real=False)
        if "is" in self.metrics:
            self.metrics["is"].update(u8)
        if "clip_score" in self.metrics:
            self.metrics["clip_score"].update(u8, captions)
        if self.encoders is not None:
            self.r_feats[0].append(self.encoders.encode_images(images).cpu())
            self.r_feats[1].append(self.encoders.encode_texts(captions).cpu())
        if self.classifier is not None and batch is not None and "attributes" in batch:
            from t2igan.metrics.caption_consistency import read_birds

            self.readings["parser"].append(read_birds(images))
            self.readings["classifier"].append(self.classifier.read(images.cpu()))
            self.readings["true"].append(batch["attributes"].cpu())
            self.readings["named"].append(batch["attributes_named"].cpu())

    def compute(self) -> dict:
        """``{metric: {"mean": ..., "std": ...}}`` (std None where the metric has no spread)."""
        out: dict = {}
        for name, metric in self.metrics.items():
            if name == "kid":  # subsets no larger than either set
                sizes = [
                    sum(len(f) for f in metric.real_features),
                    sum(len(f) for f in metric.fake_features),
                ]
                metric.subset_size = min(self.protocol.kid_subset, *sizes)
            value = metric.compute()
            if isinstance(value, tuple):
                out[name] = {"mean": float(value[0]), "std": float(value[1])}
            else:
                out[name] = {"mean": float(value), "std": None}
        if self.encoders is not None and self.r_feats[0]:
            p = self.protocol
            mean, std = r_precision(torch.cat(self.r_feats[0]), torch.cat(self.r_feats[1]),
                                    p.r_precision_runs, p.r_precision_candidates, p.seed)  # fmt: skip
            out["r_precision"] = {"mean": mean, "std": std, "encoders": self.encoders.name,
                                  "comparable_with_papers": self.encoders.comparable}  # fmt: skip
        if self.readings["true"]:
            out.update(self._caption_acc())
        return out

    def _caption_acc(self) -> dict:
        from t2igan.metrics.bird_classifier import agreement
        from t2igan.metrics.caption_consistency import CaptionAccuracy

        true = torch.cat(self.readings["true"])
        named = torch.cat(self.readings["named"])
        out = {}
        for reader in ("parser", "classifier"):
            metric = CaptionAccuracy()
            metric.update(torch.cat(self.readings[reader]), true, named)
            scores = {k: float(v) for k, v in metric.compute().items()}
            key = "caption_acc" if reader == "parser" else "caption_acc_classifier"
            out[key] = {"mean": scores.pop("caption_acc"), "std": None, **scores}
        out["reader_agreement"] = agreement(torch.cat(self.readings["parser"]),
                                            torch.cat(self.readings["classifier"]))  # fmt: skip
        return out


@torch.no_grad()
def score_model(model: TextToImageModel, dataset, scorer: Scorer, num_samples: int, batch_size: int = 64,
                seed: int = 0) -> dict:  # fmt: skip
    """Sample ``num_samples`` images of ``model`` for ``dataset``'s captions (each in turn,
    :func:`caption_order`), feed them and the dataset's real images to ``scorer``."""
    for start in range(0, len(dataset), batch_size):
        idx = range(start, min(start + batch_size, len(dataset)))
        scorer.real(torch.stack([dataset.centre_image(i) for i in idx]))
    order = list(caption_order(len(dataset), len(dataset.emb[0]), num_samples))
    g = torch.Generator().manual_seed(seed)
    attrs = dataset.split.attributes
    for start in range(0, num_samples, batch_size):
        pairs = order[start : start + batch_size]
        emb = torch.stack([dataset.emb[i][j] for i, j in pairs])
        captions = [dataset.split.captions[i][j] for i, j in pairs]
        words, _ = model.prepare_captions(captions)  # e.g. alignDRAW's word ids
        images = model.sample(emb, model.sample_noise(len(pairs), generator=g), **words).cpu()
        batch = None
        if attrs is not None:
            batch = {"attributes": torch.as_tensor(attrs[[i for i, _ in pairs]]),
                     "attributes_named": torch.as_tensor(np.stack(
                         [dataset.split.caption_attributes[i][j] for i, j in pairs]))}  # fmt: skip
        scorer.fake(images, captions, batch)
    return scorer.compute()


def real_floor(dataset_train, dataset_test, classifier, num: int, batch_size: int = 64) -> dict:
    """FID and KID of real held-out images against real training images in the classifier's
    space: the best a generator can score."""
    from t2igan.metrics.evaluation import EvalProtocol

    scorer = Scorer(["fid", "kid"], EvalProtocol(num_samples=num), bird_classifier=classifier)
    for ds, add in ((dataset_train, scorer.real), (dataset_test, scorer.fake)):
        n = min(num, len(ds))
        for start in range(0, n, batch_size):
            idx = range(start, min(start + batch_size, n))
            images = torch.stack([ds.centre_image(i) for i in idx])
            add(images) if add == scorer.real else add(images, [""] * len(idx))
    return scorer.compute()
