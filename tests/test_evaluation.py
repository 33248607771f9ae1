"""The evaluation metrics: what each score is on sets whose answer is known, the plumbing of
every metric on tiny random-initialised extractors (their values are NOT scores: only that the
files load and the numbers flow), the named errors for missing weights, and ``t2igan evaluate``
through the real CLI on a tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torchmetrics.image import FrechetInceptionDistance, InceptionScore

from t2igan.cli import main
from t2igan.metrics.bird_classifier import (
    BirdClassifier,
    ClassifierFeatures,
    agreement,
    classifier_path,
    load_or_train,
    save_classifier,
    train_classifier,
)
from t2igan.metrics.evaluation import (
    PUBLISHED,
    EvalProtocol,
    MissingWeightsError,
    load_clip,
    load_inception,
    r_precision,
    sha256,
)
from t2igan.metrics.scoring import Scorer, caption_order

from .conftest import TINY_DATA

HERE = Path(__file__).parent


class TinyFeatures(nn.Module):
    """A random-initialised feature extractor (uint8 images in, (N, 16) out): for testing what
    FID and IS compute, not a model of anything."""

    num_features = 16

    def __init__(self, out: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.Tanh(), nn.Flatten(), nn.LazyLinear(out))
        self.num_features = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / 127.5 - 1)


def random_images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8)


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_a_shift():
    features = TinyFeatures()
    images = random_images(300)
    fids = []
    for shift in (0, 20, 60):
        fid = FrechetInceptionDistance(feature=features)
        fid.update(images, real=True)
        fid.update((images.int() + shift).clamp(0, 255).to(torch.uint8), real=False)
        fids.append(float(fid.compute()))
    assert abs(fids[0]) < 1e-3
    assert fids[0] < fids[1] < fids[2]
    assert fids[1] > 0.01


def test_inception_score_of_one_repeated_image_is_one():
    metric = InceptionScore(feature=TinyFeatures(out=10), splits=10)
    metric.update(random_images(1).repeat(100, 1, 1, 1))
    mean, std = metric.compute()
    assert float(mean) == pytest.approx(1.0, abs=1e-5) and float(std) < 1e-5
    varied = InceptionScore(feature=TinyFeatures(out=10), splits=10)
    varied.update(random_images(100))
    assert float(varied.compute()[0]) > 1.0


def test_r_precision_of_a_perfect_pair_is_one_and_of_a_random_one_about_a_hundredth():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(1000, 32, generator=g)
    assert r_precision(images, images.clone()) == (1.0, 0.0)
    mean, std = r_precision(images, torch.randn(1000, 32, generator=g))
    assert 0.004 < mean < 0.02 and std > 0
    # a constant encoder ranks nothing first: ties count against the true caption
    assert r_precision(torch.ones(200, 4), torch.ones(200, 4))[0] == 0.0
    with pytest.raises(ValueError, match="at least 100 images, got 50"):
        r_precision(images[:50], images[:50])


class PerfectPair:
    """An encoder pair that knows which caption drew which image (the image carries its index
    in its first pixel): R-precision 1 through the Scorer."""

    name, comparable = "test pair", False

    def encode_images(self, images):
        return nn.functional.one_hot(((images[:, 0, 0, 0] + 1) * 127.5).round().long(), 256).float()

    def encode_texts(self, captions):
        return nn.functional.one_hot(torch.tensor([int(c) for c in captions]), 256).float()


def test_r_precision_through_the_scorer_with_a_pluggable_pair():
    scorer = Scorer(["r_precision"], EvalProtocol(num_samples=200), encoders=PerfectPair())
    for start in range(0, 200, 50):
        idx = torch.arange(start, start + 50)
        images = torch.zeros(50, 3, 4, 4)
        images[:, 0, 0, 0] = (idx % 256) / 127.5 - 1
        scorer.fake(images, [str(int(i) % 256) for i in idx])
    scores = scorer.compute()["r_precision"]
    assert scores["mean"] == 1.0 and scores["comparable_with_papers"] is False


def test_every_caption_is_used_in_turn():
    assert list(caption_order(3, 2, 7)) == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 0)]


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory) -> Path:
    """torch-fidelity's Inception-v3 with RANDOM weights, saved as the real file is: tests the
    loading and the plumbing only (without downloading the real weights)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    mp = pytest.MonkeyPatch()
    mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
    mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
    torch.manual_seed(0)
    net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    mp.undo()
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path


def test_is_kid_plumbing_on_a_random_initialised_inception(random_inception):
    """IS and KID from one Inception file (FID's 2048-d matrix square root takes seconds more
    on a CPU; its plumbing is KID's, tested with tiny features above and through evaluate)."""
    protocol = EvalProtocol(num_samples=3, is_splits=1, kid_subset=2)
    scorer = Scorer(["is", "kid"], protocol, inception_weights=random_inception)
    assert scorer.skipped == {} and scorer.weights["inception"] == sha256(random_inception)
    g = torch.Generator().manual_seed(0)
    scorer.real(torch.rand(3, 3, 32, 32, generator=g) * 2 - 1)
    scorer.fake(torch.rand(3, 3, 32, 32, generator=g) * 2 - 1, [""] * 3)
    scores = scorer.compute()
    assert set(scores) == {"is", "kid"}
    assert all(torch.isfinite(torch.tensor(s["mean"])) for s in scores.values())
    assert scores["is"]["std"] is not None and scores["kid"]["std"] is not None
    # IS and FID/KID share one network: the file is read once
    assert scorer.metrics["is"].inception.net is scorer.metrics["kid"].inception.net


def test_clip_score_plumbing_on_a_random_initialised_clip(tmp_path):
    """A tiny random CLIP saved as a model folder is (a byte-level tokenizer, 1-layer towers)."""
    import json as js

    from torchmetrics.multimodal import CLIPScore
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    bs = [*range(33, 127), *range(161, 173), *range(174, 256)]
    cs = bs + [256 + i for i in range(256 - len(bs))]
    chars = [chr(c) for c in cs]
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": 256 + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": 512, "<|endoftext|>": 513}
    (tmp_path / "vocab.json").write_text(js.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    pixels = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    torch.manual_seed(0)
    tower = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(text_config=dict(vocab_size=514, eos_token_id=513, bos_token_id=512, **tower),
                        vision_config=dict(image_size=32, patch_size=8, **tower), projection_dim=8)  # fmt: skip
    CLIPModel(config).save_pretrained(tmp_path)
    CLIPProcessor(image_processor=pixels, tokenizer=tokenizer).save_pretrained(tmp_path)
    metric = CLIPScore(model_name_or_path=load_clip(tmp_path))
    metric.update(random_images(3), ["a red bird", "a blue bird with a green head", "a bird"])
    assert -100 <= float(metric.compute()) <= 100
    scorer = Scorer(["clip_score"], EvalProtocol(num_samples=2), clip_model=tmp_path)
    scorer.fake(torch.zeros(2, 3, 32, 32), ["a", "b"])
    assert "clip_score" in scorer.compute() and scorer.weights["clip"] == sha256(tmp_path)


def test_missing_weights_name_the_file_and_where_it_is_published(tmp_path):
    with pytest.raises(MissingWeightsError, match="--inception-weights not given: it needs "
                       ".*weights-inception-2015-12-05-6726825d.pth"):  # fmt: skip
        load_inception(None)
    with pytest.raises(MissingWeightsError, match="nope.pth does not exist"):
        load_inception(tmp_path / "nope.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match="bad.pth is not a PyTorch state dict"):
        load_inception(tmp_path / "bad.pth")
    torch.save({"fc.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="is not torch-fidelity's Inception-v3"):
        load_inception(tmp_path / "other.pth")
    with pytest.raises(MissingWeightsError, match="--clip-model .*clip does not exist"):
        load_clip(tmp_path / "clip")
    (tmp_path / "clip").mkdir()
    with pytest.raises(MissingWeightsError, match="not a complete CLIP model folder"):
        load_clip(tmp_path / "clip")()
    scorer = Scorer(["is", "fid", "r_precision", "clip_score"], EvalProtocol(num_samples=1))
    assert set(scorer.skipped) == {"is", "fid", "r_precision", "clip_score"}
    assert scorer.metrics == {}  # skipped, never faked
    assert PUBLISHED["damsm"] in scorer.skipped["r_precision"]
    assert "taoxugit/AttnGAN" in scorer.skipped["r_precision"]


def test_classifier_features_and_agreement():
    net = BirdClassifier()
    features = ClassifierFeatures(net)
    out = features(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    assert out.shape == (2, 128) and not features.training
    a = torch.tensor([[0, 1, 2, 0, 0, 0], [3, 3, 3, 0, 0, 0]])
    b = torch.tensor([[0, 1, 5, 0, 0, 0], [3, 4, 3, 0, 0, 0]])
    assert agreement(a, b) == {"body": 1.0, "head": 0.5, "wing": 0.5, "all_colours": 0.0}


@pytest.fixture(scope="module")
def quick_classifier(data_root) -> Path:
    """A bird classifier trained for one epoch on 64 birds, cached where evaluate looks: for the
    plumbing (the real one trains for about a minute and a half)."""
    path = classifier_path(data_root, 0)
    save_classifier(train_classifier(num_images=64, epochs=1), path)
    return path


def test_cached_classifier_is_loaded_not_retrained(quick_classifier, data_root):
    before = sha256(quick_classifier)
    net, path = load_or_train(data_root, 0)
    assert path == quick_classifier and sha256(path) == before
    broken = classifier_path(data_root, 1)
    torch.save({"not": torch.zeros(1)}, broken)
    with pytest.raises(ValueError, match=f"{broken.name} is not a bird classifier.*delete it"):
        load_or_train(data_root, 1)


@pytest.fixture(scope="module")
def tiny_run(data_root, tmp_path_factory, quick_classifier) -> Path:
    """A run trained for one epoch through ``t2igan fit`` (its config.yaml and last.ckpt)."""
    run = tmp_path_factory.mktemp("run")
    main(["fit", "--config", str(HERE.parent / "experiments" / "quickstart.yaml"), *TINY_DATA,
          "--data.root", str(data_root), "--trainer.default_root_dir", str(run),
          "--trainer.max_epochs", "1", "--model.init_args.ngf", "8", "--model.init_args.ndf", "8",
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    return run


def test_evaluate_through_the_cli_on_a_tiny_checkpoint(tiny_run, quick_classifier, capsys):
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    main(["evaluate", "--ckpt", str(ckpt), "--metrics", "fid", "kid", "caption_acc",
          "--num-samples", "64"])  # fmt: skip
    out = capsys.readouterr().out
    result = json.loads(ckpt.with_suffix(".eval.json").read_text())
    assert set(result["scores"]) >= {"fid", "kid", "caption_acc", "caption_acc_classifier",
                                     "reader_agreement"}  # fmt: skip
    assert result["weights_sha256"]["bird_classifier"] == sha256(quick_classifier)
    assert result["protocol"]["overridden"] == {"num_samples": 64}
    assert result["protocol"]["follows_protocol"] is False
    # the floor (real test vs real train) is below the untrained generator's FID
    assert result["real_floor"]["fid"]["mean"] < result["scores"]["fid"]["mean"]
    assert f"fid: {result['scores']['fid']['mean']:.4f}" in out


def test_evaluate_errors_are_one_line(tiny_run, quick_classifier, capsys, tmp_path):
    ckpt = str(tiny_run / "checkpoints" / "last.ckpt")
    out = tmp_path / "scores.json"
    with pytest.raises(SystemExit) as exit:
        main(["evaluate", "--ckpt", ckpt, "--metrics", "is", "caption_acc", "--num-samples",
              "32", "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err.splitlines()
    assert exit.value.code == 1
    assert err[0].startswith("t2igan evaluate: is skipped: --inception-weights not given")
    # what could be computed was written
    assert "caption_acc" in json.loads(out.read_text())["scores"]
    for argv, first in [
        (["--num-samples", "0"], "t2igan evaluate: --num-samples must be at least 1, got 0"),
        (["--ckpt", "nope.ckpt"], "t2igan evaluate: --ckpt nope.ckpt does not exist: pass a"),
        (["--metrics", "fd"], "t2igan evaluate: argument --metrics: invalid choice: 'fd'"),
        (["--data.nope", "3"], "t2igan evaluate: bad data option"),
        (
            ["--data.batch_size", "x"],
            't2igan evaluate: bad data option: Parser key "data.batch_size": '
            "Expected a <class 'int'>. Got value: x",
        ),
        (["--config", str(tmp_path / "no.yaml")], f"t2igan evaluate: --config {tmp_path}"),
    ]:
        with pytest.raises(SystemExit):
            main(["evaluate", "--ckpt", ckpt, "--metrics", "fid", *argv])
        assert capsys.readouterr().err.splitlines()[0].startswith(first)


def test_speed_ups_keep_results_and_checkpoint_names(data_root):
    """channels_last gives the default layout's losses on one batch (float tolerance: Adam then
    amplifies rounding differences of near-zero gradients, so weights are not compared) and
    really changes the layout; compile keeps the parameter names a checkpoint holds."""
    import lightning as L

    from t2igan.callbacks import SpeedUps
    from t2igan.models import GANINTCLS

    from .conftest import tiny_datamodule

    losses, models = [], []
    for speed_ups in ([], [SpeedUps(channels_last=True)]):
        L.seed_everything(0)
        dm = tiny_datamodule(data_root)
        model = GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=8, ndf=8)
        trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, limit_val_batches=0, callbacks=speed_ups)  # fmt: skip
        trainer.fit(model, datamodule=dm)
        losses.append(
            [float(trainer.callback_metrics[k]) for k in ("train/d_loss", "train/g_loss")]
        )
        models.append(model)
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
    conv = next(k for k, v in models[1].generator.state_dict().items() if v.dim() == 4)
    assert models[1].generator.state_dict()[conv].is_contiguous(memory_format=torch.channels_last)
    assert (
        not models[0].generator.state_dict()[conv].is_contiguous(memory_format=torch.channels_last)
    )
    model = GANINTCLS(text_dim=16, image_size=32, ngf=8, ndf=8)
    names = list(model.state_dict())
    SpeedUps(compile=True).setup(None, model, "fit")
    assert list(model.state_dict()) == names


def test_fused_adam_is_opt_in_keeps_the_losses_and_follows_the_run_not_the_checkpoint(
    data_root, tmp_path
):
    import lightning as L

    from t2igan.callbacks import SpeedUps
    from t2igan.models import GANINTCLS

    from .conftest import tiny_datamodule

    def run(callbacks, steps=2, ckpt_path=None, model=None):
        L.seed_everything(0)
        dm = tiny_datamodule(data_root)
        model = model or GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=8, ndf=8)
        trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, limit_val_batches=0, callbacks=callbacks)  # fmt: skip
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        return trainer, model

    plain, _ = run([])
    fused, model = run([SpeedUps(fused_adam=True)])
    assert [g["fused"] for o in plain.optimizers for g in o.param_groups] == [None, None]
    assert [g["fused"] for o in fused.optimizers for g in o.param_groups] == [True, True]
    for key in ("train/d_loss", "train/g_loss"):
        assert float(fused.callback_metrics[key]) == pytest.approx(
            float(plain.callback_metrics[key]), abs=1e-5)  # fmt: skip
    fused.save_checkpoint(tmp_path / "fused.ckpt")
    dm = tiny_datamodule(data_root)
    again, _ = run([], steps=4, ckpt_path=tmp_path / "fused.ckpt",
                   model=GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=8, ndf=8))  # fmt: skip
    assert [g["fused"] for o in again.optimizers for g in o.param_groups] == [None, None]
    with pytest.raises(ValueError, match="does not train with the GAN engine's Adam pair"):
        from t2igan.models import CharCNNRNNSJE

        SpeedUps(fused_adam=True).setup(None, CharCNNRNNSJE(cnn_dim=8, emb_dim=8,
                                                            conv_widths=(8, 8)), "fit")  # fmt: skip


def test_image_metrics_callback_in_fit_and_test(data_root, quick_classifier):
    import lightning as L

    from t2igan.callbacks import ImageMetrics
    from t2igan.models import GANINTCLS

    from .conftest import tiny_datamodule

    dm = tiny_datamodule(data_root)
    model = GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=8, ndf=8)
    metrics = ImageMetrics(every_n_epochs=2, num_samples=16, metrics=("fid", "kid", "caption_acc"))
    trainer = L.Trainer(max_epochs=2, limit_train_batches=1, logger=False, callbacks=[metrics],
                        enable_checkpointing=False, enable_progress_bar=False)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    logged = trainer.callback_metrics
    for key in ("val/fid", "val/kid", "val/kid_std", "val/caption_acc_classifier",
                "val/reader_agreement/all_colours"):  # fmt: skip
        assert key in logged, key
    trainer.test(model, datamodule=dm)
    assert "test/fid" in trainer.callback_metrics and "val/fid" not in trainer.callback_metrics
    with pytest.raises(ValueError, match="unknown metric 'fd'"):
        ImageMetrics(metrics=("fd",))


def test_damsm_pair_loads_attngan_layout_and_feeds_r_precision(tmp_path):
    """RANDOM-initialised DAMSM encoders saved in AttnGAN's layout (state dicts and a
    captions.pickle): the files load, tokens follow the vocabulary, R-precision runs."""
    import pickle

    from t2igan.metrics.damsm import DAMSMImageEncoder, DAMSMPair, DAMSMTextEncoder, tokenize

    torch.manual_seed(0)
    wordtoix = {"<end>": 0, "a": 1, "red": 2, "bird": 3, "blue": 4}
    with open(tmp_path / "captions.pickle", "wb") as f:
        pickle.dump([[], [], {v: k for k, v in wordtoix.items()}, wordtoix], f, protocol=2)
    torch.save(DAMSMTextEncoder(5, 8, 16).state_dict(), tmp_path / "text_encoder.pth")
    torch.save(DAMSMImageEncoder(16).state_dict(), tmp_path / "image_encoder.pth")
    pair = DAMSMPair(tmp_path / "text_encoder.pth", tmp_path / "image_encoder.pth",
                     tmp_path / "captions.pickle")  # fmt: skip
    assert tokenize("A RED, red bird; with wings", wordtoix) == [1, 2, 2, 3]
    texts = pair.encode_texts(["a red bird", "a blue bird", "nothing known"])
    assert texts.shape == (3, 16)
    assert not torch.allclose(texts[0], texts[1])
    scorer = Scorer(["r_precision"], EvalProtocol(num_samples=6, r_precision_candidates=3),
                    encoders=pair)  # fmt: skip
    scorer.fake(torch.rand(6, 3, 32, 32) * 2 - 1, ["a red bird", "a blue bird", "bird"] * 2)
    scores = scorer.compute()["r_precision"]
    assert 0 <= scores["mean"] <= 1 and scores["comparable_with_papers"] is True
    with pytest.raises(MissingWeightsError, match="--damsm-captions not given.*taoxugit/AttnGAN"):
        DAMSMPair(tmp_path / "text_encoder.pth", tmp_path / "image_encoder.pth", None)
    # a text encoder's file given as the image encoder
    with pytest.raises(ValueError, match="text_encoder.pth does not fit AttnGAN's DAMSM encoder"):
        DAMSMPair(tmp_path / "text_encoder.pth", tmp_path / "text_encoder.pth",
                  tmp_path / "captions.pickle")  # fmt: skip


def test_r_precision_falls_back_to_a_ds_sje_checkpoint(tiny_run, quick_classifier, tmp_path,
                                                       capsys):  # fmt: skip
    """Without DAMSM files, ``--sje-ckpt`` scores R-precision with t2igan's own DS-SJE encoders,
    recorded as not comparable with the papers; a checkpoint of another kind is one line."""
    import lightning as L

    from t2igan.models import CharCNNRNNSJE

    sje = CharCNNRNNSJE(image_size=16, cnn_dim=16, emb_dim=16, conv_widths=(16, 16),
                        image_width=4)  # fmt: skip
    trainer = L.Trainer(logger=False, max_steps=0, enable_checkpointing=False)
    trainer.strategy.connect(sje)
    trainer.save_checkpoint(tmp_path / "sje.ckpt")
    ckpt = str(tiny_run / "checkpoints" / "last.ckpt")
    out = tmp_path / "scores.json"
    main(["evaluate", "--ckpt", ckpt, "--metrics", "r_precision", "--num-samples", "100",
          "--sje-ckpt", str(tmp_path / "sje.ckpt"), "--out", str(out)])  # fmt: skip
    result = json.loads(out.read_text())
    score = result["scores"]["r_precision"]
    assert score["comparable_with_papers"] is False and "DS-SJE" in score["encoders"]
    assert 0 <= score["mean"] <= 1 and score["std"] is not None
    assert result["weights_sha256"]["sje_checkpoint"] == sha256(tmp_path / "sje.ckpt")
    capsys.readouterr()
    for sje_ckpt, first in [(ckpt, "is a GANINTCLS checkpoint, not a DS-SJE text encoder"),
                            (str(tmp_path / "no.ckpt"), "r_precision skipped: --sje-ckpt ")]:  # fmt: skip
        with pytest.raises(SystemExit):
            main(["evaluate", "--ckpt", ckpt, "--metrics", "r_precision", "--num-samples", "100",
                  "--sje-ckpt", sje_ckpt, "--out", str(out)])  # fmt: skip
        err = capsys.readouterr().err.splitlines()
        assert first in err[0], err


def test_evaluate_scores_is_with_stackgans_fine_tuned_inception(tiny_run, quick_classifier,
                                                                tmp_path, capsys):  # fmt: skip
    """``--is-inception``: IS from the converted StackGAN network (random weights here: the
    plumbing, not a score), recorded by its hash; the ImageNet Inception is then not needed."""
    from t2igan.metrics.stackgan_inception import EMA, checkpoint_names, convert

    from .stackgan_inception_reference import reference_weights

    weights = reference_weights(checkpoint_names(21))  # flowers: 20 classes + background
    path = tmp_path / "flowers_inception.pt"
    torch.save(convert({n + EMA: v for n, v in weights.items()}), path)
    ckpt, out = str(tiny_run / "checkpoints" / "last.ckpt"), tmp_path / "scores.json"
    main(["evaluate", "--ckpt", ckpt, "--metrics", "is", "caption_acc", "--num-samples", "20",
          "--is-inception", str(path), "--out", str(out)])  # fmt: skip
    result = json.loads(out.read_text())
    assert result["skipped"] == {}
    assert result["weights_sha256"]["is_inception"] == sha256(path)
    assert "inception" not in result["weights_sha256"]
    assert 1.0 <= result["scores"]["is"]["mean"] <= 20.0  # at most the number of classes
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit:
        main(["evaluate", "--ckpt", ckpt, "--metrics", "is", "--num-samples", "20",
              "--is-inception", str(tmp_path / "none.pt"), "--out", str(out)])  # fmt: skip
    assert exit.value.code == 1
    err = capsys.readouterr().err.splitlines()[0]
    assert err.startswith("t2igan evaluate: is skipped: --is-inception ") and "none.pt" in err
    assert "StackGAN-inception-model" in err
