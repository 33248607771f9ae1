"""The last raw tracebacks and silently accepted values of ``t2igan``'s commands: each is one
line naming the value or file and the fix (the exact first line of each), checked before any
slow work; Ctrl-C is one line and exit status 130; an option that does not apply says so."""

from __future__ import annotations

import signal
import sys
from argparse import Namespace
from pathlib import Path

import h5py
import lightning as L
import numpy as np
import pytest
import torch

from t2igan.cli import main
from t2igan.cli.evaluate import unused_options
from t2igan.command import DEBUG_HINT, INTERRUPTED, run_command
from t2igan.data import HashingEncoder, T2IDataModule
from t2igan.data import prepare as cache

from .conftest import ROOT, TINY_DATA
from .data_fixtures import make_cub
from .test_cli_errors import save_untrained

QUICKSTART = str(ROOT / "experiments" / "quickstart.yaml")
SMALL = ["--model.init_args.ngf", "8", "--model.init_args.ndf", "8", "--trainer.logger", "false",
         "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1"]  # fmt: skip
HOW = "pass a checkpoint that `t2igan fit` wrote, e.g. runs/quickstart/checkpoints/last.ckpt"
NOT_A_CKPT = "is not a checkpoint (torch.save's zip format) or is cut short"
PICKLED = ("holds pickled Python objects, not only tensors and plain data, so it is not loaded "
           "(loading it could run code): pass a checkpoint that t2igan wrote")  # fmt: skip


def fails(argv: list[str], capsys) -> tuple[int, list[str]]:
    """The exit status of ``t2igan ARGV`` and the lines it wrote to stderr."""
    with pytest.raises(SystemExit) as exit:
        main(argv)
    return exit.value.code, capsys.readouterr().err.splitlines()


def ours(lines: list[str]) -> list[str]:
    """The lines t2igan wrote (not Lightning's or a library's)."""
    return [ln for ln in lines if ln.startswith("t2igan")]


def _bad_checkpoints() -> None:
    Path("notes.txt").write_text("hello\n")
    torch.save({"t2igan": {"class_path": "t2igan.models.GANINTCLS"}, "x": Path}, "pickled.ckpt")


# ------------------------------------------------------------------ fit / test --ckpt_path
@pytest.mark.parametrize("command, file, problem", [("fit", "notes.txt", NOT_A_CKPT),
                                                     ("test", "pickled.ckpt", PICKLED)])  # fmt: skip
def test_ckpt_path_last_that_is_not_a_checkpoint_is_one_line(command, file, problem, data_root,
                                                             capsys):  # fmt: skip
    _bad_checkpoints()
    folder = Path("runs/quickstart/checkpoints")
    folder.mkdir(parents=True)
    (folder / "last.ckpt").write_bytes(Path(file).read_bytes())
    code, lines = fails([command, "--config", QUICKSTART, *TINY_DATA, "--data.root",
                         str(data_root), *SMALL, "--ckpt_path", "last"], capsys)  # fmt: skip
    assert (code, ours(lines)) == (1, [f"t2igan {command}: --ckpt_path {folder}/last.ckpt "
                                       f"{problem}"])  # fmt: skip
    assert "weights_only" not in "\n".join(lines)  # never advice to load a file unsafely


@pytest.mark.parametrize("command, file, problem", [("fit", "notes.txt", NOT_A_CKPT),
                                                     ("test", "pickled.ckpt", PICKLED)])  # fmt: skip
def test_ckpt_path_file_that_is_not_a_checkpoint_is_one_line(command, file, problem, data_root,
                                                             capsys):  # fmt: skip
    _bad_checkpoints()
    code, lines = fails([command, "--config", QUICKSTART, *TINY_DATA, "--data.root",
                         str(data_root), *SMALL, "--ckpt_path", file], capsys)  # fmt: skip
    assert (code, ours(lines)) == (1, [f"t2igan {command}: --ckpt_path {file} {problem}"])
    assert "weights_only" not in "\n".join(lines)


def test_fit_from_an_explicit_checkpoint_takes_the_command_lines_model_arguments(
    data_root, tmp_path, capsys
):  # fmt: skip
    """LightningCLI would lay the checkpoint's hyper-parameters over the command line's for an
    explicit --ckpt_path; fit takes the command line's, as with --ckpt_path last, so the new
    learning rate trains and is what the next checkpoint records."""
    run = [*TINY_DATA, "--data.root", str(data_root), *SMALL, "--trainer.max_epochs"]
    main(["fit", "--config", QUICKSTART, *run, "1", "--trainer.default_root_dir",
          str(tmp_path / "a")])  # fmt: skip
    first = tmp_path / "a" / "checkpoints" / "last.ckpt"
    main(["fit", "--config", QUICKSTART, *run, "2", "--trainer.default_root_dir",
          str(tmp_path / "b"), "--ckpt_path", str(first), "--model.init_args.lr", "0.001"])  # fmt: skip
    ckpt = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["lr"] == 0.001 and ckpt["epoch"] == 1
    assert [o["param_groups"][0]["lr"] for o in ckpt["optimizer_states"]] == [0.001, 0.001]


def test_an_explicit_checkpoint_naming_a_foreign_class_is_refused_before_import(
    data_root, tmp_path, capsys
):  # fmt: skip
    ckpt = tmp_path / "crafted.ckpt"
    torch.save({"t2igan": {"class_path": "t2igan.models.GANINTCLS"}, "state_dict": {},
                "hyper_parameters": {"_class_path": "this.Model"}}, ckpt)  # fmt: skip
    code, lines = fails(["test", "--config", QUICKSTART, *TINY_DATA, "--data.root",
                         str(data_root), *SMALL, "--ckpt_path", str(ckpt)], capsys)  # fmt: skip
    assert code == 1 and "this.Model" in ours(lines)[0] and "not t2igan's" in ours(lines)[0]
    assert "this" not in sys.modules


# ----------------------------------------------------------------------------- prepare
@pytest.mark.parametrize("size", ["-5", "0"])
def test_prepare_checks_the_load_size_before_reading_anything(size, tmp_path, capsys,
                                                              monkeypatch):  # fmt: skip
    cub = make_cub(tmp_path / "raw")

    def read(*args, **kwargs):
        raise AssertionError("the dataset was read before the arguments were checked")

    monkeypatch.setattr(cache, "make_reader", read)
    code, lines = fails(["prepare", "--dataset", "cub", "--root", str(tmp_path), "--source",
                         str(cub), "--load-size", size], capsys)  # fmt: skip
    assert (code, lines) == (1, [f"t2igan prepare: --load-size is the side of the stored images: "
                                 f"at least 1 pixel, got {size}", DEBUG_HINT])  # fmt: skip


def test_ctrl_c_during_prepare_is_one_line_and_leaves_no_cache(tmp_path, capsys, monkeypatch):
    cub = make_cub(tmp_path / "raw")
    resized = cache._resized

    def interrupted(images, size):  # Ctrl-C while the third image is written
        class Images:
            def __len__(self):
                return len(images)

            def __getitem__(self, i):
                if i == 2:
                    raise KeyboardInterrupt
                return resized(images, size)[i]

        return Images()

    monkeypatch.setattr(cache, "_resized", interrupted)
    code, lines = fails(["prepare", "--dataset", "cub", "--root", str(tmp_path), "--source",
                         str(cub), "--load-size", "16"], capsys)  # fmt: skip
    assert (code, lines) == (INTERRUPTED, ["t2igan prepare: interrupted"])
    assert list((tmp_path / "cub").iterdir()) == []  # no cache, no temporary file


def test_ctrl_c_with_debug_keeps_the_traceback():
    def run():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_command("prepare", run, debug=True)


class CtrlCAtBatch1(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 1:
            raise KeyboardInterrupt


def test_ctrl_c_during_fit_is_still_lightnings(data_root, capsys):
    """Lightning catches Ctrl-C inside the trainer, stops it gracefully (its callbacks see the
    interruption) and exits with status 1; t2igan's handler does not take it over."""
    before = signal.getsignal(signal.SIGINT)
    try:
        code, lines = fails(["fit", "--config", QUICKSTART, *TINY_DATA, "--data.root",
                             str(data_root), *SMALL, "--trainer.callbacks+=" + __name__
                             + ".CtrlCAtBatch1"], capsys)  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, before)  # Lightning ignores Ctrl-C once it has one
    assert code == 1 and ours(lines) == []


# ------------------------------------------------------------------------------- embed
EMBED_ERRORS = {
    "unknown argument": ('{"nope": 5}', "--init-args: HashingEncoder takes no argument 'nope'; "
                         "it takes dim, ngrams"),
    "misspelt argument": ('{"dm": 5}', "--init-args: HashingEncoder takes no argument 'dm' (did "
                          "you mean dim?); it takes dim, ngrams"),
    "zero size": ('{"dim": 0}', "HashingEncoder takes dim >= 1 and ngrams >= 1 (got dim 0, "
                  "ngrams 2): with none, every caption embeds as zeros"),
    "not an object": ("[5]", """--init-args '[5]': give a JSON object of the encoder's """
                      """arguments, e.g. '{"dim": 512}'"""),
}  # fmt: skip


@pytest.mark.parametrize("case", EMBED_ERRORS)
def test_embed_init_args_errors_are_one_line(case, capsys):
    Path("caps.txt").write_text("a red bird\n")
    init_args, first = EMBED_ERRORS[case]
    code, lines = fails(["embed", "--captions", "caps.txt", "--out", "e.h5", "--text-encoder",
                         "t2igan.data.HashingEncoder", "--init-args", init_args], capsys)  # fmt: skip
    assert (code, lines) == (1, [f"t2igan embed: {first}", DEBUG_HINT])
    assert not Path("e.h5").exists()


def test_embed_names_the_blank_lines_it_skips(capsys):
    """Blank lines are skipped with a warning naming them (counted from 1, as an editor shows
    them), and the output records each caption's line."""
    Path("caps.txt").write_bytes(b"a red bird\r\n\r\n  \na blue bird\n\n\n")
    main(["embed", "--captions", "caps.txt", "--out", "e.h5", "--text-encoder",
          "t2igan.data.HashingEncoder"])  # fmt: skip
    assert capsys.readouterr().err.splitlines() == [
        "t2igan embed: warning: caps.txt: lines 2, 3, 5, 6 are blank: skipped, so caption k of "
        "the output is not always line k (an .h5 output records each caption's line in `lines`)"
    ]
    with h5py.File("e.h5") as f:
        assert list(f["captions"].asstr()[()]) == ["a red bird", "a blue bird"]
        assert f["lines"][()].tolist() == [1, 4]
        assert np.allclose(f["embeddings"][()], HashingEncoder().encode(["a red bird",
                                                                          "a blue bird"]))  # fmt: skip
    Path("tail.txt").write_text("a red bird\n\n\n")  # 3 lines, 1 caption: said
    main(["embed", "--captions", "tail.txt", "--out", "t.h5", "--text-encoder",
          "t2igan.data.HashingEncoder"])  # fmt: skip
    assert capsys.readouterr().err.splitlines() == [
        "t2igan embed: warning: tail.txt: lines 2, 3 are blank (after the last caption): skipped"
    ]


# ---------------------------------------------------------------------------- evaluate
@pytest.fixture
def gan_ckpt() -> str:
    return str(save_untrained(Path("gan.ckpt"), HashingEncoder(64)))


EVALUATE_ERRORS = {
    "folder": (["--ckpt", "runs"], f"--ckpt runs is a folder, not a checkpoint file: {HOW}"),
    "text file": (["--ckpt", "notes.txt"], f"--ckpt notes.txt {NOT_A_CKPT}"),
    "batch size 0": (["--batch-size", "0"],
                     "--batch-size is the images per sampling batch: at least 1, got 0"),
}  # fmt: skip


@pytest.mark.parametrize("case", EVALUATE_ERRORS)
def test_evaluate_errors_are_one_line_and_come_first(case, gan_ckpt, capsys, monkeypatch):
    import t2igan.metrics.bird_classifier as bird_classifier

    def slow(*args, **kwargs):
        raise AssertionError("the bird classifier was loaded before the arguments were checked")

    monkeypatch.setattr(bird_classifier, "load_or_train", slow)
    Path("runs").mkdir()
    _bad_checkpoints()
    args, first = EVALUATE_ERRORS[case]
    code, lines = fails(["evaluate", "--ckpt", gan_ckpt, *args], capsys)
    assert (code, ours(lines)[-1:]) == (1, [f"t2igan evaluate: {first}"])
    assert lines[-1] == DEBUG_HINT


def test_evaluate_checks_inception_weights_whenever_given(gan_ckpt, capsys, monkeypatch):
    """On synthetic birds FID and KID use the bird classifier's features: --inception-weights
    is not read (said), and a file that is not the weights is refused all the same, before
    anything slow."""
    import t2igan.metrics.bird_classifier as bird_classifier

    def slow(*args, **kwargs):
        raise AssertionError("the bird classifier was loaded before the arguments were checked")

    monkeypatch.setattr(bird_classifier, "load_or_train", slow)
    Path("notes.txt").write_text("hello\n")
    code, lines = fails(["evaluate", "--ckpt", gan_ckpt, "--metrics", "fid", "kid",
                         "--inception-weights", "notes.txt"], capsys)  # fmt: skip
    assert code == 1 and ours(lines)[-2:] == [
        "t2igan evaluate: warning: --inception-weights is not read: on synthetic birds FID and "
        "KID use the bird classifier's features; only is (without --is-inception) reads it",
        "t2igan evaluate: --inception-weights notes.txt is not a PyTorch state dict of tensors: "
        "it needs torch-fidelity's conversion of the TF Inception-v3 of "
        "2015-12-05 (the weights of the papers' IS and FID), weights-inception-2015-12-05-"
        "6726825d.pth: https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth",
    ]


def _args(metrics, **given) -> Namespace:
    flags = ("inception_weights", "is_inception", "clip_model", "damsm_text_encoder",
             "damsm_image_encoder", "damsm_captions", "sje_ckpt")  # fmt: skip
    return Namespace(metrics=metrics, **{f: given.get(f) for f in flags})


def test_evaluate_says_which_options_do_not_apply():
    assert unused_options(_args(["fid"], inception_weights="w.pth"), "cub") == {}
    assert unused_options(_args(["is"], inception_weights="w.pth"), "synthetic") == {}
    both = {"inception_weights": "w.pth", "is_inception": "s.pt"}
    assert unused_options(_args(["is", "fid"], **both), "synthetic") == {
        "--inception-weights": "on synthetic birds FID and KID use the bird classifier's "
        "features; only is (without --is-inception) reads it"
    }
    assert unused_options(_args(["is", "caption_acc"], **both), "cub") == {
        "--inception-weights": "only is (without --is-inception), fid and kid read it, and "
        "--metrics asks for none of them"
    }
    assert unused_options(_args(["fid"], clip_model="clip/", sje_ckpt="s.ckpt"), "cub") == {
        "--clip-model": "only clip_score reads it, and --metrics does not ask for clip_score",
        "--sje-ckpt": "only r_precision reads it, and --metrics does not ask for r_precision",
    }
    sje_and_damsm = {"sje_ckpt": "s.ckpt", "damsm_text_encoder": "t.pth"}
    assert unused_options(_args(["r_precision"], **sje_and_damsm), "cub") == {
        "--sje-ckpt": "r_precision uses the DAMSM files given instead"
    }


# ----------------------------------------------------------------------- the data module
def test_fit_with_no_images_is_one_line(data_root, capsys):
    code, lines = fails(["fit", "--config", QUICKSTART, *TINY_DATA, "--data.root", str(data_root),
                         *SMALL, "--data.num_images", "0"], capsys)  # fmt: skip
    assert (code, ours(lines)) == (1, ["t2igan fit: --data.num_images must be at least 1, got 0"])


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "--data.batch_size must be at least 1, got 0"),
    ({"image_size": -1}, "--data.image_size must be at least 1, got -1"),
    ({"num_eval_images": 0}, "--data.num_eval_images must be at least 1, got 0"),
    ({"num_captions": 0}, "--data.num_captions must be at least 1, got 0"),
    ({"num_workers": -1}, "--data.num_workers must be 0 (load in the main process) or more, "
                          "got -1"),
    ({"load_size": 20}, "--data.load_size 20 is smaller than --data.image_size 32: images are "
                        "resized to load_size, then cropped to image_size (leave load_size out "
                        "for no crop)"),
])  # fmt: skip
def test_data_module_refuses_impossible_sizes(kwargs, message):
    with pytest.raises(ValueError) as err:
        T2IDataModule(**{"image_size": 32, "text_encoder": HashingEncoder(), **kwargs})
    assert str(err.value) == message


def test_ckpt_path_refuses_a_foreign_model_class_and_suggests_none(data_root, tmp_path, capsys):
    """A checkpoint whose model class is not t2igan's is refused before anything runs, and a
    text file's error never suggests such a checkpoint beside it to resume from instead."""
    Path("notes.txt").write_text("hello\n")
    save_untrained(Path("crafted.ckpt"), HashingEncoder(64))
    checkpoint = torch.load("crafted.ckpt", weights_only=True)
    checkpoint["t2igan"]["class_path"] = "evilmod.Model"
    torch.save(checkpoint, "crafted.ckpt")
    run = ["--config", QUICKSTART, *TINY_DATA, "--data.root", str(data_root), *SMALL]
    code, lines = fails(["test", *run, "--ckpt_path", "crafted.ckpt"], capsys)
    assert code == 1 and "evilmod.Model, which is not t2igan's" in ours(lines)[0]
    code, lines = fails(["fit", *run, "--ckpt_path", "notes.txt"], capsys)
    assert ours(lines) == [f"t2igan fit: --ckpt_path notes.txt {NOT_A_CKPT}"]  # no "resume from"


def test_evaluate_without_the_run_config_embeds_with_the_checkpoints_encoder(tmp_path):
    from t2igan.cli.evaluate import data_module

    ckpt = save_untrained(tmp_path / "moved.ckpt", HashingEncoder(64))  # no config.yaml beside
    dm = data_module(ckpt, None, ["--data.dataset", "synthetic"])
    assert dm.text_encoder.spec() == HashingEncoder(64).spec()
